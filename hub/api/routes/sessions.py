"""Usage sessions and usage reports (tags ``sessions``, ``reports``).

Sessions are shaped per role (member ids for admins and fabmanagers, first names for
animators) and are staff-only: a coordinator's list of sessions with age group,
programme, machine and exact times would rebuild the small groups that reports hide,
so coordinators get aggregates only. Reports are built by hub.reports (groups of
fewer than 5 people withheld from coordinators, DESIGN §4).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from sqlalchemy import func, select

from hub.api.auth import IDENTIFYING_ROLES, Capability, Principal
from hub.api.common import get_or_404, period, within
from hub.api.deps import ControlDep, CurrentAccount, PolicyDep, SessionDep, SettingsDep, allow
from hub.api.outcomes import await_outcome
from hub.api.schemas import (
    MAX_INT,
    DbId,
    Ident,
    Page,
    SessionPublic,
    UsageDimension,
    UsageRow,
    UsageTotals,
)
from hub.api.views import session_public
from hub.db.models import Gender, Member, UsageSession
from hub.policy.model import PolicyConfig
from hub.reports import (
    Period,
    Report,
    ReportFilters,
    ReportForbidden,
    build_report,
    csv_filename,
    report_csv,
)
from hub.settings import HubSettings
from protocol.ids import TOKEN_PATTERN

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api")

SessionId = Annotated[str, Path(pattern=TOKEN_PATTERN, description="session id")]


# --------------------------------------------------------------------------- sessions


@router.get(
    "/sessions",
    response_model=Page[SessionPublic],
    tags=["sessions"],
    summary="Sessions, newest first, with filters",
    dependencies=[allow(Capability.SESSIONS_READ)],
)
def list_sessions(
    db: SessionDep,
    principal: CurrentAccount,
    cfg: PolicyDep,
    state: Literal["open", "closed"] | None = None,
    machine_id: Ident | None = None,
    zone_id: Ident | None = None,
    member_id: Annotated[DbId | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="started at or after")] = None,
    until: Annotated[datetime | None, Query(description="started before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> Page[SessionPublic]:
    if member_id is not None and principal.role not in IDENTIFYING_ROLES:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="Votre rôle ne permet pas de filtrer les sessions par membre",
        )
    query = select(UsageSession, Member.display_name).outerjoin(
        Member, Member.id == UsageSession.member_id
    )
    start, end = period(cfg, since, until)
    if state == "open":
        query = query.where(UsageSession.ended_at.is_(None))
    elif state == "closed":
        query = query.where(UsageSession.ended_at.is_not(None))
    if machine_id is not None:
        query = query.where(UsageSession.machine_id == machine_id)
    if zone_id is not None:
        query = query.where(UsageSession.zone_id == zone_id)
    if member_id is not None:
        query = query.where(UsageSession.member_id == member_id)
    query = within(query, UsageSession.started_at, start, end)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.execute(
        query.order_by(UsageSession.started_at.desc(), UsageSession.id).limit(limit).offset(offset)
    )
    return Page[SessionPublic](
        items=[session_public(row, name, principal.role) for row, name in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/sessions/{session_id}",
    response_model=SessionPublic,
    tags=["sessions"],
    summary="One session",
    dependencies=[allow(Capability.SESSIONS_READ)],
)
def get_session(session_id: SessionId, db: SessionDep, principal: CurrentAccount) -> SessionPublic:
    row = _load_session(db, session_id)
    name = db.scalar(select(Member.display_name).where(Member.id == row.member_id))
    return session_public(row, name, principal.role)


def _load_session(db: SessionDep, session_id: str) -> UsageSession:
    return get_or_404(db, UsageSession, session_id, "Session")


_COMMAND_ERRORS: dict[int | str, dict[str, str]] = {
    409: {"description": "already ended, or the edge refused (``code``, French ``detail``)"},
    503: {"description": "the session's edge cannot be reached"},
    504: {"description": "the edge did not answer in time (``code`` ``no_answer``)"},
}


@router.post(
    "/sessions/{session_id}/end",
    response_model=SessionPublic,
    tags=["sessions"],
    summary="Ask the machine's edge to end a session now, and wait for its answer",
    responses=_COMMAND_ERRORS,
    dependencies=[allow(Capability.SESSIONS_END)],
)
def end_session(
    session_id: SessionId, db: SessionDep, control: ControlDep, principal: CurrentAccount
) -> SessionPublic:
    """The edge ends it and journals ``session_ended`` (the ledger closes it then), and
    answers: 200 once it did (see :mod:`hub.api.outcomes` for the errors)."""
    row = _load_session(db, session_id)
    if row.ended_at is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="Cette session est déjà terminée")
    await_outcome(
        control.end_session(session_id, "Session terminée par l'équipe"),
        "La machine est injoignable : la session n'a pas pu être terminée",
    )
    log.info("account %d ended session %s", principal.account_id, session_id)
    name = db.scalar(select(Member.display_name).where(Member.id == row.member_id))
    return session_public(row, name, principal.role)


@router.post(
    "/sessions/{session_id}/extend",
    response_model=SessionPublic,
    tags=["sessions"],
    summary="Ask the machine's edge to give a session more time, and wait for its answer",
    responses=_COMMAND_ERRORS,
    dependencies=[allow(Capability.SESSIONS_END)],
)
def extend_session(
    session_id: SessionId,
    db: SessionDep,
    control: ControlDep,
    principal: CurrentAccount,
    minutes: Annotated[int, Query(ge=1, le=240, description="minutes to add")] = 15,
) -> SessionPublic:
    """The edge moves the session's end and its warnings; the ledger learns the new end
    when the session ends (metering stays the edge's)."""
    row = _load_session(db, session_id)
    if row.ended_at is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="Cette session est déjà terminée")
    await_outcome(
        control.extend_session(session_id, minutes, "Session prolongée par l'équipe"),
        "La machine est injoignable : la session n'a pas pu être prolongée",
    )
    log.info("account %d extended session %s by %d min", principal.account_id, session_id, minutes)
    name = db.scalar(select(Member.display_name).where(Member.id == row.member_id))
    return session_public(row, name, principal.role)


# --------------------------------------------------------------------------- reports

ReportBy = Annotated[
    list[UsageDimension],
    Query(description="dimensions of the totals (repeat for a cross table)", max_length=3),
]


def _report(
    db: SessionDep,
    principal: Principal,
    cfg: PolicyConfig,
    settings: HubSettings,
    by: list[UsageDimension],
    since: datetime | None,
    until: datetime | None,
    filters: ReportFilters,
) -> Report:
    start, end = period(cfg, since, until)
    try:
        return build_report(
            db,
            Period(start, end),
            filters,
            by,
            principal.role,
            tz=cfg.tz,
            site=settings.site,
            filament_grams=settings.filament_grams,
        )
    except ReportForbidden:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="Votre rôle ne permet pas de voir les totaux par membre",
        ) from None


def _filters(
    zone_id: Ident | None = None,
    machine_id: Ident | None = None,
    programme: Ident | None = None,
    age_group: Annotated[str | None, Query(max_length=16)] = None,
    machine_kind: Annotated[str | None, Query(max_length=32)] = None,
    gender: Gender | None = None,
) -> ReportFilters:
    return ReportFilters(
        zone_id=zone_id,
        machine_id=machine_id,
        programme=programme,
        age_group=age_group,
        machine_kind=machine_kind,
        gender=gender.value if gender is not None else None,
    )


FiltersDep = Annotated[ReportFilters, Depends(_filters)]


@router.get(
    "/usage/totals",
    response_model=UsageTotals,
    tags=["reports"],
    summary="Usage totals per month, zone, machine, programme, age group, machine kind, "
    "gender or member",
    dependencies=[allow(Capability.REPORTS_READ)],
)
def usage_totals(
    db: SessionDep,
    principal: CurrentAccount,
    cfg: PolicyDep,
    settings: SettingsDep,
    filters: FiltersDep,
    by: ReportBy = ["machine"],  # noqa: B006 - FastAPI copies defaults
    since: datetime | None = None,
    until: datetime | None = None,
) -> UsageTotals:
    """Sessions count in the period they started, print jobs in the period they ended;
    a session (and its jobs) counts for each of its programmes (hub.reports). Filament
    grams are estimated with the hub's filament diameter and density settings."""
    report = _report(db, principal, cfg, settings, by, since, until, filters)
    return UsageTotals(
        by=report.group_by[0],
        dimensions=list(report.group_by),
        site=report.site,
        since=report.period.start,
        until=report.period.end,
        rows=[
            UsageRow(
                key=" / ".join(r.keys),
                label=" / ".join(r.labels),
                keys=list(r.keys),
                labels=list(r.labels),
                masked=r.masked,
                participants=r.participants,
                new_participants=r.new_participants,
                sessions=r.sessions,
                seconds=r.seconds,
                hours=r.hours,
                average_session_min=r.average_session_min,
                run_hours=r.run_hours,
                jobs=r.jobs,
                print_hours=r.print_hours,
                filament_m=r.filament_m,
                filament_g=r.filament_g,
                machine_hours=r.machine_hours,
                unattributed_jobs=r.unattributed_jobs,
                unattributed_print_hours=r.unattributed_print_hours,
                filament_estimated_m=r.filament_estimated_m,
            )
            for r in report.rows
        ],
        hidden_groups=report.masked,
        min_group_size=report.min_group_size,
        note=report.note,
    )


@router.get(
    "/usage/report.csv",
    tags=["reports"],
    summary="The same totals as a CSV file (semicolon-separated, for spreadsheets)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "CSV report"}},
    dependencies=[allow(Capability.REPORTS_READ)],
)
def usage_report_csv(
    db: SessionDep,
    principal: CurrentAccount,
    cfg: PolicyDep,
    settings: SettingsDep,
    filters: FiltersDep,
    by: ReportBy = ["machine"],  # noqa: B006 - FastAPI copies defaults
    since: datetime | None = None,
    until: datetime | None = None,
) -> Response:
    report = _report(db, principal, cfg, settings, by, since, until, filters)
    return Response(
        content="\ufeff" + report_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{csv_filename(report)}"'},
    )
