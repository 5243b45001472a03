"""A generic machine on a metering Shelly plug end to end: Gen2 RPC peer, Mosquitto, hub.

Busy while the plug's ``apower`` is at or above ``busy_above_w``; below it for
``idle_timeout_min`` the session ends (reason ``idle``) and the plug is switched
off. Power is sampled at every telemetry (``tele_interval_s``), see docs/machines.md.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from protocol.messages import EndReason, SessionEndedBody
from tests.devices.test_shelly import FakeShelly
from tests.edge.conftest import advance, member_uid, present, state_of, wait_until
from tests.edge.machines.conftest import alerts_of, hub_state, journaled, open_alerts
from tests.edge.test_agent import Rig

pytestmark = pytest.mark.broker

MACHINE = "m-01"


def switched(shelly: FakeShelly, on: bool) -> list[dict[str, str]]:
    value = "true" if on else "false"
    return [p for path, p in shelly.requests if path == "/rpc/Switch.Set" and p["on"] == value]


def test_a_metered_plug_ends_an_idle_session_and_the_hub_meters_it(
    rig: Callable[..., Rig], shelly: FakeShelly
) -> None:
    shelly.load_w = 120.0  # a soldering station heating
    r = rig({"pi-a": 1})
    plug = {"kind": "actuator.shelly", "options": {"host": shelly.host, "timeout_s": 1.0}}
    machine = {"id": MACHINE, "actuator": plug, "busy_above_w": 50.0, "idle_timeout_min": 2}
    agent = r.online(r.agent("pi-a", [machine], tele_interval_s=0.5))
    assert shelly.output is False  # switched off when the agent started
    assert switched(shelly, True) == []

    present(agent, MACHINE, member_uid(1))
    wait_until(lambda: shelly.output, 5, "plug on")
    assert switched(shelly, True) == [{"id": "0", "on": "true"}]
    # The plug switches on before the agent publishes its views: wait for the view.
    wait_until(lambda: agent.view(MACHINE).session.session_id is not None, 5, "session view")
    session_id = agent.view(MACHINE).session.session_id
    assert session_id is not None
    wait_until(lambda: agent.view(MACHINE).session.job_running, 5, "busy by power")

    def hub_job(running: bool) -> bool:
        state = hub_state(r.hub, MACHINE)
        return state is not None and state.detail is not None and state.detail.job is running

    wait_until(lambda: hub_job(True), 5, "the hub sees it busy")
    advance(r.clock, [agent], 5 * 60)  # busy all along: never idle
    wait_until(lambda: agent.view(MACHINE).session.job_running, 5, "still busy")
    assert state_of(agent, MACHINE) == "active"

    shelly.load_w = 8.0  # standby, below the threshold
    wait_until(lambda: not agent.view(MACHINE).session.job_running, 5, "not busy")
    wait_until(lambda: hub_job(False), 5, "the hub sees it not busy")
    advance(r.clock, [agent], 110)
    assert state_of(agent, MACHINE) == "active"
    assert shelly.output is True
    advance(r.clock, [agent], 11)
    wait_until(lambda: state_of(agent, MACHINE) == "idle", 5, "idle timeout")
    assert shelly.output is False
    assert switched(shelly, False)[-1] == {"id": "0", "on": "false"}

    (ended,) = journaled(agent, SessionEndedBody)
    assert ended.reason is EndReason.IDLE
    assert ended.duration_s == pytest.approx(5 * 60 + 121, abs=1.0)
    wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 10, "acknowledged")
    row = r.hub.sessions()[session_id]
    assert row.end_reason == EndReason.IDLE
    assert row.used_s == pytest.approx(ended.duration_s, abs=1e-6)


def test_a_plug_drawing_power_with_no_session_runs_without_one(
    rig: Callable[..., Rig], shelly: FakeShelly
) -> None:
    r = rig({"pi-a": 1})
    plug = {"kind": "actuator.shelly", "options": {"host": shelly.host, "timeout_s": 1.0}}
    machine = {"id": MACHINE, "actuator": plug, "busy_above_w": 50.0}
    agent = r.online(r.agent("pi-a", [machine], tele_interval_s=0.5))
    assert shelly.output is False
    shelly.load_w = 120.0
    shelly.output = True  # someone pressed the plug's own button: nobody badged
    wait_until(lambda: agent.view(MACHINE).session.foreign_job, 10, "running without a session")

    def hub_foreign(running: bool) -> bool:
        state = hub_state(r.hub, MACHINE)
        return (
            state is not None and state.detail is not None and state.detail.foreign_job is running
        )

    wait_until(lambda: hub_foreign(True), 5, "the hub sees it")
    wait_until(lambda: open_alerts(r.hub, MACHINE) == ["running_without_session"], 10, "alert")
    shelly.output = False  # switched off by hand again: the alert resolves, kept
    wait_until(lambda: hub_foreign(False), 10, "the hub sees it stop")
    wait_until(lambda: open_alerts(r.hub, MACHINE) == [], 10, "alert resolved")
    assert alerts_of(r.hub, MACHINE) == [("running_without_session", False)]
