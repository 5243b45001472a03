"""Helpers of the edge agent tests: a seeded hub on a real broker, agent settings, a proxy.

* :func:`seed_site` writes a small site into a migrated SQLite store with the ORM:
  a ``fablab`` zone open around the clock, ``n_machines`` generic machines spread
  over the given edges (offline rule ``allow``), a laser (``staff_only``), members
  with one badge each and one animator.
* :class:`HubRunner` runs the real :class:`hub.service.Hub` in this process
  (optionally on a shared fake clock) against the test's Mosquitto.
* :func:`edge_settings` builds valid :class:`~edge.settings.EdgeSettings` with
  simulated readers and actuators.
* :class:`Proxy` is a TCP proxy between an agent and the broker that a test can cut
  (a network partition of one edge) and heal.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from edge.settings import EdgeSettings
from hub.db.engine import make_engine, make_sessionmaker, transaction
from hub.db.migrate import upgrade
from hub.db.models import (
    Badge,
    Machine,
    MachineKind,
    Member,
    Role,
    Slot,
    UsageSession,
    Zone,
)
from hub.service import Hub
from hub.settings import HubSettings
from protocol.ids import badge_hash
from protocol.messages import OfflineRule
from protocol.signing import demo_edge_key
from tests.conftest import Broker

SECRET = "edge-test-site-secret-0123456789"
STAFF_UID = "0E00000000000001"
UNKNOWN_UID = "0F00000000000001"


def member_uid(i: int) -> str:
    """Badge UID of the ``i``-th seeded member."""
    return f"0A{i:014X}"


def bh(uid: str) -> str:
    return badge_hash(SECRET.encode(), uid)


def machine_id(i: int) -> str:
    return f"m-{i:02d}"


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {what}")
        time.sleep(0.01)


@dataclass(frozen=True)
class Site:
    site: str
    db_url: str
    #: edge id -> its machine ids
    edges: dict[str, list[str]]
    members: int


def seed_site(
    db_url: str, edges: dict[str, int], *, members: int = 10, laser_edge: str | None = None
) -> Site:
    """Seed a site: ``edges`` maps an edge id to its number of generic machines."""
    upgrade(db_url)
    engine = make_engine(db_url)
    layout: dict[str, list[str]] = {}
    try:
        with transaction(make_sessionmaker(engine)) as s:
            s.add(Zone(id="fablab", name="FabLab"))
            s.flush()
            for weekday in range(7):  # 00:00-00:00 runs to the next midnight: always open
                s.add(Slot(zone_id="fablab", weekday=weekday, start=dtime(0), end=dtime(0)))
            n = 0
            for edge, count in edges.items():
                layout[edge] = []
                for _ in range(count):
                    n += 1
                    s.add(
                        Machine(
                            id=machine_id(n),
                            name=f"Machine {n}",
                            kind=MachineKind.GENERIC,
                            zone_id="fablab",
                            edge_id=edge,
                            offline_rule=OfflineRule.ALLOW,
                        )
                    )
                    layout[edge].append(machine_id(n))
            if laser_edge is not None:
                s.add(
                    Machine(
                        id="laser-1",
                        name="Laser",
                        kind=MachineKind.LASER,
                        zone_id="fablab",
                        edge_id=laser_edge,
                        offline_rule=OfflineRule.STAFF_ONLY,
                    )
                )
                layout.setdefault(laser_edge, []).append("laser-1")
            for i in range(1, members + 1):
                m = Member(display_name=f"Membre{i} Test", birth_year=1990, birth_month=1 + i % 12)
                m.badges.append(Badge(hash=bh(member_uid(i))))
                s.add(m)
            staff = Member(
                display_name="Sam Animateur", birth_year=1988, birth_month=5, role=Role.ANIMATOR
            )
            staff.badges.append(Badge(hash=bh(STAFF_UID)))
            s.add(staff)
    finally:
        engine.dispose()
    return Site(site=f"e-{uuid.uuid4().hex[:10]}", db_url=db_url, edges=layout, members=members)


def hub_settings(site: Site, broker: Broker, **overrides: Any) -> HubSettings:
    values: dict[str, Any] = {
        "site": site.site,
        "demo": True,
        "database_url": site.db_url,
        "site_secret": SECRET,
        "mqtt_host": broker.host,
        "mqtt_port": broker.port,
        "mqtt_client_id": f"hub-{site.site}",
        "gap_replay_after_s": 1.0,
        "ack_interval_s": 0.05,
        # Edges on a fake clock run hours ahead of the hub's real time in some tests.
        "decision_ttl_s": 3 * 86400.0,
        "command_ttl_s": 3 * 86400.0,
        # ...so their journal events are dated that far after the hub's clock.
        "event_future_s": 7 * 86400.0,
    }
    values.update(overrides)
    return HubSettings(**values)


class HubRunner:
    """The real hub service in this process; restartable (a new Hub on the same store)."""

    def __init__(
        self, site: Site, broker: Broker, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.site = site
        self.settings = hub_settings(site, broker)
        self.engine = make_engine(site.db_url)
        self.factory: sessionmaker[Session] = make_sessionmaker(self.engine)
        self.clock = clock
        self.hub: Hub | None = None

    def start(self) -> Hub:
        kwargs: dict[str, Any] = {"snapshot_workers": 0}
        if self.clock is not None:
            kwargs["clock"] = self.clock
        self.hub = Hub(self.settings, self.factory, **kwargs)
        self.hub.start()
        assert self.hub.wait_snapshots(30), "the hub compiled no snapshots"
        return self.hub

    def stop(self) -> None:
        if self.hub is not None:
            self.hub.stop()
            self.hub = None

    def close(self) -> None:
        self.stop()
        self.engine.dispose()

    # ------------------------------------------------------------------ ledger reads

    def sessions(self) -> dict[str, UsageSession]:
        with self.factory() as s:
            rows = s.scalars(select(UsageSession)).all()
            for row in rows:
                s.expunge(row)
            return {row.id: row for row in rows}

    def used_by_machine(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for row in self.sessions().values():
            totals[row.machine_id] = totals.get(row.machine_id, 0.0) + float(row.used_s or 0.0)
        return totals

    def cursor(self, edge: str) -> tuple[int, int]:
        assert self.hub is not None
        return self.hub.ledger.cursor(edge)


@pytest.fixture
def hub_runner_factory(
    mosquitto: Broker, tmp_path: Path
) -> Iterator[Callable[..., tuple[Site, HubRunner]]]:
    made: list[HubRunner] = []

    def make(
        edges: dict[str, int],
        *,
        members: int = 10,
        laser_edge: str | None = None,
        clock: Callable[[], datetime] | None = None,
        start: bool = True,
    ) -> tuple[Site, HubRunner]:
        site = seed_site(
            f"sqlite:///{tmp_path / 'hub.db'}", edges, members=members, laser_edge=laser_edge
        )
        runner = HubRunner(site, mosquitto, clock)
        made.append(runner)
        if start:
            runner.start()
        return site, runner

    yield make
    for runner in made:
        runner.close()


def edge_settings(
    tmp_path: Path,
    site: str,
    edge: str,
    broker_port: int,
    machines: list[dict[str, Any]] | list[str],
    **overrides: Any,
) -> EdgeSettings:
    """Valid settings of an edge with simulated devices (``machines``: ids or full dicts)."""
    specs = []
    for m in machines:
        if isinstance(m, str):
            m = {"id": m}
        spec = {
            "kind": "generic",
            # No debounce: the tests present badges on a fake clock.
            "reader": {"kind": "reader.sim", "options": {"debounce_s": 0}},
            "actuator": {"kind": "actuator.sim", "options": {"load_w": 100.0}},
        }
        spec.update(m)
        specs.append(spec)
    values: dict[str, Any] = {
        "site": site,
        "edge_id": edge,
        "site_secret": SECRET,
        # The test hubs run in demo mode: an edge without a key file gets this one.
        "edge_key": demo_edge_key(SECRET.encode(), edge).hex(),
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "reconnect_max_s": 1},
        "journal": {"path": str(tmp_path / edge / "journal.db"), "resend_s": 2.0},
        "feedback": {"console": False},
        "machines": specs,
        "drain_timeout_s": 3.0,
    }
    values.update(overrides)
    return EdgeSettings(**values)


def today_utc() -> date:
    return datetime.now(UTC).date()


# --------------------------------------------------------------------------- a TCP proxy


class Proxy:
    """Forwards 127.0.0.1:``port`` to the broker; :meth:`cut` drops every connection and
    refuses new ones (a partition), :meth:`heal` accepts again."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port: int = self._server.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._closed = False
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def heal(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._server.close()


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[int], Proxy]]:
    made: list[Proxy] = []

    def make(port: int) -> Proxy:
        p = Proxy(port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


# --------------------------------------------------------------------------- agents


def present(agent: Any, machine: str, uid: str) -> None:
    """Tap ``uid`` on ``machine``'s simulated reader."""
    from devices.readers import DebouncedReader, SimulatedReader

    reader = agent.unit(machine).reader
    inner = reader.reader if isinstance(reader, DebouncedReader) else reader
    assert isinstance(inner, SimulatedReader)
    inner.present(uid)


def state_of(agent: Any, machine: str) -> str:
    return str(agent.view(machine).session.state.value)


def advance(clock: Any, agents: list[Any], seconds: float, step: float = 60.0) -> None:
    """Let ``seconds`` of fake time pass in steps, waking the agents at each step and
    waiting until each has looked at the clock (its machines' next wakeups are ahead)."""
    left = seconds
    while left > 0:
        dt = min(step, left)
        clock.advance(dt)
        left -= dt
        for agent in agents:
            agent.wake()
        for agent in agents:
            wait_until(lambda a=agent: caught_up(a, clock), 10, "agent caught up with the clock")


def caught_up(agent: Any, clock: Any) -> bool:
    now = clock.monotonic()
    for machine in agent.views():
        due = agent.unit(machine).session.next_wakeup()
        if due is not None and due <= now:
            return False
    return True


def journal_types(agent: Any) -> list[str]:
    return [e.type for e in agent.journal.replay_from(1, limit=100_000)]


# --------------------------------------------------------------------------- processes


def write_hub_config(path: Path, site: Site, broker: Broker) -> Path:
    """A ``fabrique hub run`` configuration for ``site`` (demo mode, the test's broker)."""
    from tests.conftest import free_port

    values = hub_settings(site, broker, http_port=free_port())
    lines = []
    for key in (
        "site",
        "database_url",
        "mqtt_host",
        "mqtt_client_id",
    ):
        lines.append(f'{key} = "{getattr(values, key)}"')
    lines += [
        "demo = true",
        f'site_secret = "{SECRET}"',
        f"mqtt_port = {values.mqtt_port}",
        f"http_port = {values.http_port}",
        f"decision_ttl_s = {values.decision_ttl_s}",
        f"command_ttl_s = {values.command_ttl_s}",
        f"gap_replay_after_s = {values.gap_replay_after_s}",
        f"ack_interval_s = {values.ack_interval_s}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def spawn_module(
    module: str, args: list[str], log: Path, extra_env: dict[str, str] | None = None, **kwargs: Any
) -> Any:
    """``python -m MODULE ARGS`` from the repository root, output in ``log``, no FABRIQUE_*
    (but ``extra_env``)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("FABRIQUE_")}
    env.update(extra_env or {})
    root = Path(__file__).resolve().parents[2]
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            **kwargs,
        )


def sessions_in(db_url: str) -> dict[str, UsageSession]:
    """Every usage session in the store at ``db_url`` (read by the test)."""
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as s:
            rows = s.scalars(select(UsageSession)).all()
            for row in rows:
                s.expunge(row)
            return {row.id: row for row in rows}
    finally:
        engine.dispose()


def next_afternoon() -> datetime:
    """The next 15:00 in Paris (UTC): a time at which grants last until midnight, 9 h away.

    Tests whose hub runs on real time would otherwise see grants end at the next local
    midnight, which may be seconds away when the suite runs late in the evening.
    """
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    now = datetime.now(paris)
    at = now.replace(hour=15, minute=0, second=0, microsecond=0)
    if at <= now:
        at += timedelta(days=1)
    return at.astimezone(UTC)


class ShiftedClock:
    """Real time passing from ``start``: the hub's clock in the process tests."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self._origin = time.monotonic()

    def __call__(self) -> datetime:
        from datetime import timedelta

        return self.start + timedelta(seconds=time.monotonic() - self._origin)
