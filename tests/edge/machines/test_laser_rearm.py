"""A laser after a hard limit or an abort: only a staff re-arm lets a session start again.

The real GRBL driver on a pty with the scripted GRBL 1.1 peer, Mosquitto, the hub and
its REST API. The alarm cuts the session; once the controller looks fine again (its
alarm cleared by a power cycle) the edge still refuses every badge, and says why on
``state/+`` (fault ``rearm``), until an animator sends "réarmer" (an edge restart
does not forget it): GRBL's ``$X``, then ``$H`` when homing is enabled (``$22=1``).
The edge journals who did it and the hub writes it to the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from devices.grbl import GrblState
from edge.agent import Agent
from edge.effects import FeedbackKind
from hub.db.models import AuditEvent
from protocol.messages import Availability, EndReason, MachineRearmedBody, SessionEndedBody
from tests.devices.conftest import PtyPort
from tests.devices.grbl_peer import GrblPeer
from tests.edge.conftest import STAFF_UID, present, state_of, wait_until
from tests.edge.machines.conftest import hub_state, journaled, staff_api
from tests.edge.machines.test_laser import LASER, POLL_S, wait_laser
from tests.edge.test_agent import Rig, actuator_of

pytestmark = pytest.mark.broker


@pytest.fixture(params=[(1, True), (3, False)], ids=["hard-limit-homing", "abort-no-homing"])
def case(request: pytest.FixtureRequest) -> tuple[int, bool]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def peer(pty_port: PtyPort, case: tuple[int, bool]) -> Iterator[GrblPeer]:
    _alarm, homing = case
    grbl = GrblPeer(pty_port, settings={30: 1000.0, 32: 1.0, 22: 1.0 if homing else 0.0})
    grbl.start()
    yield grbl
    grbl.stop()


def test_a_laser_is_granted_again_only_once_staff_re_armed_it(
    rig: Callable[..., Rig],
    pty_port: PtyPort,
    peer: GrblPeer,
    case: tuple[int, bool],
    tmp_path: Path,
) -> None:
    alarm, homing = case
    r = rig({"pi-a": 0}, laser_edge="pi-a")
    options = {"port": pty_port.path, "poll_interval_s": POLL_S}
    machine = {"id": LASER, "kind": "laser", "laser": {"kind": "laser.grbl", "options": options}}
    agent: Agent = r.online(r.agent("pi-a", [machine]))
    driver = agent.unit(LASER).follower.laser
    assert driver is not None
    wait_laser(driver, lambda s: s.connected and s.homing is homing)
    wait_until(lambda: agent.view(LASER).availability is Availability.FREE, 5, "laser free")
    api = staff_api(r.hub)
    act = actuator_of(agent, LASER)

    # Nothing runs: a pause is refused (no cut), a resume is never done remotely.
    no_cut = api.command(LASER, "pause")
    assert (no_cut.status_code, no_cut.json()["code"]) == (409, "no_job")
    resume = api.command(LASER, "resume")
    assert (resume.status_code, resume.json()["code"]) == (409, "unsupported")
    assert "depuis son poste" in resume.json()["detail"]

    present(agent, LASER, STAFF_UID)
    wait_until(lambda: act.history[-1] is True, 5, "laser on")
    peer.set_state("Run", feed=1200, power=500)
    wait_laser(driver, lambda s: s.state is GrblState.RUN)
    peer.alarm(alarm)  # a hard limit, or a reset while the head moved
    wait_until(lambda: state_of(agent, LASER) == "idle", 5, "the alarm ended the session")
    assert act.history[-1] is False
    (ended,) = journaled(agent, SessionEndedBody)
    assert ended.reason is EndReason.FAULT

    # The controller comes back Idle (power-cycled): GRBL's alarm is gone, not the edge's.
    peer.set_state("Idle")
    wait_laser(driver, lambda s: s.state is GrblState.IDLE and not s.alarm)
    wait_until(lambda: set(agent.unit(LASER).faults) == {"rearm"}, 5, "waits for a re-arm")
    wait_until(
        lambda: (
            (s := hub_state(r.hub, LASER)) is not None
            and s.availability is Availability.FAULT
            and s.detail is not None
            and s.detail.faults == ("rearm",)
        ),
        10,
        "the hub sees why",
    )
    # Restarting the edge (a power cut takes the Pi and the laser together) keeps it.
    agent.stop()
    agent = r.online(r.agent("pi-a", [machine]))
    driver = agent.unit(LASER).follower.laser
    assert driver is not None
    wait_laser(driver, lambda s: s.connected and s.state is GrblState.IDLE)
    wait_until(lambda: set(agent.unit(LASER).faults) == {"rearm"}, 5, "still waits")
    act = actuator_of(agent, LASER)
    on_before = act.history.count(True)
    present(agent, LASER, STAFF_UID)
    wait_until(lambda: r.feedback(LASER, FeedbackKind.DENY), 5, "refused until re-armed")
    assert act.history.count(True) == on_before

    rearmed = api.command(LASER, "rearm")
    assert rearmed.status_code == 200, rearmed.text
    assert rearmed.json()["outcome"] == "applied"
    assert "$X" in peer.received.lines
    assert ("$H" in peer.received.lines) is homing
    assert peer.received.lines.index("$X") < (
        peer.received.lines.index("$H") if homing else len(peer.received.lines)
    )
    (record,) = journaled(agent, MachineRearmedBody)
    assert (record.machine, record.by) == (LASER, api.account_id)
    assert not list(tmp_path.rglob(f"rearm-{LASER}"))  # the mark is gone with the re-arm
    wait_until(lambda: agent.view(LASER).availability is Availability.FREE, 5, "armed again")
    present(agent, LASER, STAFF_UID)
    wait_until(lambda: act.history[-1] is True, 5, "granted once re-armed")

    wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 10, "acknowledged")
    with r.hub.factory() as s:
        (audit,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "machine_rearmed"))
        assert (audit.actor, audit.target) == (api.username, f"machine_id={LASER}")
