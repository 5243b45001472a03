"""A laser end to end: the GRBL driver on a real pty with a scripted GRBL 1.1, Mosquitto, hub.

The laser's session journals its run time (beam on: ``Run`` with ``S`` > 0) apart
from its duration; the hub receives it with ``session_ended``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from devices.grbl import GrblLaser, GrblSnapshot, GrblState
from edge.agent import Agent
from protocol.messages import Availability, EndReason, MachineFaultBody, SessionEndedBody
from tests.devices.conftest import PtyPort
from tests.devices.grbl_peer import GrblPeer
from tests.edge.conftest import STAFF_UID, advance, present, state_of, wait_until
from tests.edge.machines.conftest import alerts_of, hub_events, hub_state, journaled, open_alerts
from tests.edge.test_agent import Rig, actuator_of

pytestmark = pytest.mark.broker

LASER = "laser-1"
POLL_S = 0.05


@pytest.fixture
def peer(pty_port: PtyPort) -> Iterator[GrblPeer]:
    grbl = GrblPeer(pty_port).start()
    yield grbl
    grbl.stop()


def wait_laser(driver: GrblLaser, predicate: Callable[[GrblSnapshot], bool]) -> GrblSnapshot:
    snapshot = driver.wait_for(predicate, 5.0)
    assert snapshot is not None, f"condition not met; last snapshot {driver.snapshot()}"
    return snapshot


def fire(peer: GrblPeer, driver: GrblLaser, seconds: float, power: float) -> float:
    """The laser runs a job for ``seconds`` of real time; the driver's meter increase."""
    before = wait_laser(driver, lambda s: s.state is GrblState.IDLE).run_time_s
    peer.set_state("Run", feed=1200, power=power)
    wait_laser(driver, lambda s: s.state is GrblState.RUN)
    time.sleep(seconds)
    peer.set_state("Idle")
    return wait_laser(driver, lambda s: s.state is GrblState.IDLE).run_time_s - before


def test_a_laser_session_journals_its_beam_on_time(
    rig: Callable[..., Rig], pty_port: PtyPort, peer: GrblPeer
) -> None:
    r = rig({"pi-a": 0}, laser_edge="pi-a")
    options = {"port": pty_port.path, "poll_interval_s": POLL_S}
    machine = {"id": LASER, "kind": "laser", "laser": {"kind": "laser.grbl", "options": options}}
    agent: Agent = r.online(r.agent("pi-a", [machine]))
    driver = agent.unit(LASER).follower.laser
    assert driver is not None
    wait_laser(driver, lambda s: s.connected and s.state is GrblState.IDLE)
    wait_until(lambda: agent.view(LASER).availability is Availability.FREE, 5, "laser free")
    # The first handshake after start is not a fault (no alert at every restart).
    assert journaled(agent, MachineFaultBody) == []
    fire(peer, driver, 0.3, power=800)  # before the session: not this session's time

    present(agent, LASER, STAFF_UID)
    act = actuator_of(agent, LASER)
    wait_until(lambda: act.history[-1] is True, 5, "laser on")
    wait_until(lambda: agent.view(LASER).session.session_id is not None, 5, "session view")
    session_id = agent.view(LASER).session.session_id
    beam = fire(peer, driver, 1.0, power=500)  # cutting
    assert beam == pytest.approx(1.0, abs=2 * POLL_S + 0.1)
    moved = fire(peer, driver, 0.4, power=0)  # travel moves, beam off: not run time
    assert moved == 0.0
    advance(r.clock, [agent], 180)
    present(agent, LASER, STAFF_UID)  # badge-out
    wait_until(lambda: state_of(agent, LASER) == "idle", 5, "session ended")
    assert act.history[-1] is False

    (ended,) = journaled(agent, SessionEndedBody)
    assert (ended.session_id, ended.reason) == (session_id, EndReason.BADGE_OUT)
    assert ended.duration_s == pytest.approx(180.0, abs=1.0)
    assert ended.run_s == pytest.approx(beam, abs=1e-3)
    wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 10, "acknowledged")
    (row,) = hub_events(r.hub, "pi-a", "session_ended")
    assert row["run_s"] == pytest.approx(beam, abs=1e-3)
    assert r.hub.sessions()[session_id].run_s == pytest.approx(beam, abs=1e-3)


def test_a_machine_without_a_meter_journals_no_run_time(rig: Callable[..., Rig]) -> None:
    r = rig({"pi-a": 1})
    agent = r.online(r.agent("pi-a"))
    present(agent, "m-01", "0A00000000000001")
    wait_until(lambda: state_of(agent, "m-01") == "active", 5, "active")
    advance(r.clock, [agent], 5)
    present(agent, "m-01", "0A00000000000001")
    wait_until(lambda: state_of(agent, "m-01") == "idle", 5, "ended")
    (ended,) = journaled(agent, SessionEndedBody)
    assert ended.run_s is None


def test_a_laser_whose_controller_is_missing_is_faulted(rig: Callable[..., Rig]) -> None:
    r = rig({"pi-a": 0}, laser_edge="pi-a")
    options = {"port": "/dev/ttyfabrique-missing", "poll_interval_s": POLL_S}
    machine = {"id": LASER, "kind": "laser", "laser": {"kind": "laser.grbl", "options": options}}
    agent: Agent = r.online(r.agent("pi-a", [machine]))
    wait_until(lambda: agent.view(LASER).availability is Availability.FAULT, 10, "faulted")
    (fault,) = journaled(agent, MachineFaultBody)
    assert fault.code == "grbl"
    assert "GRBL link down" in fault.detail


def test_a_laser_running_with_no_session_is_reported_and_resolves_when_it_stops(
    rig: Callable[..., Rig], pty_port: PtyPort, peer: GrblPeer
) -> None:
    r = rig({"pi-a": 0}, laser_edge="pi-a")
    options = {"port": pty_port.path, "poll_interval_s": POLL_S}
    machine = {"id": LASER, "kind": "laser", "laser": {"kind": "laser.grbl", "options": options}}
    agent: Agent = r.online(r.agent("pi-a", [machine]))
    driver = agent.unit(LASER).follower.laser
    assert driver is not None
    wait_laser(driver, lambda s: s.state is GrblState.IDLE)
    peer.set_state("Run", feed=1200, power=0.0)  # GRBL runs a job, nobody badged
    wait_until(lambda: agent.view(LASER).session.foreign_job, 5, "running without a session")

    def hub_foreign(running: bool) -> bool:
        state = hub_state(r.hub, LASER)
        return (
            state is not None and state.detail is not None and state.detail.foreign_job is running
        )

    wait_until(lambda: hub_foreign(True), 5, "the hub sees it")
    wait_until(lambda: open_alerts(r.hub, LASER) == ["running_without_session"], 10, "alert")
    assert actuator_of(agent, LASER).history == [False]  # never switched on for it
    peer.set_state("Idle")
    wait_until(lambda: not agent.view(LASER).session.foreign_job, 5, "stopped")
    wait_until(lambda: open_alerts(r.hub, LASER) == [], 10, "alert resolved")
    assert alerts_of(r.hub, LASER) == [("running_without_session", False)]
