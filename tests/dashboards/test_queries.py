"""Every panel query of every dashboard, run on a real InfluxDB 1.x over a known week.

The week is written with the hub's own point builders (the writer's line protocol)
through InfluxDB's ``/write``; the expected figures are computed here from the same
input, independently of InfluxQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dashboards.check import check, load, queries
from hub.telemetry import points
from tests.tsdb import Influx1, start_influx1

PARIS = ZoneInfo("Europe/Paris")
MONDAY = datetime(2026, 3, 9, tzinfo=PARIS)  # the known week: Monday 9 to Sunday 15 March
START, END = MONDAY, MONDAY + timedelta(days=7)
DB = "fabrique"

#: (machine kind, machine, age group, programmes, minutes, end reason) of each day's sessions.
SESSIONS = [
    ("laser", "laser-1", "16-25", ["fab16"], 45, "badge_out"),
    ("printer", "printer-1", "9-15", [], 90, "job_done"),
    ("gaming_pc", "pc-1", "9-15", [], 50, "break"),
    ("gaming_pc", "pc-2", "16-25", ["esport"], 120, "time_up"),
]
#: (granted, reason, age group, kind, machine) of each day's decisions.
DECISIONS = [
    (True, "granted", "9-15", "gaming_pc", "pc-1"),
    (False, "quota_exhausted", "9-15", "gaming_pc", "pc-1"),
    (False, "outside_slot", "16-25", "laser", "laser-1"),
    (False, "break_required", "9-15", "gaming_pc", "pc-1"),
]
JOBS = [("done", 1200.0), ("done", 800.0), ("failed", 300.0), ("done", 0.0)]  # per day


def known_week() -> list[str]:
    lines: list[str] = []
    for site in ("s1", "s2"):  # s2 must never show in a panel filtered on s1
        for day in range(7):
            base = MONDAY + timedelta(days=day, hours=15)
            for i, (kind, machine, age, progs, minutes, reason) in enumerate(SESSIONS):
                lines.append(
                    points.session_line(
                        site,
                        ended_at=base + timedelta(minutes=i),
                        zone="z",
                        machine=machine,
                        machine_kind=kind,
                        age_group=age,
                        programmes=progs,
                        offline=(machine == "laser-1" and day == 2),
                        staff=False,
                        end_reason=reason,
                        used_s=minutes * 60.0,
                        run_s=600.0 if kind == "laser" else None,
                    )
                )
            for i, (granted, reason, age, kind, machine) in enumerate(DECISIONS):
                lines.append(
                    points.access_line(
                        site,
                        base + timedelta(seconds=i),
                        granted=granted,
                        reason=reason,
                        age_group=age,
                        zone="z",
                        machine=machine,
                        machine_kind=kind,
                    )
                )
            for i, (result, filament) in enumerate(JOBS):
                lines.append(
                    points.job_line(
                        site,
                        ended_at=base + timedelta(minutes=30 + i),
                        machine="printer-1",
                        result=result,
                        duration_s=600.0,
                        filament_mm=filament,
                    )
                )
        # Occupancy every 10 minutes: 2 machines in use on Wednesdays 14:00-17:59, else 0.
        t = START
        while t < END:
            busy = 2 if t.isoweekday() == 3 and 14 <= t.hour < 18 else 0
            lines.append(
                points.occupancy_line(
                    site, t, PARIS, zone="fablab", sessions=busy, machines=3, in_use=busy
                )
            )
            t += timedelta(minutes=10)
        for hour in range(24 * 7):
            t = START + timedelta(hours=hour)
            lines.append(
                points.printer_line(
                    site,
                    "printer-1",
                    t,
                    {
                        "state": "Printing" if hour % 2 else "Operational",
                        "nozzle_c": 200.0,
                        "bed_c": 60.0,
                        "progress": float(hour % 100),
                        "connected": True,
                    },
                )
            )
            lines.append(
                points.edge_line(
                    site, "pi-fab", t, online=hour != 5, clock_offset_s=0.5, backlog=hour % 3
                )
            )
    return lines


def run(db: Influx1, text: str) -> list[dict[str, Any]]:
    lo = int(START.timestamp() * 1000)
    hi = int(END.timestamp() * 1000) - 1
    q = (
        text.replace("$timeFilter", f"time >= {lo}ms and time <= {hi}ms")
        .replace("$__interval", "1h")
        .replace("/^$site$/", "/^(s1)$/")
    )
    result = db.query(DB, q)["results"][0]  # type: ignore[index]
    assert "error" not in result, f"{q}: {result['error']}"
    series: list[dict[str, Any]] = result.get("series", [])
    return series


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influx1]:
    db = start_influx1(Path(tmp_path_factory.mktemp("influx1")))
    try:
        db.query(DB, f'CREATE DATABASE "{DB}"')
        db.write(DB, known_week())
        yield db
    finally:
        db.stop()


def by_tag(series: list[dict[str, Any]], tag: str, at: datetime) -> dict[str, float]:
    """Value of each series (keyed by ``tag``) at bucket ``at``."""
    out = {}
    for s in series:
        for row in s["values"]:
            if row[0] == int(at.timestamp()):
                out[s.get("tags", {}).get(tag, "")] = row[1]
    return out


def test_the_dashboards_pass_their_own_check() -> None:
    assert check() == []


def test_every_panel_query_parses_and_returns_data(influx: Influx1) -> None:
    dashboards = load()
    assert {d["title"] for d in dashboards.values()} == {
        "Fréquentation",
        "Imprimantes",
        "Salle de jeux",
        "Accès",
        "Parc",
    }
    n = 0
    for q in queries(dashboards):
        series = run(influx, q.text)
        assert series, f"{q.dashboard}/{q.title}: no data for the known week"
        n += 1
    assert n >= 20


def query_of(dashboard: str, panel: int, ref: str = "A") -> str:
    for q in queries(load()):
        if (q.dashboard, q.panel, q.ref) == (dashboard, panel, ref):
            return q.text
    raise AssertionError(f"no query {dashboard}/{panel}/{ref}")


def test_hours_per_week_match_the_sessions(influx: Influx1) -> None:
    hours: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for kind, _m, age, progs, minutes, _r in SESSIONS:
        for tag, value in (
            ("machine_kind", kind),
            ("age_group", age),
            ("programme", points.programme_tag(progs)),
        ):
            hours[tag][value] += 7 * minutes / 60
    for panel, tag in ((1, "machine_kind"), (2, "age_group"), (3, "programme")):
        got = by_tag(run(influx, query_of("frequentation", panel)), tag, MONDAY)
        assert got == pytest.approx(dict(hours[tag])), tag
    sessions = by_tag(run(influx, query_of("frequentation", 4)), "", MONDAY)
    assert sessions == {"": 7 * len(SESSIONS)}


def test_occupancy_by_weekday_and_hour(influx: Influx1) -> None:
    series = run(influx, query_of("frequentation", 5))
    cells = {(s["tags"]["weekday"], s["tags"]["hour"]): s["values"][0][1] for s in series}
    assert len(cells) == 7 * 24
    assert cells[("3", "15")] == 2.0
    assert cells[("3", "18")] == 0.0
    assert cells[("1", "15")] == 0.0


def test_printers_success_rate_and_filament(influx: Influx1) -> None:
    rate = run(influx, query_of("imprimantes", 4))[0]["values"][0][1]
    done = sum(1 for r, _f in JOBS if r == "done")
    assert rate == pytest.approx(100 * done / len(JOBS))
    filament = by_tag(run(influx, query_of("imprimantes", 6)), "", MONDAY + timedelta(days=3))
    assert filament[""] == pytest.approx(sum(f for _r, f in JOBS) / 1000)
    results = {
        s["tags"]["result"]: s["values"][0][1] for s in run(influx, query_of("imprimantes", 5))
    }
    assert results == {"done": 7 * done, "failed": 7 * (len(JOBS) - done)}


def test_gaming_room_play_time_caps_and_breaks(influx: Influx1) -> None:
    day = MONDAY + timedelta(days=1)
    play = by_tag(run(influx, query_of("salle-de-jeux", 1)), "age_group", day)
    assert play == pytest.approx({"9-15": 50 / 60, "16-25": 120 / 60})
    caps = by_tag(run(influx, query_of("salle-de-jeux", 2)), "age_group", day)
    assert caps == {"9-15": 1}
    breaks = by_tag(run(influx, query_of("salle-de-jeux", 3, "A")), "age_group", day)
    assert breaks == {"9-15": 1}
    refused = by_tag(run(influx, query_of("salle-de-jeux", 3, "B")), "", day)
    assert refused == {"": 1}


def test_access_refusals_by_reason(influx: Influx1) -> None:
    series = run(influx, query_of("acces", 2))
    reasons = {s["tags"]["reason"]: s["values"][0][1] for s in series}
    assert reasons == {r: 7 for g, r, *_ in DECISIONS if not g}


def test_fleet_edges_backlog_and_offline_sessions(influx: Influx1) -> None:
    online = run(influx, query_of("parc", 1))
    assert {s["tags"]["edge"]: s["values"][0][1] for s in online} == {"pi-fab": 1.0}
    backlog = run(influx, query_of("parc", 3))[0]["values"]
    assert max(v for _t, v in backlog if v is not None) == 2.0
    offline = by_tag(run(influx, query_of("parc", 5)), "machine", MONDAY + timedelta(days=2))
    assert offline == {"laser-1": 1}
