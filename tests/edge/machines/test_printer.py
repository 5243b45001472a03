"""A 3D printer end to end: the real OctoPrint's Virtual Printer, Mosquitto and the hub.

The agent follows OctoPrint 1.11 through its push API, the hub runs in this process
on the agent's fake clock (durations, the longest cool-down); prints are ``G4``
dwells, so they last a known few seconds of real time, and the nozzle heats and
cools at the Virtual Printer's pace (10 °C/s up, 2 °C/s down).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from devices.octoprint import OctoPrintClient, OctoPrintFollower
from edge.agent import Agent
from protocol.messages import (
    Availability,
    EndReason,
    JobEndedBody,
    JobResult,
    MachineAction,
    SessionEndedBody,
)
from protocol.topics import Topics
from tests.conftest import Broker
from tests.devices.octoprint.conftest import OctoPrintServer, dwell_gcode
from tests.edge.conftest import advance, journal_types, member_uid, present, state_of, wait_until
from tests.edge.machines.conftest import hub_events, hub_state, journaled
from tests.edge.test_agent import Rig, actuator_of
from tests.hub.hubkit import Probe

pytestmark = [pytest.mark.broker, pytest.mark.octoprint]

T = TypeVar("T")
PRINTER = "m-01"


def octoprint_call(server: OctoPrintServer, call: Callable[[OctoPrintClient], Awaitable[T]]) -> T:
    """Run one REST call as someone at OctoPrint's own web page would (not the agent)."""

    async def run() -> T:
        async with OctoPrintClient(server.url, server.key) as client:
            return await call(client)

    return asyncio.run(run())


def printer(server: OctoPrintServer, **settings: Any) -> dict[str, Any]:
    """The printer's ``[[machines]]`` entry (simulated plug and reader, the real OctoPrint)."""
    options = {"url": server.url, "api_key": server.key, "poll_interval_s": 2}
    return {
        "id": PRINTER,
        "kind": "printer",
        "printer": {"kind": "printer.octoprint", "options": options},
        **settings,
    }


def start_agent(
    r: Rig, server: OctoPrintServer, **settings: Any
) -> tuple[Agent, OctoPrintFollower]:
    agent = r.online(r.agent("pi-a", [printer(server, **settings)]))
    follower = agent.unit(PRINTER).follower.printer
    assert follower is not None
    wait_until(
        lambda: follower.link_up and follower.snapshot.state == "Operational", 15, "following"
    )
    return agent, follower


def badge_in(r: Rig, agent: Agent) -> str:
    present(agent, PRINTER, member_uid(1))
    wait_until(lambda: actuator_of(agent, PRINTER).history[-1] is True, 5, "power on")
    # The power goes on before the agent publishes its views: wait for the view.
    wait_until(lambda: agent.view(PRINTER).session.session_id is not None, 5, "session view")
    session_id = agent.view(PRINTER).session.session_id
    assert session_id is not None
    return session_id


def print_now(server: OctoPrintServer, follower: OctoPrintFollower, gcode: bytes) -> None:
    """Upload ``gcode``, let OctoPrint analyse it (filament), then start it."""
    octoprint_call(server, lambda c: c.upload("cube.gcode", gcode, select=True))
    wait_until(lambda: follower.snapshot.filament_mm, 20, "OctoPrint's analysis")
    octoprint_call(server, lambda c: c.start())


def hub_sees_job(r: Rig, running: bool) -> None:
    def seen() -> bool:
        state = hub_state(r.hub, PRINTER)
        return state is not None and state.detail is not None and state.detail.job is running

    wait_until(seen, 5, f"the hub sees job={running}")


def hub_sees_free(r: Rig) -> None:
    def free() -> bool:
        state = hub_state(r.hub, PRINTER)
        return state is not None and state.availability is Availability.FREE

    wait_until(free, 5, "the hub sees the printer free")


def test_a_print_keeps_the_power_past_badge_out_until_done_and_cooled(
    rig: Callable[..., Rig], octoprint: OctoPrintServer
) -> None:
    r = rig({"pi-a": 1})
    agent, follower = start_agent(r, octoprint, cooldown_below_c=40)
    act = actuator_of(agent, PRINTER)
    session_id = badge_in(r, agent)
    # Heat to 45 °C and wait for it (M109), print 2 s, then switch the heater off.
    gcode = b"M109 S45\n" + dwell_gcode(2.0, heat=False, cool_down=True, filament_mm=12.5)
    print_now(octoprint, follower, gcode)
    wait_until(lambda: agent.view(PRINTER).session.job_running, 10, "job running")
    hub_sees_job(r, True)

    advance(r.clock, [agent], 61)
    present(agent, PRINTER, member_uid(1))  # badge-out mid-print
    wait_until(lambda: state_of(agent, PRINTER) == "ending", 5, "ending")
    assert act.history[-1] is True  # never cut while OctoPrint reports a job

    (job,) = wait_until(lambda: journaled(agent, JobEndedBody), 20, "job_ended journaled")
    assert (job.session_id, job.machine, job.job) == (session_id, PRINTER, "cube.gcode")
    assert job.result is JobResult.DONE
    assert job.filament_mm == pytest.approx(12.5)
    assert 1.5 < job.duration_s < 15  # OctoPrint's own print time
    # The print is done but the nozzle is still hot: the power waits for it to cool.
    wait_until(lambda: agent.view(PRINTER).session.cooling, 10, "cooling down")
    assert act.history[-1] is True
    assert "session_ended" not in journal_types(agent)

    wait_until(lambda: state_of(agent, PRINTER) == "idle", 20, "cooled: session ended")
    assert act.history == [False, True, False]
    nozzle = follower.snapshot.tool0
    assert nozzle is not None
    assert (nozzle.actual or 99) < 40
    (ended,) = journaled(agent, SessionEndedBody)
    assert (ended.session_id, ended.reason) == (session_id, EndReason.BADGE_OUT)
    assert ended.duration_s == pytest.approx(61.0)  # fake time: only the advance passed
    types = journal_types(agent)
    assert types.index("job_ended") < types.index("session_ended")

    wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 10, "acknowledged")
    (row,) = hub_events(r.hub, "pi-a", "job_ended")
    assert (row["session_id"], row["result"], row["job"]) == (session_id, "done", "cube.gcode")
    assert [e["reason"] for e in hub_events(r.hub, "pi-a", "session_ended")] == ["badge_out"]
    hub_sees_free(r)
    assert r.hub.sessions()[session_id].end_reason == EndReason.BADGE_OUT


def test_staff_pause_resume_and_cancel_reach_octoprint(
    rig: Callable[..., Rig], octoprint: OctoPrintServer, mosquitto: Broker
) -> None:
    r = rig({"pi-a": 1})
    agent, follower = start_agent(r, octoprint)
    hub = r.hub.hub
    assert hub is not None
    act = actuator_of(agent, PRINTER)
    session_id = badge_in(r, agent)
    tele = Probe(mosquitto.host, mosquitto.port, [Topics(r.site.site).tele("pi-a", PRINTER)])
    tele.start()
    octoprint_call(
        octoprint, lambda c: c.upload("long.gcode", dwell_gcode(60, heat=False), print_=True)
    )
    wait_until(lambda: agent.view(PRINTER).session.job_running, 10, "job running")
    wait_until(lambda: follower.snapshot.state == "Printing", 10, "printing (what staff see)")
    # Telemetry about once a second while OctoPrint is followed, with the job's figures.
    try:
        tele.wait_for(lambda m: "progress" in m.json()["values"], 5)
        first = len(tele.messages)
        time.sleep(3.2)
        assert 2 <= len(tele.messages) - first <= 5
        values = tele.messages[-1].json()["values"]
    finally:
        tele.stop()
    assert values["state"] == "Printing"
    assert {"nozzle_c", "nozzle_target_c", "bed_c", "bed_target_c", "progress"} <= set(values)
    assert values["connected"] is True
    # The file name never leaves the edge on tele/+ (file names name children).
    assert all("long.gcode" not in m.payload.decode() for m in tele.messages)

    assert hub.machine_command(PRINTER, MachineAction.PAUSE)  # a real cmd/machine message
    wait_until(lambda: follower.snapshot.flags.paused, 10, "paused in OctoPrint")
    assert act.history[-1] is True
    assert state_of(agent, PRINTER) == "active"
    hub_sees_job(r, True)  # a paused job is still a job

    assert hub.machine_command(PRINTER, MachineAction.RESUME)
    wait_until(
        lambda: follower.snapshot.flags.printing and not follower.snapshot.flags.paused,
        10,
        "printing again",
    )

    assert hub.machine_command(PRINTER, MachineAction.CANCEL)
    wait_until(lambda: state_of(agent, PRINTER) == "idle", 15, "cancelled: session ended")
    assert act.history == [False, True, False]
    # OctoPrint said PrintCancelled then PrintFailed(reason=cancelled): one job.
    (job,) = journaled(agent, JobEndedBody)
    assert (job.session_id, job.result, job.job) == (session_id, JobResult.CANCELLED, "long.gcode")
    (ended,) = journaled(agent, SessionEndedBody)
    assert ended.reason is EndReason.JOB_DONE
    wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 10, "acknowledged")
    assert [e["result"] for e in hub_events(r.hub, "pi-a", "job_ended")] == ["cancelled"]
    hub_sees_free(r)
    # Idle and cold: back to the edge's telemetry period (10 s), not every second.
    quiet = Probe(mosquitto.host, mosquitto.port, [Topics(r.site.site).tele("pi-a", PRINTER)])
    quiet.start()
    try:
        time.sleep(3.2)
        assert len(quiet.messages) <= 1
    finally:
        quiet.stop()


def test_octoprint_killed_mid_print_keeps_the_power(
    rig: Callable[..., Rig], octoprint: OctoPrintServer
) -> None:
    r = rig({"pi-a": 1})
    agent, follower = start_agent(r, octoprint)
    act = actuator_of(agent, PRINTER)
    session_id = badge_in(r, agent)
    octoprint_call(
        octoprint, lambda c: c.upload("long.gcode", dwell_gcode(120, heat=False), print_=True)
    )
    wait_until(lambda: agent.view(PRINTER).session.job_running, 10, "job running")
    wait_until(lambda: follower.snapshot.state == "Printing", 10, "printing")
    advance(r.clock, [agent], 5)
    present(agent, PRINTER, member_uid(1))
    wait_until(lambda: state_of(agent, PRINTER) == "ending", 5, "ending")

    process = octoprint.process
    assert process is not None
    process.kill()  # OctoPrint dies mid-print
    process.wait(10)
    wait_until(lambda: not follower.link_up, 15, "the follower sees OctoPrint gone")
    advance(r.clock, [agent], 30 * 60)  # whatever the time, a job last seen running holds
    assert act.history[-1] is True
    view = agent.view(PRINTER).session
    assert (view.state.value, view.job_running) == ("ending", True)
    assert journaled(agent, JobEndedBody) == []

    octoprint.start()  # back, without the job: the follower says it was lost
    wait_until(lambda: state_of(agent, PRINTER) == "idle", 45, "job gone: session ended")
    assert act.history == [False, True, False]
    (job,) = wait_until(lambda: journaled(agent, JobEndedBody), 15, "job_ended journaled")
    assert (job.session_id, job.result, job.job) == (session_id, JobResult.LOST, "long.gcode")
    (ended,) = journaled(agent, SessionEndedBody)
    assert ended.reason is EndReason.BADGE_OUT
    hub_sees_free(r)


def test_a_printer_that_stays_hot_is_cut_after_the_longest_cool_down(
    rig: Callable[..., Rig], octoprint: OctoPrintServer
) -> None:
    r = rig({"pi-a": 1})
    agent, _ = start_agent(r, octoprint, cooldown_below_c=30, cooldown_max_min=10)
    act = actuator_of(agent, PRINTER)
    badge_in(r, agent)
    try:
        # A short print that leaves the nozzle heating (no end code): it never cools.
        octoprint_call(octoprint, lambda c: c.upload("hot.gcode", dwell_gcode(4.0), print_=True))
        wait_until(lambda: agent.view(PRINTER).session.cooling, 20, "done, cooling")
        assert act.history[-1] is True
        advance(r.clock, [agent], 9 * 60)
        assert state_of(agent, PRINTER) == "ending"
        assert act.history[-1] is True
        advance(r.clock, [agent], 60)
        wait_until(lambda: state_of(agent, PRINTER) == "idle", 5, "cut after 10 minutes")
        assert act.history == [False, True, False]
        (ended,) = journaled(agent, SessionEndedBody)
        assert ended.reason is EndReason.JOB_DONE
        assert [j.result for j in journaled(agent, JobEndedBody)] == [JobResult.DONE]
    finally:  # leave the Virtual Printer's heaters off for the next tests
        octoprint_call(
            octoprint, lambda c: c.upload("off.gcode", b"M104 S0\nM140 S0\n", print_=True)
        )
