"""The floor as screens show it: one :class:`Tile` per machine, built from the API's data.

:func:`floor_snapshot` reads what ``GET /api/live/machines`` answers (the same
function, :func:`hub.api.routes.floor.live_machines`) plus zones and open alerts, and
turns each machine into a :class:`Tile`: its state in the floor's words (libre /
occupé / en fin de session / hors ligne / maintenance / en défaut), the person's first
name (dropped for roles that must not see it), and the printer, laser or gaming
details. Templates only format a tile; they decide nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.api.auth import Principal
from hub.api.routes.floor import live_machines
from hub.api.schemas import LiveMachine
from hub.control import HubControl
from hub.db.models import Alert, Role, Zone
from protocol.messages import utcnow

#: A session this close to its end shows "en fin de session".
ENDING_SOON = timedelta(minutes=5)

#: The principal the floor feed reads with: it sees names; tiles drop them per role.
FEED_PRINCIPAL = Principal(
    account_id=0, username="floor-feed", role=Role.ADMIN, member_id=None, token_id=0
)

STATE_LABELS = {
    "libre": "Libre",
    "occupe": "Occupé",
    "fin": "En fin de session",
    "hors-ligne": "Hors ligne",
    "maintenance": "Maintenance",
    "defaut": "En défaut",
    "pause": "Pause",
    "sans-session": "En cours sans session",
}

ALERT_LABELS = {
    "machine_fault": "Machine en défaut",
    "printer_unreachable": "OctoPrint ne répond plus",
    "fault_hold_expired": "Défaut trop long : machine coupée",
    "running_without_session": "En cours sans session",
    "edge_offline": "Borne hors ligne",
    "print_failed": "Impression échouée",
    "unbadged_use": "Machine utilisée sans badge",
    "journal_gap": "Journal incomplet",
    "journal_backlog": "Journal en retard",
    "journal_poison": "Événement du journal mis de côté",
    "usage_clamped": "Durée d’usage invraisemblable corrigée",
    "epoch_reset": "Borne réinitialisée ou usurpée",
    "forged_messages": "Messages falsifiés refusés par la borne",
}

#: The edge's fault sources in the floor's words (an unknown source shows as it is).
FAULT_LABELS = {
    "printer_unreachable": "OctoPrint ne répond plus",
    "printer": "erreur signalée par l'imprimante",
    "grbl": "contrôleur du laser (alarme, porte ou liaison)",
    "actuator": "prise ou relais injoignable",
    "journal": "journal de la borne en échec",
    "rearm": "à réarmer par l'équipe (après une butée ou un arrêt d'urgence)",
}

_PRINTER_STATES = {
    "Operational": "prête",
    "Printing": "impression",
    "Paused": "en pause",
    "Pausing": "mise en pause",
    "Cancelling": "annulation",
    "Finishing": "finition",
    "Offline": "déconnectée",
    "Error": "erreur",
}

#: GRBL's status words as the floor says them (``Door:1``, ``Alarm``… by their head).
_LASER_STATES = {
    "idle": "au repos",
    "run": "en marche",
    "hold": "en pause",
    "jog": "déplacement",
    "alarm": "alarme",
    "door": "capot ouvert",
    "check": "vérification",
    "home": "prise d'origine",
    "sleep": "en veille",
    "unknown": "inconnu",
}


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class PrinterInfo:
    state: str
    nozzle: float | None
    nozzle_target: float | None
    bed: float | None
    bed_target: float | None
    progress: float | None
    time_left_s: float | None
    file: str | None


@dataclass(frozen=True, slots=True)
class LaserInfo:
    state: str
    firing: bool
    run_time_s: float | None
    door_open: bool
    alarm: bool


@dataclass(frozen=True, slots=True)
class Tile:
    """One machine on a screen."""

    id: str
    name: str
    kind: str
    zone_id: str
    #: One of :data:`STATE_LABELS`' keys (also the CSS class suffix ``st-…``).
    state: str
    state_label: str
    #: First name of the person at the machine; None when unknown or hidden.
    person: str | None
    in_session: bool
    session_id: str | None
    ends_at: datetime | None
    maintenance_note: str = ""
    faults: str = ""
    printer: PrinterInfo | None = None
    laser: LaserInfo | None = None
    job_running: bool = False

    def for_role(self, staff: bool) -> Tile:
        """The tile a role may see: coordinators get no name and no file name."""
        if staff:
            return self
        printer = self.printer
        if printer is not None and printer.file is not None:
            printer = replace(printer, file=None)
        return replace(self, person=None, printer=printer, state_label=STATE_LABELS[self.state])


@dataclass(frozen=True, slots=True)
class AlertView:
    id: int
    ts: datetime
    kind: str
    label: str
    machine_id: str | None
    edge_id: str | None
    detail: str
    seen: bool


@dataclass(frozen=True, slots=True)
class FloorSnapshot:
    """Every tile, grouped by zone, and the open alerts."""

    zones: tuple[tuple[str, str], ...]
    tiles: dict[str, Tile]
    alerts: tuple[AlertView, ...] = ()
    taken_at: datetime = field(default_factory=utcnow)
    #: What the tiles were built from (kept to refresh the live part without the store).
    machines: tuple[LiveMachine, ...] = ()

    def by_zone(self) -> list[tuple[str, str, list[Tile]]]:
        """(zone id, zone name, its tiles) in zone order; zones without machines left out."""
        out = []
        for zid, name in self.zones:
            tiles = [t for t in self.tiles.values() if t.zone_id == zid]
            if tiles:
                out.append((zid, name, tiles))
        return out


def tile_of(m: LiveMachine, now: datetime, job_file: str | None = None) -> Tile:
    """The floor's view of one machine of ``GET /api/live/machines``; ``job_file``: the
    running job's file name from its ``job_started`` record (staff tiles only)."""
    detail = m.detail
    tele = m.telemetry
    session = m.session
    ends_at = detail.ends_at if detail is not None else None
    if ends_at is None and session is not None:
        ends_at = session.granted_until
    edge_state = (detail.state or "") if detail is not None else ""
    in_session = session is not None or m.availability == "in_use"
    if m.maintenance or m.availability == "maintenance":
        state = "maintenance"
    elif m.edge_online is False or m.availability in ("offline", "unknown"):
        state = "hors-ligne"
    elif m.availability == "fault":
        state = "defaut"
    elif detail is not None and detail.foreign_job and session is None:
        state = "sans-session"  # a job nobody badged for (started at the machine)
    elif edge_state == "on_break":
        state = "pause"
    elif in_session:
        ending = edge_state == "ending" or (ends_at is not None and ends_at - now <= ENDING_SOON)
        state = "fin" if ending else "occupe"
    else:
        state = "libre"
    person = session.first_name if session is not None else None
    label = STATE_LABELS[state]
    if state == "occupe" and person:
        label = f"Occupé par {person}"
    elif state == "fin" and person:
        label = f"En fin de session — {person}"
    printer = laser = None
    if m.kind == "printer" and tele:
        raw_state = str(tele.get("state", ""))
        printer = PrinterInfo(
            state=_PRINTER_STATES.get(raw_state, raw_state.lower()),
            nozzle=_num(tele.get("nozzle_c")),
            nozzle_target=_num(tele.get("nozzle_target_c")),
            bed=_num(tele.get("bed_c")),
            bed_target=_num(tele.get("bed_target_c")),
            progress=_num(tele.get("progress")),
            time_left_s=_num(tele.get("time_left_s")),
            # An older edge may still publish the job's file name on tele/+; it can
            # name a child, so the floor never takes it from telemetry: only from the
            # job's journal record, and only staff tiles keep it (:meth:`Tile.for_role`).
            file=job_file if detail is not None and detail.job else None,
        )
    if m.kind == "laser" and tele:
        raw_state = str(tele.get("state", ""))
        head = raw_state.split(":", 1)[0].lower()
        laser = LaserInfo(
            state=_LASER_STATES.get(head, head),
            firing=bool(tele.get("firing")),
            run_time_s=_num(tele.get("run_time_s")),
            door_open=head == "door",
            alarm=head == "alarm",
        )
    return Tile(
        id=m.id,
        name=m.name,
        kind=str(m.kind),
        zone_id=m.zone_id,
        state=state,
        state_label=label,
        person=person,
        in_session=in_session and session is not None,
        session_id=session.id if session is not None else None,
        ends_at=ends_at if in_session else None,
        maintenance_note=m.maintenance_note,
        faults=", ".join(FAULT_LABELS.get(f, f) for f in detail.faults) if detail else "",
        printer=printer,
        laser=laser,
        job_running=detail.job if detail is not None else False,
    )


def open_alerts(db: Session, limit: int = 20) -> tuple[AlertView, ...]:
    rows = db.scalars(
        select(Alert)
        .where(Alert.resolved_at.is_(None))
        .order_by(Alert.ts.desc(), Alert.id.desc())
        .limit(limit)
    )
    return tuple(
        AlertView(
            id=a.id,
            ts=a.ts,
            kind=a.kind,
            label=ALERT_LABELS.get(a.kind, a.kind.replace("_", " ").capitalize()),
            machine_id=a.machine_id,
            edge_id=a.edge_id,
            detail=a.detail[:200],
            seen=a.seen_at is not None,
        )
        for a in rows
    )


def floor_snapshot(
    db: Session, control: HubControl, *, alerts: bool = True, zone_id: str | None = None
) -> FloorSnapshot:
    """The whole floor now (tiles with names; call :meth:`Tile.for_role` before showing)."""
    now = utcnow()
    machines = live_machines(db, control, FEED_PRINCIPAL, zone_id)
    zones = tuple((z.id, z.name) for z in db.scalars(select(Zone).order_by(Zone.id)))
    files = control.running_job_files()
    tiles = {m.id: tile_of(m, now, files.get(m.id)) for m in machines}
    return FloorSnapshot(
        zones=zones,
        tiles=tiles,
        alerts=open_alerts(db) if alerts else (),
        taken_at=now,
        machines=tuple(machines),
    )


def with_live_state(snapshot: FloorSnapshot, control: HubControl) -> FloorSnapshot:
    """``snapshot`` with the hub's current machine states, edge liveness and telemetry,
    without reading the store (sessions, names and configuration stay as they were).

    Merges like :func:`hub.api.routes.floor.live_machines` does.
    """
    now = utcnow()
    states = control.machine_states()
    edges = control.edges_online()
    telemetry = control.machine_telemetry()
    machines = []
    for m in snapshot.machines:
        state = states.get(m.id)
        tele = telemetry.get(m.id)
        availability = state.availability if state is not None else "unknown"
        if m.maintenance and state is None:
            availability = "maintenance"
        machines.append(
            m.model_copy(
                update={
                    "availability": availability,
                    "edge_online": edges.get(m.edge_id),
                    "state_ts": state.ts if state is not None else None,
                    "detail": state.detail if state is not None else None,
                    "telemetry": dict(tele.values) if tele is not None else {},
                    "telemetry_ts": tele.ts if tele is not None else None,
                }
            )
        )
    files = control.running_job_files()
    return replace(
        snapshot,
        tiles={m.id: tile_of(m, now, files.get(m.id)) for m in machines},
        taken_at=now,
        machines=tuple(machines),
    )
