"""Line-protocol points built from the hub's facts, pseudonymous by construction.

Each function takes only the dimensions the schema allows (never a member, a badge
or a file name) and returns lines made by :func:`protocol.telemetry_schema.line`,
which refuses anything undeclared. The same functions serve the live writer and
``fabrique telemetry backfill`` (a session rewritten from the ledger is the very
point written live: same series, same timestamp, so InfluxDB overwrites it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from protocol import telemetry_schema as ts
from protocol.messages import Scalar

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

#: Telemetry values copied to the printer measurement (every other key is ignored,
#: a file name above all).
_PRINTER_FIELDS = ("nozzle_c", "nozzle_target_c", "bed_c", "bed_target_c", "progress")
_LASER_FIELDS = ("run_time_s", "power_w")
NO_PROGRAMME = "aucun"


def ns(when: datetime) -> int:
    """Nanoseconds since the epoch, exact to the microsecond (aware datetimes)."""
    return ((when - _EPOCH) // _US) * 1000


def _flag(value: bool) -> str:
    return "true" if value else "false"


def access_line(
    site: str,
    when: datetime,
    *,
    granted: bool,
    reason: str,
    age_group: str | None,
    zone: str | None,
    machine: str,
    machine_kind: str | None,
) -> str:
    """One badge decision."""
    return ts.line(
        ts.ACCESS,
        {
            ts.SITE: site,
            "result": "granted" if granted else "denied",
            "reason": reason,
            "age_group": age_group or "",
            "zone": zone or "",
            "machine": machine,
            "machine_kind": machine_kind or "",
        },
        {"n": 1},
        ns(when),
    )


def programme_tag(programmes: Iterable[str]) -> str:
    """The programme tag of a session: its programmes sorted and '+'-joined."""
    names = sorted({p for p in programmes if p})
    return "+".join(names) if names else NO_PROGRAMME


def session_line(
    site: str,
    *,
    ended_at: datetime,
    zone: str | None,
    machine: str,
    machine_kind: str,
    age_group: str,
    programmes: Iterable[str],
    offline: bool,
    staff: bool,
    end_reason: str | None,
    used_s: float,
    run_s: float | None,
) -> str:
    """One ended session, timestamped at its end."""
    return ts.line(
        ts.SESSION,
        {
            ts.SITE: site,
            "zone": zone or "",
            "machine": machine,
            "machine_kind": machine_kind,
            "age_group": age_group,
            "programme": programme_tag(programmes),
            "offline": _flag(offline),
            "staff": _flag(staff),
            "end_reason": end_reason or "",
        },
        {"duration_s": float(used_s), "busy_s": float(run_s or 0.0), "n": 1},
        ns(ended_at),
    )


def job_line(
    site: str,
    *,
    ended_at: datetime,
    machine: str,
    result: str,
    duration_s: float,
    filament_mm: float | None,
) -> str:
    """One ended print job (its file name never leaves the ledger)."""
    return ts.line(
        ts.JOB,
        {ts.SITE: site, "machine": machine, "result": result},
        {
            "duration_s": float(duration_s),
            "filament_mm": float(filament_mm or 0.0),
            "success": result == "done",
            "n": 1,
        },
        ns(ended_at),
    )


def occupancy_line(
    site: str, when: datetime, tz: ZoneInfo, *, zone: str, sessions: int, machines: int, in_use: int
) -> str:
    """A zone's occupancy at ``when`` (tagged with the local weekday and hour)."""
    local = when.astimezone(tz)
    return ts.line(
        ts.OCCUPANCY,
        {
            ts.SITE: site,
            "zone": zone,
            "weekday": str(local.isoweekday()),
            "hour": f"{local.hour:02d}",
        },
        {"sessions": sessions, "machines": machines, "in_use": in_use},
        ns(when),
    )


def _number(value: Scalar) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def _state(values: Mapping[str, Scalar]) -> str:
    state = values.get("state")
    return str(state).strip().lower().replace(" ", "_") if isinstance(state, str) else ""


def printer_line(site: str, machine: str, when: datetime, values: Mapping[str, Scalar]) -> str:
    """A printer's telemetry: temperatures, progress, state (as a tag and a code)."""
    state = _state(values)
    fields: dict[str, float | int | bool | None] = {
        key: _number(values[key]) for key in _PRINTER_FIELDS if key in values
    }
    if "time_left_s" in values:
        fields["time_left_s"] = _number(values["time_left_s"])
    if "connected" in values:
        fields["connected"] = _number(values["connected"])
    fields["state_code"] = ts.PRINTER_STATE_CODES.get(state, ts.PRINTER_STATE_OTHER)
    return ts.line(
        ts.PRINTER, {ts.SITE: site, "machine": machine, "state": state}, fields, ns(when)
    )


def laser_line(site: str, machine: str, when: datetime, values: Mapping[str, Scalar]) -> str | None:
    """A laser's telemetry (run time, beam on, power); None when it says nothing of those."""
    fields: dict[str, float | int | bool | None] = {
        key: _number(values[key]) for key in _LASER_FIELDS if key in values
    }
    if "firing" in values:
        fields["firing"] = _number(values["firing"])
    if not any(v is not None for v in fields.values()):
        return None
    return ts.line(
        ts.LASER, {ts.SITE: site, "machine": machine, "state": _state(values)}, fields, ns(when)
    )


def edge_line(
    site: str,
    edge: str,
    when: datetime,
    *,
    online: bool,
    clock_offset_s: float | None,
    backlog: int | None,
) -> str:
    """An edge's health."""
    return ts.line(
        ts.EDGE,
        {ts.SITE: site, "edge": edge},
        {"online": online, "clock_offset_s": clock_offset_s, "backlog": backlog},
        ns(when),
    )
