"""Reliability 1: the broker is killed (SIGKILL) for "60 s" while 50 sessions run.

Five edge agents of ten machines each (50 machines, 50 members) and the real hub share
one fake clock. All 50 sessions start online; minutes tick; then Mosquitto is killed
and stays down while 60 s of session time pass (:data:`OUTAGE_SIM_S` on the fake
clock, during :data:`OUTAGE_REAL_S` of real time: a few seconds by default, set
``FABRIQUE_TEST_OUTAGE_S=60`` for a real minute). Ten members badge out during the
outage. The broker is restarted (empty: no persistence, no retained messages), the
agents and the hub reconnect by themselves, the rest badge out at distinct instants.

The hub's ledger must then hold exactly 50 sessions whose used time equals, to the
millisecond, the ground truth kept by the test (badge-out minus badge-in on the
shared clock), every event once, every journal acknowledged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.agent import Agent
from edge.clock import FakeClock
from protocol.messages import EndReason
from tests.conftest import Broker
from tests.edge.conftest import (
    HubRunner,
    Site,
    advance,
    edge_settings,
    member_uid,
    present,
    state_of,
    wait_until,
)

pytestmark = pytest.mark.broker

EDGES = 5
PER_EDGE = 10
OUTAGE_SIM_S = 60.0
OUTAGE_REAL_S = float(os.environ.get("FABRIQUE_TEST_OUTAGE_S", "3"))


def test_broker_killed_for_a_minute_during_50_sessions(
    mosquitto_factory: Callable[..., Broker],
    hub_runner_factory: Callable[..., tuple[Site, HubRunner]],
    tmp_path: Path,
) -> None:
    broker = mosquitto_factory()  # our own broker: this test kills it
    clock = FakeClock(wall=datetime(2026, 3, 11, 14, 0, tzinfo=UTC))
    edges = {f"pi-{e}": PER_EDGE for e in range(EDGES)}
    site, hub = hub_runner_factory(edges, members=EDGES * PER_EDGE, clock=clock.now, start=False)
    hub.settings = hub.settings.model_copy(update={"mqtt_port": broker.port})
    hub.start()
    agents: list[Agent] = []
    try:
        for edge, machines in site.edges.items():
            settings = edge_settings(tmp_path, site.site, edge, broker.port, machines)
            agent = Agent(settings, clock=clock)
            agent.start()
            agents.append(agent)
        for agent in agents:
            wait_until(lambda a=agent: a.hub_online and a.policy_version, 20, "edges online")
        where = {m: a for a in agents for m in a.views()}
        machines = sorted(where)
        assert len(machines) == 50

        # 50 sessions start online at the same instant.
        started = clock.monotonic()
        for i, machine in enumerate(machines, start=1):
            present(where[machine], machine, member_uid(i))
        try:
            wait_until(
                lambda: all(state_of(where[m], m) == "active" for m in machines), 15, "all active"
            )
        except AssertionError:
            late = {m: where[m].stream.recent(machine=m) for m in machines}
            late = {m: v for m, v in late.items() if state_of(where[m], m) != "active"}
            raise AssertionError(f"not active: {late}") from None
        assert not any(where[m].view(m).session.offline for m in machines)
        truth: dict[str, float] = {}

        def badge_out(i: int, machine: str) -> None:
            present(where[machine], machine, member_uid(i))
            wait_until(lambda: state_of(where[machine], machine) == "idle", 10, "badge-out")
            truth[where[machine].view(machine).machine] = clock.monotonic() - started

        advance(clock, agents, 150)  # two minute ticks each, delivered

        # The broker dies; 60 s of sessions pass during the outage; 10 members leave.
        broker.kill()
        for agent in agents:
            wait_until(lambda a=agent: not a.hub_online, 10, "edges see the outage")
        outage_end = time.monotonic() + OUTAGE_REAL_S
        step = OUTAGE_SIM_S / 6
        for k in range(6):
            advance(clock, agents, step)
            clock.advance(0.37)  # distinct, non-round end instants
            badge_out(k + 1, machines[k])
            time.sleep(max(0.0, (outage_end - time.monotonic()) / (6 - k)))
        for k in range(6, 10):
            clock.advance(1.13)
            badge_out(k + 1, machines[k])
        assert all(a.journal.last_seq() > a.acked_through for a in agents)
        broker.restart()

        for agent in agents:
            wait_until(lambda a=agent: a.hub_online, 30, "edges and hub back")
        advance(clock, agents, 95)
        for i, machine in enumerate(machines[10:], start=11):
            clock.advance(0.731)
            badge_out(i, machine)

        # Everything journaled reaches the ledger once.
        for agent in agents:
            wait_until(
                lambda a=agent: a.acked_through == a.journal.last_seq(), 30, "journals drained"
            )
        for edge in site.edges:
            through, seen = hub.cursor(edge)
            assert through == seen
        rows = hub.sessions()
        assert len(rows) == 50
        assert all(r.end_reason == EndReason.BADGE_OUT for r in rows.values())
        used = hub.used_by_machine()
        assert used.keys() == truth.keys()
        for machine, expected in truth.items():
            assert used[machine] == pytest.approx(expected, abs=1e-3), machine
        assert sum(used.values()) == pytest.approx(sum(truth.values()), abs=1e-2)
    finally:
        for agent in agents:
            agent.stop()
        hub.stop()
