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
from sqlalchemy import select

from devices.octoprint import OctoPrintClient, OctoPrintFollower
from edge.agent import Agent
from edge.session import FeedbackKind
from hub.db.models import AccessLog, MachineJob
from protocol.messages import (
    Availability,
    EndReason,
    JobEndedBody,
    JobResult,
    JobStartedBody,
    MachineAction,
    MachineFaultBody,
    SessionEndedBody,
)
from protocol.topics import Topics
from tests.conftest import Broker
from tests.devices.octoprint.conftest import OctoPrintServer, dwell_gcode
from tests.edge.conftest import (
    STAFF_UID,
    HubRunner,
    advance,
    journal_types,
    member_uid,
    present,
    state_of,
    wait_until,
)
from tests.edge.machines.conftest import alerts_of, hub_events, hub_state, journaled, open_alerts
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


def denied_codes(hub: HubRunner, machine: str) -> list[str]:
    """The codes of the refusals the hub logged for ``machine``, oldest first."""
    assert hub.hub is not None
    hub.hub.accesslog.flush()
    with hub.factory() as s:
        rows = s.scalars(
            select(AccessLog)
            .where(AccessLog.machine_id == machine, AccessLog.granted.is_(False))
            .order_by(AccessLog.id)
        )
        return [row.code for row in rows]


def test_a_print_nobody_badged_for_runs_without_a_session(
    rig: Callable[..., Rig], octoprint: OctoPrintServer
) -> None:
    r = rig({"pi-a": 1})
    agent, _follower = start_agent(r, octoprint)
    hub = r.hub.hub
    assert hub is not None
    act = actuator_of(agent, PRINTER)
    # Started from OctoPrint's own page, nobody badged (the relay is off: a virtual
    # printer ignores it, a real one may be powered by hand).
    octoprint_call(
        octoprint, lambda c: c.upload("porte-cles.gcode", dwell_gcode(90, heat=False), print_=True)
    )
    wait_until(lambda: agent.view(PRINTER).session.foreign_job, 10, "running without a session")
    (started,) = wait_until(lambda: journaled(agent, JobStartedBody), 5, "job_started journaled")
    assert (started.session_id, started.file_name) == (None, "porte-cles.gcode")

    def hub_sees_foreign() -> bool:
        state = hub_state(r.hub, PRINTER)
        return state is not None and state.detail is not None and state.detail.foreign_job

    wait_until(hub_sees_foreign, 5, "the hub sees the printer running without a session")
    state = hub_state(r.hub, PRINTER)
    assert state is not None
    assert (state.availability, state.session_id) == (Availability.IN_USE, None)
    wait_until(
        lambda: open_alerts(r.hub, PRINTER) == ["running_without_session"], 10, "alert opened"
    )
    wait_until(
        lambda: hub.running_job_files().get(PRINTER) == "porte-cles.gcode", 10, "hub job record"
    )

    # A member's badge is refused with what to do; the printer stays off.
    present(agent, PRINTER, member_uid(1))
    (deny,) = wait_until(lambda: r.feedback(PRINTER, FeedbackKind.DENY), 5, "refused")
    assert "fabmanager" in deny.message
    assert act.history == [False]
    assert state_of(agent, PRINTER) == "idle"
    # Staff may badge: granted, and the foreign job's end does not end their session.
    present(agent, PRINTER, STAFF_UID)
    wait_until(lambda: state_of(agent, PRINTER) == "active", 5, "staff session")
    staff_session = agent.view(PRINTER).session.session_id
    octoprint_call(octoprint, lambda c: c.cancel())
    (job,) = wait_until(lambda: journaled(agent, JobEndedBody), 20, "job_ended journaled")
    assert (job.session_id, job.result, job.job) == (None, JobResult.CANCELLED, "porte-cles.gcode")
    wait_until(lambda: not agent.view(PRINTER).session.job_running, 15, "the printer idle")
    assert state_of(agent, PRINTER) == "active"  # never ended by a job it did not start
    assert agent.view(PRINTER).session.session_id == staff_session
    assert journaled(agent, SessionEndedBody) == []

    # The hub: alert resolved (kept), the job recorded unattributed, no job record left.
    wait_until(lambda: open_alerts(r.hub, PRINTER) == [], 10, "alert resolved")
    assert alerts_of(r.hub, PRINTER) == [("running_without_session", False)]
    wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 10, "acknowledged")
    with r.hub.factory() as s:
        (row,) = s.scalars(select(MachineJob).where(MachineJob.machine_id == PRINTER)).all()
        assert (row.session_id, row.member_id, row.job) == (None, None, "porte-cles.gcode")
    assert PRINTER not in hub.running_job_files()
    assert "running_without_session" in denied_codes(r.hub, PRINTER)


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
    assert ended.reason is EndReason.STAFF_CANCEL  # said as it happened: staff cancelled
    assert r.feedback(PRINTER, FeedbackKind.INFO)[-1].message == (
        "Un animateur a annulé ton travail : ta session est terminée."
    )
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


def kill(server: OctoPrintServer) -> None:
    process = server.process
    assert process is not None
    process.kill()  # OctoPrint dies mid-print
    process.wait(10)


def test_octoprint_killed_mid_print_is_a_fault_and_the_lost_print_is_said_lost(
    rig: Callable[..., Rig], octoprint: OctoPrintServer
) -> None:
    r = rig({"pi-a": 1})
    agent, follower = start_agent(r, octoprint)
    act = actuator_of(agent, PRINTER)
    session_id = badge_in(r, agent)
    gcode = dwell_gcode(120, heat=False, filament_mm=400.0)
    octoprint_call(octoprint, lambda c: c.upload("long.gcode", gcode, select=True))
    wait_until(lambda: follower.snapshot.filament_mm, 20, "OctoPrint's analysis")
    octoprint_call(octoprint, lambda c: c.start())
    wait_until(lambda: (follower.snapshot.progress_pct or 0) > 2, 30, "printing, some progress")

    kill(octoprint)
    killed = time.monotonic()
    wait_until(
        lambda: "printer_unreachable" in agent.view(PRINTER).faults, 15, "printer_unreachable"
    )
    wait_until(lambda: open_alerts(r.hub, PRINTER) == ["printer_unreachable"], 15, "alert")
    assert time.monotonic() - killed < 15
    wait_until(
        lambda: (
            (s := hub_state(r.hub, PRINTER)) is not None and s.availability is Availability.FAULT
        ),
        5,
        "the hub sees the fault",
    )
    (fault,) = journaled(agent, MachineFaultBody)
    assert fault.code == "printer_unreachable"
    # The member's print may go on from the printer's buffer: the power holds.
    advance(r.clock, [agent], 20 * 60)
    assert act.history[-1] is True
    assert state_of(agent, PRINTER) == "active"
    # Another member is refused on a printer whose OctoPrint is gone.
    present(agent, PRINTER, member_uid(2))
    wait_until(lambda: r.feedback(PRINTER, FeedbackKind.DENY), 5, "refused")

    octoprint.start()  # back, without the job: lost
    (job,) = wait_until(lambda: journaled(agent, JobEndedBody), 45, "job_ended journaled")
    assert (job.session_id, job.result, job.job) == (session_id, JobResult.LOST, "long.gcode")
    assert job.filament_estimated  # scaled from the progress last seen
    assert job.filament_mm is not None
    assert 0 < job.filament_mm < 400
    wait_until(lambda: state_of(agent, PRINTER) == "idle", 15, "the lost print ends the session")
    (ended,) = journaled(agent, SessionEndedBody)
    assert ended.reason is EndReason.JOB_LOST  # never "job_done" for a lost print
    said = [e.message for e in r.events if e.machine == PRINTER]
    assert "Ton travail a été perdu par la machine : préviens un animateur." in said
    assert not any("Travail terminé" in m for m in said)
    assert act.history == [False, True, False]
    # Healthy again: the fault alert resolves itself, its row kept.
    wait_until(lambda: open_alerts(r.hub, PRINTER) == [], 15, "alert resolved")
    assert alerts_of(r.hub, PRINTER) == [("printer_unreachable", False)]
    wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 10, "acknowledged")
    with r.hub.factory() as s:
        (row,) = s.scalars(select(MachineJob).where(MachineJob.machine_id == PRINTER)).all()
        assert (row.result, row.filament_estimated) == (JobResult.LOST, True)
    assert r.hub.sessions()[session_id].end_reason == EndReason.JOB_LOST


def test_octoprint_gone_too_long_cuts_the_power_with_an_alert(
    rig: Callable[..., Rig], octoprint: OctoPrintServer
) -> None:
    r = rig({"pi-a": 1})
    agent, follower = start_agent(r, octoprint, unreachable_hold_max_min=30)
    act = actuator_of(agent, PRINTER)
    session_id = badge_in(r, agent)
    octoprint_call(
        octoprint, lambda c: c.upload("long.gcode", dwell_gcode(120, heat=False), print_=True)
    )
    wait_until(lambda: agent.view(PRINTER).session.job_running, 10, "job running")
    wait_until(lambda: follower.snapshot.state == "Printing", 10, "printing")
    advance(r.clock, [agent], 5)
    present(agent, PRINTER, member_uid(1))  # badge-out mid-print
    wait_until(lambda: state_of(agent, PRINTER) == "ending", 5, "ending")

    kill(octoprint)
    wait_until(
        lambda: "printer_unreachable" in agent.view(PRINTER).faults, 15, "printer_unreachable"
    )
    advance(r.clock, [agent], 29 * 60)  # a job last seen running holds, for a while
    assert act.history[-1] is True
    assert state_of(agent, PRINTER) == "ending"
    advance(r.clock, [agent], 2 * 60)  # past the configured maximum: cut
    wait_until(lambda: state_of(agent, PRINTER) == "idle", 10, "cut after the maximum")
    assert act.history == [False, True, False]
    assert [f.code for f in journaled(agent, MachineFaultBody)] == [
        "printer_unreachable",
        "fault_hold_expired",
    ]
    (ended,) = journaled(agent, SessionEndedBody)
    assert (ended.session_id, ended.reason) == (session_id, EndReason.BADGE_OUT)
    assert ended.present_s is not None
    assert ended.present_s < ended.duration_s
    wait_until(
        lambda: (
            sorted(open_alerts(r.hub, PRINTER)) == ["fault_hold_expired", "printer_unreachable"]
        ),
        15,
        "alerts",
    )
    wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 10, "acknowledged")
    row = r.hub.sessions()[session_id]
    assert row.present_s == pytest.approx(ended.present_s)
    assert row.used_s == pytest.approx(ended.duration_s)
    octoprint.start()  # leave OctoPrint running for the next tests
    wait_until(lambda: follower.link_up, 45, "OctoPrint back")
    wait_until(lambda: open_alerts(r.hub, PRINTER) == ["fault_hold_expired"], 15, "resolved")


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
