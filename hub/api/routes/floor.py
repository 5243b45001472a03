"""The floor: live machines, edges, alerts and staff presence (tags ``live``, ``presence``).

Live machines merge three sources: the store (configuration, maintenance flag), the
live hub (``control.machine_states()``, ``control.edges_online()``) and open sessions
in the ledger. Staff see the user's first name; coordinators see no identity.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy import select

from hub.api.auth import Capability
from hub.api.common import commit, conflict, get_or_404, require_refs
from hub.api.deps import ControlDep, CurrentAccount, SessionDep, SettingsDep, allow
from hub.api.schemas import (
    AlertPublic,
    DbId,
    EdgePublic,
    Ident,
    LiveMachine,
    LiveSession,
    PresenceCreate,
    PresencePublic,
)
from hub.api.views import STAFF_VIEW_ROLES, first_name
from hub.db.models import Alert, EdgeCursor, Machine, Member, StaffPresence, UsageSession, Zone
from protocol.messages import utcnow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api")


# --------------------------------------------------------------------------- live


#: Telemetry keys never shown on the floor: an older edge may still publish the job's
#: file name, which can name a child (file names stay in the staff-only job record).
_PRIVATE_TELEMETRY = frozenset({"file"})


def _public_telemetry(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in _PRIVATE_TELEMETRY}


@router.get(
    "/live/machines",
    response_model=list[LiveMachine],
    tags=["live"],
    summary="Every machine now: state, edge liveness, current session",
    dependencies=[allow(Capability.LIVE_READ)],
)
def live_machines(
    db: SessionDep, control: ControlDep, principal: CurrentAccount, zone_id: Ident | None = None
) -> list[LiveMachine]:
    query = select(Machine).order_by(Machine.zone_id, Machine.id)
    if zone_id is not None:
        query = query.where(Machine.zone_id == zone_id)
    machines = list(db.scalars(query))
    states = control.machine_states()
    edges = control.edges_online()
    telemetry = control.machine_telemetry()
    open_rows = db.execute(
        select(UsageSession, Member.display_name)
        .outerjoin(Member, Member.id == UsageSession.member_id)
        .where(UsageSession.ended_at.is_(None))
        .order_by(UsageSession.started_at)
    )
    sessions: dict[str, LiveSession] = {}
    show_names = principal.role in STAFF_VIEW_ROLES
    for row, name in open_rows:
        sessions[row.machine_id] = LiveSession(
            id=row.id,
            first_name=first_name(name) if show_names else None,
            age_group=row.age_group,
            started_at=row.started_at,
            granted_until=row.granted_until,
            used_s=row.used_s,
        )
    result = []
    for m in machines:
        state = states.get(m.id)
        tele = telemetry.get(m.id)
        availability = state.availability if state is not None else "unknown"
        if m.maintenance and state is None:
            availability = "maintenance"
        result.append(
            LiveMachine(
                id=m.id,
                name=m.name,
                kind=m.kind,
                zone_id=m.zone_id,
                edge_id=m.edge_id,
                availability=availability,
                maintenance=m.maintenance,
                maintenance_note=m.maintenance_note,
                edge_online=edges.get(m.edge_id),
                state_ts=state.ts if state is not None else None,
                detail=state.detail if state is not None else None,
                session=sessions.get(m.id),
                telemetry=_public_telemetry(tele.values) if tele is not None else {},
                telemetry_ts=tele.ts if tele is not None else None,
            )
        )
    return result


@router.get(
    "/edges",
    response_model=list[EdgePublic],
    tags=["live"],
    summary="Edges: liveness, version, machines, journal progress",
    dependencies=[allow(Capability.FLOOR_READ)],
)
def list_edges(db: SessionDep, control: ControlDep) -> list[EdgePublic]:
    online = control.edges_online()
    cursors = {c.edge_id: c for c in db.scalars(select(EdgeCursor))}
    machines: dict[str, list[str]] = {}
    for machine_id, edge_id in db.execute(select(Machine.id, Machine.edge_id)):
        machines.setdefault(edge_id, []).append(machine_id)
    result = []
    for edge_id in sorted(set(online) | set(cursors) | set(machines)):
        cursor = cursors.get(edge_id)
        live = online.get(edge_id)
        result.append(
            EdgePublic(
                id=edge_id,
                online=live if live is not None else (cursor.online if cursor else None),
                version=cursor.version if cursor else "",
                last_seen=cursor.last_seen if cursor else None,
                machines=sorted(machines.get(edge_id, [])),
                journal_through=cursor.contiguous_through if cursor else None,
                journal_max_seen=cursor.max_seen if cursor else None,
            )
        )
    return result


# --------------------------------------------------------------------------- alerts


@router.get(
    "/alerts",
    response_model=list[AlertPublic],
    tags=["live"],
    summary="Alerts, newest first (open ones only by default)",
    dependencies=[allow(Capability.FLOOR_READ)],
)
def list_alerts(
    db: SessionDep,
    include_resolved: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[Alert]:
    query = select(Alert).order_by(Alert.ts.desc(), Alert.id.desc()).limit(limit)
    if not include_resolved:
        query = query.where(Alert.resolved_at.is_(None))
    return list(db.scalars(query))


@router.post(
    "/alerts/{alert_id}/resolve",
    response_model=AlertPublic,
    tags=["live"],
    summary="Mark an alert as handled",
    dependencies=[allow(Capability.ALERT_RESOLVE)],
)
def resolve_alert(alert_id: DbId, db: SessionDep, principal: CurrentAccount) -> Alert:
    alert = get_or_404(db, Alert, alert_id, "Alerte")
    if alert.resolved_at is not None:
        conflict("Cette alerte est déjà traitée")
    alert.resolved_at = utcnow()
    commit(db, "Modification refusée")
    log.info("alert %d resolved by account %d", alert_id, principal.account_id)
    return alert


# --------------------------------------------------------------------------- presence


def _presence(row: StaffPresence, name: str) -> PresencePublic:
    return PresencePublic(
        id=row.id,
        member_id=row.member_id,
        first_name=first_name(name) or "",
        zone_id=row.zone_id,
        since=row.since,
        until=row.until,
    )


@router.get(
    "/presence",
    response_model=list[PresencePublic],
    tags=["presence"],
    summary="Staff present now",
    dependencies=[allow(Capability.PRESENCE_READ)],
)
def list_presence(db: SessionDep, zone_id: Ident | None = None) -> list[PresencePublic]:
    query = (
        select(StaffPresence, Member.display_name)
        .join(Member, Member.id == StaffPresence.member_id)
        .where(StaffPresence.until > utcnow())
        .order_by(StaffPresence.zone_id, StaffPresence.since)
    )
    if zone_id is not None:
        query = query.where(StaffPresence.zone_id == zone_id)
    return [_presence(row, name) for row, name in db.execute(query)]


@router.post(
    "/presence",
    response_model=PresencePublic,
    status_code=status.HTTP_201_CREATED,
    tags=["presence"],
    summary="Mark myself present in a zone (extends a current presence)",
    dependencies=[allow(Capability.PRESENCE_WRITE)],
)
def mark_present(
    body: PresenceCreate,
    db: SessionDep,
    settings: SettingsDep,
    control: ControlDep,
    principal: CurrentAccount,
) -> PresencePublic:
    if principal.member_id is None:
        conflict("Votre compte n'est lié à aucun membre : demandez à un admin de le lier")
    require_refs(db, Zone, [body.zone_id], ("body", "zone_id"), "Zone")
    member = get_or_404(db, Member, principal.member_id, "Membre")
    now = utcnow()
    until = now + timedelta(hours=body.hours or settings.staff_presence_h)
    row = db.scalar(
        select(StaffPresence).where(
            StaffPresence.member_id == member.id,
            StaffPresence.zone_id == body.zone_id,
            StaffPresence.until > now,
        )
    )
    if row is None:
        row = StaffPresence(member_id=member.id, zone_id=body.zone_id, since=now, until=until)
        db.add(row)
    else:
        row.until = until
    commit(db, "Présence refusée par la base de données")
    control.reference_changed()
    log.info("member %d present in zone %s until %s", member.id, body.zone_id, until)
    return _presence(row, member.display_name)


@router.delete(
    "/presence",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["presence"],
    summary="Mark myself gone (from one zone, or from every zone)",
    dependencies=[allow(Capability.PRESENCE_WRITE)],
)
def mark_absent(
    db: SessionDep, control: ControlDep, principal: CurrentAccount, zone_id: Ident | None = None
) -> None:
    if principal.member_id is None:
        conflict("Votre compte n'est lié à aucun membre : demandez à un admin de le lier")
    now = utcnow()
    query = select(StaffPresence).where(
        StaffPresence.member_id == principal.member_id, StaffPresence.until > now
    )
    if zone_id is not None:
        query = query.where(StaffPresence.zone_id == zone_id)
    rows = list(db.scalars(query))
    if not rows:
        conflict("Vous n'êtes pas marqué présent" + (" dans cette zone" if zone_id else ""))
    for row in rows:
        row.until = now
    commit(db, "Modification refusée")
    control.reference_changed()
