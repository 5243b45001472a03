"""Usage sessions and usage reports (tags ``sessions``, ``reports``).

Sessions are shaped per role (member ids for admins and fabmanagers, first names for
staff, no identity for coordinators). Reports total the seconds, sessions and
distinct participants per dimension; for coordinators, groups with fewer than
:data:`MIN_GROUP_SIZE` distinct people are withheld (DESIGN §4: small groups hidden),
because "age 9-15, laser, this month" can identify a child.
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
from hub.api.common import get_or_404, to_utc
from hub.api.deps import ControlDep, CurrentAccount, PolicyDep, SessionDep, allow
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
from hub.db.models import Machine, Member, Programme, UsageSession
from hub.policy.model import PolicyConfig
from protocol.ids import TOKEN_PATTERN

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api")

#: Smallest group a coordinator may see in a report.
MIN_GROUP_SIZE = 5
SessionId = Annotated[str, Path(pattern=TOKEN_PATTERN, description="session id")]


def _period(
    cfg: PolicyConfig,
    since: datetime | None,
    until: datetime | None,
) -> tuple[datetime | None, datetime | None]:
    start = to_utc(since, cfg.tz, "since") if since is not None else None
    end = to_utc(until, cfg.tz, "until") if until is not None else None
    if start is not None and end is not None and end <= start:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["query", "until"], "msg": "until doit suivre since", "type": "range"}],
        )
    return start, end


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
    start, end = _period(cfg, since, until)
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
    if start is not None:
        query = query.where(UsageSession.started_at >= start)
    if end is not None:
        query = query.where(UsageSession.started_at < end)
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


# --------------------------------------------------------------------------- reports


@dataclass
class _Group:
    label: str
    seconds: float = 0.0
    sessions: int = 0
    members: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class _Report:
    by: UsageDimension
    since: datetime | None
    until: datetime | None
    rows: list[UsageRow]
    hidden: int
    min_size: int | None


def _labels(db: SessionDep, by: UsageDimension, principal: Principal) -> dict[str, str]:
    if by == "machine":
        return {k: v for k, v in db.execute(select(Machine.id, Machine.name))}
    if by == "programme":
        return {k: v for k, v in db.execute(select(Programme.id, Programme.name))}
    if by == "member" and principal.role in IDENTIFYING_ROLES:
        return {str(k): v for k, v in db.execute(select(Member.id, Member.display_name))}
    return {}


def _keys(
    by: UsageDimension,
    row: tuple[datetime, float, int | None, str, list[str], str, str],
    cfg: PolicyConfig,
) -> Iterable[str]:
    started_at, _, member_id, machine_id, programmes, age_group, kind = row
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
    return [started_at.astimezone(cfg.tz).strftime("%Y-%m")]


def _report(
    db: SessionDep,
    principal: Principal,
    cfg: PolicyConfig,
    by: UsageDimension,
    since: datetime | None,
    until: datetime | None,
    zone_id: str | None,
) -> _Report:
    query = select(
        UsageSession.started_at,
        UsageSession.used_s,
        UsageSession.member_id,
        UsageSession.machine_id,
        UsageSession.programmes,
        UsageSession.age_group,
        UsageSession.machine_kind,
    )
    start, end = _period(cfg, since, until)
    if start is not None:
        query = query.where(UsageSession.started_at >= start)
    if end is not None:
        query = query.where(UsageSession.started_at < end)
    if zone_id is not None:
        query = query.where(UsageSession.zone_id == zone_id)
    labels = _labels(db, by, principal)
    groups: dict[str, _Group] = {}
    for row in db.execute(query.execution_options(yield_per=1000)):
        for key in _keys(by, row, cfg):
            group = groups.setdefault(key, _Group(label=labels.get(key, key or "(aucun)")))
            group.seconds += row[1] or 0.0
            group.sessions += 1
            if row[2] is not None:
                group.members.add(row[2])
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
    by: ReportBy = "machine",
    since: datetime | None = None,
    until: datetime | None = None,
    zone_id: Ident | None = None,
) -> UsageTotals:
    """Sessions count in the period they started; a session counts for each of its programmes."""
    report = _report(db, principal, cfg, by, since, until, zone_id)
    return UsageTotals(
        by=report.by,
        since=report.since,
        until=report.until,
        rows=report.rows,
        hidden_groups=report.hidden,
        min_group_size=report.min_size,
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
    by: ReportBy = "machine",
    since: datetime | None = None,
    until: datetime | None = None,
    zone_id: Ident | None = None,
) -> Response:
    report = _report(db, principal, cfg, by, since, until, zone_id)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(
        ["dimension", "cle", "libelle", "heures", "secondes", "sessions", "participants"]
    )
    for row in report.rows:
        writer.writerow(
            [
                by,
                _cell(row.key),
                _cell(row.label),
                f"{row.hours:.2f}".replace(".", ","),
                round(row.seconds),
                row.sessions,
                row.participants,
            ]
        )
    if report.hidden:
        writer.writerow(
            [
                by,
                "",
                f"{report.hidden} groupe(s) de moins de {report.min_size} personnes masqué(s)",
                "",
                "",
                "",
                "",
            ]
        )
    period = "-".join(
        d.astimezone(cfg.tz).strftime("%Y%m%d") for d in (report.since, report.until) if d
    )
    filename = f"fabrique-usage-{by}{'-' + period if period else ''}.csv"
    return Response(
        content="\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _cell(value: str) -> str:
    """Neutralise spreadsheet formulas in free text (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
