"""The time-series contract: every InfluxDB measurement, tag and field, defined once.

The hub's writer (:mod:`hub.telemetry`) builds points only through :func:`line`,
which refuses any tag or field not declared here, and the Grafana dashboards
(:mod:`dashboards`) are checked against the same table: a query may name only the
measurements, tags and fields below.

Privacy (DESIGN §4): points are pseudonymous. No tag or field carries a name, a
member id, a badge hash, a birth date, a session id or a file name; the dimensions
are the site, the zone, the machine, its kind, the age group and the programme.
Fields are floats (a state is a tag, or a numeric code: :data:`PRINTER_STATE_CODES`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measurement: its tags (strings) and numeric fields, each documented."""

    name: str
    doc: str
    tags: Mapping[str, str]
    fields: Mapping[str, str]


#: Every point carries the site it comes from (dashboards filter on it).
SITE: Final = "site"

ACCESS: Final = Measurement(
    "access",
    "one badge decision (written by the hub as it answers, off the decision path)",
    tags={
        SITE: "site id",
        "result": "granted | denied",
        "reason": "decision code (granted, granted_staff, outside_slot, quota_exhausted…)",
        "age_group": "the member's age group at the decision ('' when unknown badge)",
        "zone": "zone id of the machine",
        "machine_kind": "printer | laser | gaming_pc | … ('' for an unknown machine)",
        "machine": "machine id",
    },
    fields={"n": "always 1 (sum it to count decisions)"},
)

SESSION: Final = Measurement(
    "session",
    "one ended session, timestamped at its end, rewritten by `fabrique telemetry backfill`",
    tags={
        SITE: "site id",
        "zone": "zone id",
        "machine": "machine id",
        "machine_kind": "printer | laser | gaming_pc | …",
        "age_group": "age group frozen at the session's start",
        "programme": "the member's programme(s) at the start, '+'-joined; 'aucun' when none",
        "offline": "true when the edge decided it offline",
        "end_reason": "badge_out | time_up | break | job_done | …",
        "staff": "true for a staff member's session",
    },
    fields={
        "duration_s": "seconds used (the ledger's used_s)",
        "busy_s": "seconds the machine really worked (a laser's beam-on time); 0 if unmeasured",
        "n": "always 1 (sum it to count sessions)",
    },
)

OCCUPANCY: Final = Measurement(
    "occupancy",
    "per zone, every minute: open sessions and machines in use",
    tags={
        SITE: "site id",
        "zone": "zone id",
        "weekday": "local day of the week, 1 (Monday) to 7 (Sunday)",
        "hour": "local hour, 00 to 23 (two digits)",
    },
    fields={
        "sessions": "open sessions in the zone",
        "machines": "machines of the zone",
        "in_use": "machines of the zone with an open session",
    },
)

PRINTER: Final = Measurement(
    "printer",
    "a 3D printer's telemetry (as its edge publishes it, about every second while in use)",
    tags={SITE: "site id", "machine": "machine id", "state": "OctoPrint state, lower case"},
    fields={
        "nozzle_c": "nozzle temperature (°C)",
        "nozzle_target_c": "nozzle target (°C)",
        "bed_c": "bed temperature (°C)",
        "bed_target_c": "bed target (°C)",
        "progress": "job progress (%)",
        "time_left_s": "estimated time left (s)",
        "state_code": "numeric state, see PRINTER_STATE_CODES",
        "connected": "1 when OctoPrint talks to the printer",
    },
)

JOB: Final = Measurement(
    "job",
    "one ended print job (never its file name)",
    tags={SITE: "site id", "machine": "machine id", "result": "done | failed | cancelled | lost"},
    fields={
        "duration_s": "print time (s)",
        "filament_mm": "filament used (mm); 0 when unknown",
        "success": "1 when the job is done, else 0 (its mean is the success rate)",
        "n": "always 1",
    },
)

LASER: Final = Measurement(
    "laser",
    "a laser's telemetry",
    tags={SITE: "site id", "machine": "machine id", "state": "GRBL state, lower case"},
    fields={
        "run_time_s": "beam-on seconds of the current session",
        "firing": "1 while the beam is on",
        "power_w": "power drawn (W), when a plug measures it",
    },
)

EDGE: Final = Measurement(
    "edge",
    "an edge's health, every minute and at each status change",
    tags={SITE: "site id", "edge": "edge id"},
    fields={
        "online": "1 online, 0 offline",
        "clock_offset_s": "edge clock minus hub clock (s), from its latest telemetry or event",
        "backlog": "journal events the hub has seen and not yet acknowledged",
    },
)

MEASUREMENTS: Final[Mapping[str, Measurement]] = {
    m.name: m for m in (ACCESS, SESSION, OCCUPANCY, PRINTER, JOB, LASER, EDGE)
}

#: Numeric codes of printer states (the ``state_code`` field), for state timelines.
PRINTER_STATE_CODES: Final[Mapping[str, int]] = {
    "offline": 0,
    "operational": 1,
    "printing": 2,
    "pausing": 3,
    "paused": 4,
    "cancelling": 5,
    "finishing": 6,
    "error": 7,
}
#: Code of any state not in the table.
PRINTER_STATE_OTHER: Final = 9

#: Tag values are free text only within this alphabet (ids, codes, age groups); anything
#: else is replaced, so that no stray text (a file name, a person's name) rides a tag.
_TAG_VALUE = re.compile(r"[^A-Za-z0-9_+.:\-]")
MAX_TAG_LEN: Final = 64


class SchemaViolation(ValueError):
    """A point names a tag or field the schema does not declare, or a field is not a number."""


def tag_value(value: object) -> str:
    """A tag value restricted to the schema's alphabet, cut to :data:`MAX_TAG_LEN`."""
    return _TAG_VALUE.sub("_", str(value))[:MAX_TAG_LEN]


def _field(value: float | int | bool) -> str:
    # Every field is written as a float, booleans as 0.0/1.0: a field's type must never
    # change between points (InfluxDB refuses the second type in a shard).
    number = float(value)
    if not math.isfinite(number):
        raise SchemaViolation("field values must be finite numbers")
    return repr(number)


def line(
    measurement: Measurement,
    tags: Mapping[str, object],
    fields: Mapping[str, float | int | bool | None],
    ts_ns: int,
) -> str:
    """One InfluxDB line-protocol line, checked against the schema.

    Empty tag values are left out (line protocol has no empty tags); fields that are
    None are left out; a point without fields is refused.

    Raises:
        SchemaViolation: an undeclared tag or field, a non-numeric or infinite field.
    """
    unknown = (set(tags) - set(measurement.tags)) | (set(fields) - set(measurement.fields))
    if unknown:
        raise SchemaViolation(f"{measurement.name}: undeclared {sorted(unknown)}")
    parts = [measurement.name]
    for key in sorted(tags):
        text = tag_value(tags[key]) if tags[key] is not None else ""
        if text:
            parts.append(f"{key}={text}")  # the alphabet needs no escaping
    values = []
    for key in sorted(fields):
        value = fields[key]
        if value is None:
            continue
        if not isinstance(value, int | float):
            raise SchemaViolation(f"{measurement.name}.{key}: fields are numbers")
        values.append(f"{key}={_field(value)}")
    if not values:
        raise SchemaViolation(f"{measurement.name}: a point needs a field")
    return f"{','.join(parts)} {','.join(values)} {int(ts_ns)}"
