"""Reliability 2: the hub is killed (``kill -9``) mid-session and restarted.

The real hub service runs as its own process (:mod:`tests.edge._hub_proc`: the
:class:`hub.service.Hub` that ``fabrique hub run`` serves, on a clock that starts at
the next 15:00 so that grants never end at a real midnight); one edge agent runs
here on a fake clock starting at the same instant. Three sessions start online and
tick; the hub is killed without a goodbye (its last will tells the edge); one member
badges out and another starts a session decided offline while it is down; the hub
is started again and catches up from the edge's journal. The ledger must equal the
ground truth to the millisecond, with every event applied once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from edge.agent import Agent
from edge.clock import FakeClock
from hub.db.engine import make_engine, make_sessionmaker
from hub.db.models import EdgeEvent
from protocol.messages import EndReason
from tests.conftest import Broker
from tests.edge.conftest import (
    HubRunner,
    Site,
    advance,
    edge_settings,
    member_uid,
    next_afternoon,
    present,
    sessions_in,
    spawn_module,
    state_of,
    wait_until,
    write_hub_config,
)

pytestmark = pytest.mark.broker


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_hub_killed_mid_session_and_restarted(
    mosquitto: Broker,
    hub_runner_factory: Callable[..., tuple[Site, HubRunner]],
    procs: list[Any],
    tmp_path: Path,
) -> None:
    site, _unused = hub_runner_factory({"pi-a": 3}, start=False)
    config = write_hub_config(tmp_path / "hub.toml", site, mosquitto)

    start = next_afternoon()

    def start_hub() -> Any:
        proc = spawn_module(
            "tests.edge._hub_proc", [str(config), start.isoformat()], tmp_path / "hub.log"
        )
        procs.append(proc)
        return proc

    clock = FakeClock(wall=start)
    settings = edge_settings(tmp_path, site.site, "pi-a", mosquitto.port, site.edges["pi-a"])
    hub = start_hub()
    agent = Agent(settings, clock=clock)
    agent.start()
    try:
        wait_until(lambda: agent.hub_online and agent.policy_version, 40, "hub up, snapshot")
        t0 = clock.monotonic()
        for i, machine in enumerate(["m-01", "m-02", "m-03"], start=1):
            present(agent, machine, member_uid(i))
            wait_until(lambda m=machine: state_of(agent, m) == "active", 10, "online grant")
        ids = {m: agent.view(m).session.session_id for m in ("m-01", "m-02", "m-03")}
        advance(agent.clock, [agent], 130)
        wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 10, "acked")

        hub.send_signal(signal.SIGKILL)
        hub.wait(10)
        wait_until(lambda: not agent.hub_online, 10, "the hub's last will")
        advance(clock, [agent], 200.4)
        present(agent, "m-01", member_uid(1))  # badge-out while the hub is dead
        wait_until(lambda: state_of(agent, "m-01") == "idle", 5, "badge-out")
        truth = {ids["m-01"]: clock.monotonic() - t0}
        advance(clock, [agent], 3)
        present(agent, "m-01", member_uid(4))  # a new session, decided offline
        wait_until(lambda: state_of(agent, "m-01") == "active", 5, "offline grant")
        offline_id = agent.view("m-01").session.session_id
        assert agent.view("m-01").session.offline
        t_offline = clock.monotonic()
        advance(clock, [agent], 61)
        assert agent.journal.last_seq() > agent.acked_through

        start_hub()
        wait_until(lambda: agent.hub_online, 40, "hub back")
        advance(clock, [agent], 70)
        for i, machine in ((2, "m-02"), (3, "m-03"), (4, "m-01")):
            clock.advance(0.25)
            present(agent, machine, member_uid(i))
            try:
                wait_until(lambda m=machine: state_of(agent, m) == "idle", 5, "badge-out")
            except AssertionError:
                raise AssertionError(
                    f"{machine}: {agent.view(machine)} {agent.journal.replay_from(1)}"
                ) from None
            start = t_offline if machine == "m-01" else t0
            truth[offline_id if machine == "m-01" else ids[machine]] = clock.monotonic() - start
        wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 20, "drained")

        rows = sessions_in(site.db_url)
        assert set(rows) == set(truth)
        for session_id, expected in truth.items():
            assert rows[session_id].used_s == pytest.approx(expected, abs=1e-3)
            assert rows[session_id].end_reason == EndReason.BADGE_OUT
        assert rows[offline_id].offline
        engine = make_engine(site.db_url)
        try:
            with make_sessionmaker(engine)() as s:
                stored = s.scalar(select(func.count()).select_from(EdgeEvent))
        finally:
            engine.dispose()
        assert stored == agent.journal.last_seq()  # each event once
    finally:
        agent.stop()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
