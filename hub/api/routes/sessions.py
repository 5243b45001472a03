"""Usage sessions and usage reports (tags ``sessions``, ``reports``).

Sessions are shaped per role (member ids for admins and fabmanagers, first names for
staff, no identity for coordinators). Reports total the seconds, sessions, machine
run time, print jobs, print time, filament and distinct participants per dimension;
for coordinators, groups with fewer than :data:`MIN_GROUP_SIZE` distinct people are
withheld (DESIGN §4: small groups hidden), because "age 9-15, laser, this month" can
identify a child.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from sqlalchemy import func, select

from hub.api.auth import IDENTIFYING_ROLES, Capability, Principal
from hub.api.common import get_or_404, period, within
from hub.api.deps import ControlDep, CurrentAccount, PolicyDep, SessionDep, SettingsDep, allow
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
from hub.db.models import Machine, MachineJob, Member, Programme, UsageSession
from hub.policy.model import PolicyConfig
from hub.settings import HubSettings
from protocol.ids import TOKEN_PATTERN

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api")

#: Smallest group a coordinator may see in a report.
MIN_GROUP_SIZE = 5
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


@router.post(
    "/sessions/{session_id}/end",
    response_model=SessionPublic,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["sessions"],
    summary="Ask the machine's edge to end a session now",
    responses={503: {"description": "the session's edge cannot be reached"}},
    dependencies=[allow(Capability.SESSIONS_END)],
)
def end_session(
    session_id: SessionId, db: SessionDep, control: ControlDep, principal: CurrentAccount
) -> SessionPublic:
    """The edge ends it and journals ``session_ended``; the ledger closes it then."""
    row = _load_session(db, session_id)
    if row.ended_at is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="Cette session est déjà terminée")
    if not control.end_session(session_id, "Session terminée par l'équipe"):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="La machine est injoignable : la session n'a pas pu être terminée",
        )
    log.info("account %d ended session %s", principal.account_id, session_id)
    name = db.scalar(select(Member.display_name).where(Member.id == row.member_id))
    return session_public(row, name, principal.role)


@router.post(
    "/sessions/{session_id}/extend",
    response_model=SessionPublic,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["sessions"],
    summary="Ask the machine's edge to give a session more time",
    responses={503: {"description": "the session's edge cannot be reached"}},
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
    if not control.extend_session(session_id, minutes, "Session prolongée par l'équipe"):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="La machine est injoignable : la session n'a pas pu être prolongée",
        )
    log.info("account %d extended session %s by %d min", principal.account_id, session_id, minutes)
    name = db.scalar(select(Member.display_name).where(Member.id == row.member_id))
    return session_public(row, name, principal.role)


# --------------------------------------------------------------------------- reports


@dataclass
class _Group:
    label: str
    seconds: float = 0.0
    run_seconds: float = 0.0
    sessions: int = 0
    jobs: int = 0
    print_seconds: float = 0.0
    filament_mm: float = 0.0
    members: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class _Report:
    by: UsageDimension
    since: datetime | None
    until: datetime | None
    rows: list[UsageRow]
    hidden: int
    min_size: int | None


#: The dimensions of a session or a job: when, member, machine, programmes, age group, kind.
_Dims = tuple[datetime, int | None, str, list[str] | None, str, str]


def _labels(db: SessionDep, by: UsageDimension, principal: Principal) -> dict[str, str]:
    if by == "machine":
        return {k: v for k, v in db.execute(select(Machine.id, Machine.name))}
    if by == "programme":
        return {k: v for k, v in db.execute(select(Programme.id, Programme.name))}
    if by == "member" and principal.role in IDENTIFYING_ROLES:
        return {str(k): v for k, v in db.execute(select(Member.id, Member.display_name))}
    return {}


def _keys(by: UsageDimension, dims: _Dims, cfg: PolicyConfig) -> Iterable[str]:
    when, member_id, machine_id, programmes, age_group, kind = dims
    if by == "member":
        return [str(member_id) if member_id is not None else ""]
    if by == "machine":
        return [machine_id]
    if by == "programme":
        return sorted(set(programmes or [])) or [""]
    if by == "age_group":
        return [age_group]
    if by == "machine_kind":
        return [kind]
    return [when.astimezone(cfg.tz).strftime("%Y-%m")]


def _report(
    db: SessionDep,
    principal: Principal,
    cfg: PolicyConfig,
    settings: HubSettings,
    by: UsageDimension,
    since: datetime | None,
    until: datetime | None,
    zone_id: str | None,
) -> _Report:
    start, end = period(cfg, since, until)
    labels = _labels(db, by, principal)
    groups: dict[str, _Group] = {}

    def groups_of(dims: _Dims, member_id: int | None) -> Iterable[_Group]:
        for key in _keys(by, dims, cfg):
            group = groups.setdefault(key, _Group(label=labels.get(key, key or "(aucun)")))
            if member_id is not None:
                group.members.add(member_id)
            yield group

    sessions = select(
        UsageSession.started_at,
        UsageSession.member_id,
        UsageSession.machine_id,
        UsageSession.programmes,
        UsageSession.age_group,
        UsageSession.machine_kind,
        UsageSession.used_s,
        UsageSession.run_s,
    )
    sessions = within(sessions, UsageSession.started_at, start, end)
    if zone_id is not None:
        sessions = sessions.where(UsageSession.zone_id == zone_id)
    for when, member_id, machine_id, programmes, age, kind, used_s, run_s in db.execute(
        sessions.execution_options(yield_per=1000)
    ):
        dims = (when, member_id, machine_id, programmes, age, kind)
        for group in groups_of(dims, member_id):
            group.seconds += used_s or 0.0
            group.run_seconds += run_s or 0.0
            group.sessions += 1

    # Jobs count in the period they ended; their programmes and kind are their session's.
    jobs = (
        select(
            MachineJob.ended_at,
            MachineJob.member_id,
            MachineJob.machine_id,
            UsageSession.programmes,
            MachineJob.age_group,
            UsageSession.machine_kind,
            Machine.kind,
            MachineJob.duration_s,
            MachineJob.filament_mm,
        )
        .outerjoin(UsageSession, UsageSession.id == MachineJob.session_id)
        .outerjoin(Machine, Machine.id == MachineJob.machine_id)
    )
    jobs = within(jobs, MachineJob.ended_at, start, end)
    if zone_id is not None:
        jobs = jobs.where(MachineJob.zone_id == zone_id)
    for row in db.execute(jobs.execution_options(yield_per=1000)):
        when, member_id, machine_id, programmes, age, kind, machine_kind, duration, mm = row
        kind = kind or (machine_kind.value if machine_kind is not None else "")
        for group in groups_of((when, member_id, machine_id, programmes, age, kind), member_id):
            group.jobs += 1
            group.print_seconds += duration or 0.0
            group.filament_mm += mm or 0.0

    min_size = MIN_GROUP_SIZE if principal.role not in IDENTIFYING_ROLES else None
    rows: list[UsageRow] = []
    hidden = 0
    for key in sorted(groups):
        group = groups[key]
        if min_size is not None and len(group.members) < min_size:
            hidden += 1
            continue
        rows.append(
            UsageRow(
                key=key,
                label=group.label,
                seconds=round(group.seconds, 1),
                hours=round(group.seconds / 3600, 2),
                sessions=group.sessions,
                participants=len(group.members),
                run_hours=round(group.run_seconds / 3600, 2),
                jobs=group.jobs,
                print_hours=round(group.print_seconds / 3600, 2),
                filament_m=round(group.filament_mm / 1000, 2),
                filament_g=round(settings.filament_grams(group.filament_mm), 1),
            )
        )
    return _Report(by, start, end, rows, hidden, min_size)


ReportBy = Annotated[UsageDimension, Query(description="dimension of the totals")]


@router.get(
    "/usage/totals",
    response_model=UsageTotals,
    tags=["reports"],
    summary="Usage totals per member, machine, programme, age group, machine kind or month",
    dependencies=[allow(Capability.REPORTS_READ)],
)
def usage_totals(
    db: SessionDep,
    principal: CurrentAccount,
    cfg: PolicyDep,
    settings: SettingsDep,
    by: ReportBy = "machine",
    since: datetime | None = None,
    until: datetime | None = None,
    zone_id: Ident | None = None,
) -> UsageTotals:
    """Sessions count in the period they started, print jobs in the period they ended;
    a session (and its jobs) counts for each of its programmes. Filament grams are
    estimated with the hub's filament diameter and density settings."""
    report = _report(db, principal, cfg, settings, by, since, until, zone_id)
    return UsageTotals(
        by=report.by,
        since=report.since,
        until=report.until,
        rows=report.rows,
        hidden_groups=report.hidden,
        min_group_size=report.min_size,
    )


#: CSV columns (French, no accents: spreadsheets guess encodings badly in headers).
_CSV_HEADER = [
    "dimension",
    "cle",
    "libelle",
    "heures",
    "secondes",
    "sessions",
    "participants",
    "heures_fonctionnement",
    "impressions",
    "heures_impression",
    "filament_m",
    "filament_g",
]


def _decimal(value: float, digits: int = 2) -> str:
    """A number with a decimal comma, as French spreadsheets read it."""
    return f"{value:.{digits}f}".replace(".", ",")


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
    by: ReportBy = "machine",
    since: datetime | None = None,
    until: datetime | None = None,
    zone_id: Ident | None = None,
) -> Response:
    report = _report(db, principal, cfg, settings, by, since, until, zone_id)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(_CSV_HEADER)
    for row in report.rows:
        writer.writerow(
            [
                by,
                _cell(row.key),
                _cell(row.label),
                _decimal(row.hours),
                round(row.seconds),
                row.sessions,
                row.participants,
                _decimal(row.run_hours),
                row.jobs,
                _decimal(row.print_hours),
                _decimal(row.filament_m),
                _decimal(row.filament_g, 1),
            ]
        )
    if report.hidden:
        note = f"{report.hidden} groupe(s) de moins de {report.min_size} personnes masqué(s)"
        writer.writerow([by, "", note] + [""] * (len(_CSV_HEADER) - 3))
    span = "-".join(
        d.astimezone(cfg.tz).strftime("%Y%m%d") for d in (report.since, report.until) if d
    )
    filename = f"fabrique-usage-{by}{'-' + span if span else ''}.csv"
    return Response(
        content="\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _cell(value: str) -> str:
    """Neutralise spreadsheet formulas in free text (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
