"""Reliability 4: one edge is cut off for 30 minutes (simulated) and decides alone.

The edge reaches the broker through a TCP proxy that the test cuts (a network
partition of this edge only: the hub stays up and sees the edge's last will). During
30 minutes of fake time a session started before the cut keeps running, ten
members start and stop sessions decided offline from the signed policy snapshot,
an unknown badge and a member at the staff-only laser are refused, and an animator
opens the laser. When the network heals, every journaled event reaches the ledger
exactly once: the offline decisions in the access log, every session with the
duration of the edge's monotonic clock to the millisecond.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from edge.agent import Agent
from edge.clock import FakeClock
from edge.session import FeedbackKind
from hub.db.models import AccessLog
from protocol.messages import EndReason
from tests.conftest import Broker
from tests.edge.conftest import (
    STAFF_UID,
    UNKNOWN_UID,
    HubRunner,
    Proxy,
    Site,
    advance,
    edge_settings,
    member_uid,
    present,
    state_of,
    wait_until,
)

pytestmark = pytest.mark.broker


def test_thirty_minute_partition_with_offline_decisions(
    mosquitto: Broker,
    hub_runner_factory: Callable[..., tuple[Site, HubRunner]],
    proxy_factory: Callable[[int], Proxy],
    tmp_path: Path,
) -> None:
    clock = FakeClock(wall=datetime(2026, 3, 11, 14, 0, tzinfo=UTC))
    site, hub = hub_runner_factory({"pi-a": 2}, members=12, laser_edge="pi-a", clock=clock.now)
    proxy = proxy_factory(mosquitto.port)
    laser = {
        "id": "laser-1",
        "kind": "laser",
        "actuator": {"kind": "actuator.sim", "options": {"latch_on_fault": True}},
    }
    settings = edge_settings(tmp_path, site.site, "pi-a", proxy.port, ["m-01", "m-02", laser])
    agent = Agent(settings, clock=clock)
    agent.start()
    try:
        wait_until(lambda: agent.hub_online and agent.policy_version, 15, "online, snapshot")
        t0 = clock.monotonic()
        present(agent, "m-01", member_uid(1))  # an online session spanning the partition
        wait_until(lambda: state_of(agent, "m-01") == "active", 5, "online grant")
        online_id = agent.view("m-01").session.session_id
        assert online_id is not None
        advance(clock, [agent], 30)

        proxy.cut()
        wait_until(lambda: not agent.hub_online, 10, "partitioned")
        live = hub.hub
        assert live is not None
        wait_until(lambda: live.edges_online().get("pi-a") is False, 10, "hub sees the will")
        cut_at = clock.monotonic()
        truth: dict[str, float] = {}
        # Ten offline sessions on m-02, 2 min 10.5 s each with a little pause between.
        for i in range(2, 12):
            present(agent, "m-02", member_uid(i))
            wait_until(lambda: state_of(agent, "m-02") == "active", 5, "offline grant")
            view = agent.view("m-02").session
            assert view.offline
            assert view.session_id is not None
            start = clock.monotonic()
            advance(clock, [agent], 130.5)
            present(agent, "m-02", member_uid(i))
            wait_until(lambda: state_of(agent, "m-02") == "idle", 5, "badge-out")
            truth[view.session_id] = clock.monotonic() - start
            advance(clock, [agent], 4.5)
        present(agent, "m-02", UNKNOWN_UID)  # unknown: refused offline
        present(agent, "laser-1", member_uid(12))  # a member at the laser: staff only
        wait_until(
            lambda: sum(e.kind is FeedbackKind.DENY for e in agent.stream.recent()) == 2,
            5,
            "two refusals shown",
        )
        advance(clock, [agent], 1)
        present(agent, "laser-1", STAFF_UID)
        wait_until(lambda: state_of(agent, "laser-1") == "active", 5, "staff opens the laser")
        laser_id = agent.view("laser-1").session.session_id
        assert laser_id is not None
        laser_start = clock.monotonic()
        advance(clock, [agent], 30 * 60 - (clock.monotonic() - cut_at))  # 30 min in all
        assert agent.journal.last_seq() > agent.acked_through

        proxy.heal()
        wait_until(lambda: agent.hub_online, 15, "healed")
        advance(clock, [agent], 10)
        for machine, uid in (("m-01", member_uid(1)), ("laser-1", STAFF_UID)):
            present(agent, machine, uid)
            wait_until(lambda m=machine: state_of(agent, m) == "idle", 5, "badge-out")
        truth[online_id] = clock.monotonic() - t0
        truth[laser_id] = clock.monotonic() - laser_start
        wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 15, "drained")

        rows = hub.sessions()
        assert set(rows) == set(truth)
        for session_id, expected in truth.items():
            assert rows[session_id].used_s == pytest.approx(expected, abs=1e-3), session_id
            assert rows[session_id].end_reason == EndReason.BADGE_OUT
        assert not rows[online_id].offline
        assert all(rows[s].offline for s in truth if s != online_id)
        assert rows[laser_id].staff
        through, seen = hub.cursor("pi-a")
        assert through == seen == agent.journal.last_seq()
        with hub.factory() as s:
            offline = s.scalars(select(AccessLog).where(AccessLog.offline.is_(True))).all()
        codes = sorted(row.code for row in offline)
        assert codes.count("offline_granted") == 10
        assert "offline_granted_staff" in codes
        assert "offline_unknown_badge" in codes
        assert len(codes) == 13  # ten grants, two refusals, the animator
    finally:
        agent.stop()
