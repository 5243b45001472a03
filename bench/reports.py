"""Funder reports over a year of one site's ledger, on SQLite and PostgreSQL.

Generates a year (2025) of a busy site: ``--sessions`` usage sessions (default 200,000)
by ``--members`` members over machines of every kind, one print job per printer
session, laser beam time; sessions older than the retention period (92 days before
2026-01-01) are stored pseudonymised, as hub.retention leaves them (month pseudonyms,
frozen gender, first-month flags). Then times :func:`hub.reports.build_report` (and the
CSV) for the reports funders ask for, as an admin and as a coordinator, and prints the
median of ``--runs`` runs per report. Goal (issue 11): < 500 ms per report.

    .venv/bin/python bench/reports.py                       # SQLite and PostgreSQL
    .venv/bin/python bench/reports.py --backend sqlite --sessions 20000   # smoke
    FABRIQUE_TEST_PG_URL=postgresql://postgres@127.0.0.1:5432/postgres (default)

``--purge`` also times one retention pass over the identified part.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert
from sqlalchemy.orm import Session

from hub.db.engine import make_engine, make_sessionmaker
from hub.db.migrate import upgrade
from hub.db.models import (
    Gender,
    Machine,
    MachineJob,
    MachineKind,
    Member,
    Programme,
    Role,
    UsageSession,
    Zone,
)
from hub.reports import Dimension, Period, ReportFilters, build_report, report_csv
from hub.retention import month_of, run_purge

TZ = ZoneInfo("Europe/Paris")
YEAR_START = datetime(2025, 1, 1, tzinfo=TZ)
YEAR_END = datetime(2026, 1, 1, tzinfo=TZ)
CUTOFF = YEAR_END - timedelta(days=92)
PG_ADMIN = os.environ.get("FABRIQUE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REPORTS: list[tuple[str, tuple[Dimension, ...], Role]] = [
    ("month", ("month",), Role.ADMIN),
    ("month x programme", ("month", "programme"), Role.COORDINATOR),
    ("month x age group x kind", ("month", "age_group", "machine_kind"), Role.COORDINATOR),
    ("programme x gender", ("programme", "gender"), Role.COORDINATOR),
    ("machine", ("machine",), Role.ADMIN),
    ("member", ("member",), Role.ADMIN),
]


def generate(factory: object, sessions: int, members: int, seed: int = 11) -> None:
    rnd = random.Random(seed)
    kinds = [MachineKind.LASER] * 2 + [MachineKind.PRINTER] * 5 + [MachineKind.GAMING_PC] * 8
    programmes = ["fablab-9-15", "fablab-16-25", "esport", "insertion"]
    genders = list(Gender)
    with factory() as s:  # type: ignore[operator]
        s.add_all([Zone(id="fablab", name="FabLab"), Zone(id="gaming", name="Salle de jeux")])
        s.add_all([Programme(id=p, name=p.title()) for p in programmes])
        s.flush()
        machines = []
        for i, kind in enumerate(kinds):
            zone = "gaming" if kind == MachineKind.GAMING_PC else "fablab"
            machines.append(
                Machine(
                    id=f"m-{i:02d}",
                    name=f"Machine {i}",
                    kind=kind,
                    zone_id=zone,
                    edge_id=f"e-{i // 4}",
                )
            )
        s.add_all(machines)
        people = [
            Member(
                display_name=f"Membre {i}",
                birth_year=rnd.randint(1970, 2016),
                birth_month=rnd.randint(1, 12),
                gender=rnd.choice(genders),
            )
            for i in range(members)
        ]
        s.add_all(people)
        s.commit()
        member_rows = [(m.id, m.gender.value) for m in people]
        machine_rows = [(m.id, m.kind.value, m.zone_id) for m in machines]
    profile = {
        mid: (
            rnd.choice(["9-15", "16-25", "26+"]),
            rnd.sample(programmes, rnd.choice([1, 1, 2])),
        )
        for mid, _ in member_rows
    }
    first_seen: dict[int, str] = {}
    span = (YEAR_END - YEAR_START).total_seconds()
    starts = sorted(YEAR_START + timedelta(seconds=rnd.random() * span) for _ in range(sessions))
    batch_s: list[dict[str, object]] = []
    batch_j: list[dict[str, object]] = []
    with factory() as s:  # type: ignore[operator]
        for n, start in enumerate(starts):
            member_id, gender = rnd.choice(member_rows)
            machine, kind, zone = rnd.choice(machine_rows)
            age, progs = profile[member_id]
            used = rnd.uniform(600, 7200)
            month = month_of(start, TZ)
            first = first_seen.setdefault(member_id, month)
            old = start < CUTOFF
            token = hashlib.sha256(f"{month}:{member_id}".encode()).hexdigest()[:16]
            sid = f"s{n}"
            batch_s.append(
                {
                    "id": sid,
                    "edge_id": "e-0",
                    "machine_id": machine,
                    "zone_id": zone,
                    "member_id": None if old else member_id,
                    "badge_hash": None if old else f"{member_id:064x}",
                    "age_group": age,
                    "programmes": progs,
                    "machine_kind": kind,
                    "gender": gender if old else "",
                    "participant": token if old else None,
                    "first_month": old and first == month,
                    "started_at": start.astimezone(UTC),
                    "ended_at": (start + timedelta(seconds=used)).astimezone(UTC),
                    "used_s": used,
                    "last_minute": int(used // 60),
                    "run_s": used * 0.6 if kind == "laser" else None,
                    "offline": False,
                    "staff": False,
                }
            )
            if kind == "printer":
                batch_j.append(
                    {
                        "edge_id": "e-0",
                        "seq": n,
                        "machine_id": machine,
                        "zone_id": zone,
                        "session_id": sid,
                        "member_id": None if old else member_id,
                        "age_group": age,
                        "job": "" if old else "piece.gcode",
                        "result": "done",
                        "duration_s": used * 0.8,
                        "filament_mm": rnd.uniform(500, 20000),
                        "ended_at": (start + timedelta(seconds=used)).astimezone(UTC),
                    }
                )
            if len(batch_s) >= 5000:
                _flush(s, batch_s, batch_j)
        _flush(s, batch_s, batch_j)


def _flush(s: Session, sessions: list[dict[str, object]], jobs: list[dict[str, object]]) -> None:
    if sessions:
        s.execute(insert(UsageSession), sessions)
    if jobs:
        s.execute(insert(MachineJob), jobs)
    s.commit()
    sessions.clear()
    jobs.clear()


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            yield f"sqlite:///{d}/bench.db"
        return
    import psycopg

    name = f"fabrique_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base = PG_ADMIN.rsplit("/", 1)[0]
        yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench(backend: str, args: argparse.Namespace) -> bool:
    with database(backend) as url:
        upgrade(url)
        engine = make_engine(url)
        factory = make_sessionmaker(engine)
        t0 = time.perf_counter()
        generate(factory, args.sessions, args.members)
        if backend == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
        print(
            f"\n[{backend}] generated {args.sessions:,} sessions, {args.members:,} members "
            f"in {time.perf_counter() - t0:.1f} s (pseudonymised before {CUTOFF:%Y-%m-%d})"
        )
        ok = True
        period = Period(YEAR_START, YEAR_END)
        for label, dims, role in REPORTS:
            times: list[float] = []
            rows = 0
            for _ in range(args.runs):
                with factory() as s:
                    t = time.perf_counter()
                    report = build_report(
                        s, period, ReportFilters(), dims, role, tz=TZ, site="bench"
                    )
                    report_csv(report)
                    times.append(time.perf_counter() - t)
                rows = len(report.rows)
            median = statistics.median(times) * 1000
            ok &= median < 500
            print(
                f"  {label:<28} {role.value:<11} {rows:>5} rows  median {median:7.1f} ms  "
                f"max {max(times) * 1000:7.1f} ms  {'ok' if median < 500 else 'SLOW'}"
            )
        if args.purge:
            t = time.perf_counter()
            result = run_purge(factory, retention_days=30, tz=TZ, now=YEAR_END)
            print(
                f"  retention pass (identified Oct-Nov rows): {sum(result.rows.values()):,} rows "
                f"in {time.perf_counter() - t:.1f} s"
            )
        engine.dispose()
        return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--purge", action="store_true")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    ok = all([bench(b, args) for b in backends])
    print("\ngoal: every report < 500 ms:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
