"""Shared set-up of the edge benchmarks: broker, seeded store, hub process, edge settings.

Reuses the decision benchmark's helpers (:mod:`bench._setup`: a private Mosquitto,
child processes tied to our lifetime, the hub's TOML) and adds what the edge needs:
a site whose zone is open around the clock, several machines on one edge, members
with badges, and valid :class:`edge.settings.EdgeSettings` with simulated devices.
Everything listens on 127.0.0.1 and lives in a temporary directory.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import time as dtime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._setup import Proc, hub_config, spawn, start_hub, start_mosquitto
from protocol.ids import badge_hash
from protocol.signing import demo_edge_key

SITE = "bench"
EDGE = "e-000"
SECRET = "bench-edge-site-secret-0123456789"  # noqa: S105 - a test secret


def member_uid(i: int) -> str:
    return f"0B{i:014X}"


def machine_id(i: int) -> str:
    return f"m-{i:03d}"


def seed(url: str, *, machines: int, members: int) -> None:
    """A zone open around the clock, ``machines`` generic machines on :data:`EDGE`."""
    from hub.db.engine import make_engine, make_sessionmaker, transaction
    from hub.db.migrate import upgrade
    from hub.db.models import Badge, Machine, MachineKind, Member, Slot, Zone
    from protocol.messages import OfflineRule

    upgrade(url)
    engine = make_engine(url)
    try:
        with transaction(make_sessionmaker(engine)) as s:
            s.add(Zone(id="bench-zone", name="Banc d'essai"))
            s.flush()
            for weekday in range(7):
                s.add(Slot(zone_id="bench-zone", weekday=weekday, start=dtime(0), end=dtime(0)))
            for i in range(machines):
                s.add(
                    Machine(
                        id=machine_id(i),
                        name=f"Machine {i}",
                        kind=MachineKind.GENERIC,
                        zone_id="bench-zone",
                        edge_id=EDGE,
                        offline_rule=OfflineRule.ALLOW,
                    )
                )
            for i in range(members):
                m = Member(display_name=f"Membre{i} Banc", birth_year=1990, birth_month=3)
                m.badges.append(Badge(hash=badge_hash(SECRET.encode(), member_uid(i))))
                s.add(m)
    finally:
        engine.dispose()


@dataclass
class Rig:
    workdir: Path
    broker: Proc
    port: int
    db_url: str
    hub: Proc | None = None

    def stop(self) -> None:
        if self.hub is not None:
            self.hub.stop()
        self.broker.stop()


@contextlib.contextmanager
def rig(workdir: Path, *, machines: int, members: int, hub: bool = True) -> Iterator[Rig]:
    """Broker, seeded store and (optionally) the hub as its own process."""
    broker, port = start_mosquitto(workdir)
    db_url = f"sqlite:///{workdir / 'hub.db'}"
    r = Rig(workdir, broker, port, db_url)
    try:
        seed(db_url, machines=machines, members=members)
        if hub:
            r.hub = start_hub_process(r)
        yield r
    finally:
        r.stop()


def start_hub_process(r: Rig) -> Proc:
    config = hub_config(
        r.workdir,
        db_url=r.db_url,
        mqtt_port=r.port,
        extra={"site_secret": SECRET, "ack_interval_s": "0.05"},
    )
    return start_hub(r.workdir, config, "auto")


def edge_values(r: Rig, machines: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Edge settings as plain data (simulated readers and actuators unless given)."""
    specs = []
    for m in machines:
        spec: dict[str, Any] = {
            "reader": {"kind": "reader.sim", "options": {"debounce_s": 0}},
            "actuator": {"kind": "actuator.sim", "options": {}},
        }
        spec.update(m)
        specs.append(spec)
    values: dict[str, Any] = {
        "site": SITE,
        "edge_id": EDGE,
        "site_secret": SECRET,
        "edge_key": demo_edge_key(SECRET.encode(), EDGE).hex(),
        "mqtt": {"host": "127.0.0.1", "port": r.port},
        "journal": {"path": str(r.workdir / "edge" / "journal.db")},
        "feedback": {"console": False},
        "machines": specs,
    }
    values.update(extra)
    return values


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.005)


def quantiles(samples: list[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds."""
    ordered = sorted(samples)
    ms = [s * 1000 for s in ordered]

    def q(p: float) -> float:
        return ms[min(len(ms) - 1, round(p * (len(ms) - 1)))]

    return {
        "n": len(ms),
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "max": ms[-1],
        "mean": statistics.fmean(ms),
    }


__all__ = [
    "EDGE",
    "SECRET",
    "SITE",
    "Proc",
    "Rig",
    "edge_values",
    "machine_id",
    "member_uid",
    "quantiles",
    "rig",
    "seed",
    "spawn",
    "start_hub_process",
    "wait",
]
