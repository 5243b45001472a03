"""The pure session state machine, driven by a fake clock: no sleeps, no I/O."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import TypeVar

import pytest

from edge.clock import FakeClock
from edge.kinds.gaming_pc import GAMING_PC
from edge.kinds.laser import LASER
from edge.kinds.printer import PRINTER
from edge.offline import OfflineCode, OfflineVerdict
from edge.outcomes import CMD_EXPIRED, applied, refused
from edge.session import (
    Answer,
    Append,
    DecideOffline,
    DriverCommand,
    Effect,
    Feedback,
    FeedbackKind,
    JobReport,
    Lock,
    PowerOff,
    PowerOn,
    RequestAccess,
    SessionConfig,
    SessionMachine,
    State,
    Unlock,
)
from protocol.messages import (
    AccessDecision,
    BreakRule,
    EndReason,
    JobEndedBody,
    JobResult,
    JobStartedBody,
    MachineAction,
    MachineCommand,
    MachineFaultBody,
    OfflineDecisionBody,
    Outcome,
    SessionAction,
    SessionCommand,
    SessionEndedBody,
    SessionStartedBody,
    UsageTickBody,
)

ALICE = "a" * 64
BOB = "b" * 64
MACHINE = "m-1"
B = TypeVar("B")


class Rig:
    """One machine, a fake clock and the timeline of every effect it produced."""

    def __init__(self, config: SessionConfig | None = None, *, online: bool = True) -> None:
        self.clock = FakeClock()
        counter = itertools.count(1)
        self.machine = SessionMachine(MACHINE, config, new_id=lambda: f"id-{next(counter)}")
        self.timeline: list[tuple[float, Effect]] = []
        if online:
            self.machine.link(True, self.mono)

    def state(self) -> State:
        """The machine's state (a call, so type checkers do not narrow it for good)."""
        return self.machine.state

    @property
    def mono(self) -> float:
        return self.clock.monotonic()

    def record(self, effects: list[Effect]) -> list[Effect]:
        self.timeline += [(self.mono, e) for e in effects]
        return effects

    def badge(self, badge: str = ALICE) -> list[Effect]:
        return self.record(self.machine.badge(badge, self.mono))

    def decide(self, req_id: str, **kw: object) -> list[Effect]:
        now = self.clock.now()
        minutes = kw.pop("minutes", 60)
        assert isinstance(minutes, int | float)
        fields: dict[str, object] = {
            "req_id": req_id,
            "machine": MACHINE,
            "granted": True,
            "code": "granted",
            "message": "C'est parti !",
            "session_id": "s-1",
            "ends_at": now + timedelta(minutes=minutes),
            "not_after": now + timedelta(seconds=10),
        }
        fields.update(kw)
        decision = AccessDecision.model_validate(fields)
        return self.record(self.machine.decision(decision, self.mono, now))

    def start(self, badge: str = ALICE, **kw: object) -> list[Effect]:
        (request,) = self.badge(badge)
        assert isinstance(request, RequestAccess)
        return self.decide(request.req_id, **kw)

    def tick(self) -> list[Effect]:
        return self.record(self.machine.tick(self.mono))

    def advance(self, seconds: float) -> list[Effect]:
        """Let time pass, waking the machine exactly when it asks to be woken."""
        target = self.mono + seconds
        out: list[Effect] = []
        for _ in range(100_000):
            wake = self.machine.next_wakeup()
            if wake is None or wake > target:
                break
            self.clock.advance(max(0.0, wake - self.mono))
            out += self.tick()
        else:
            raise AssertionError("the machine keeps asking to be woken")
        self.clock.advance(target - self.mono)
        return out + self.tick()

    def session_cmd(self, action: SessionAction, cmd_id: str, **kw: object) -> list[Effect]:
        now = self.clock.now()
        fields: dict[str, object] = {
            "cmd_id": cmd_id,
            "session_id": "s-1",
            "action": action,
            "not_after": now + timedelta(seconds=10),
        }
        fields.update(kw)
        cmd = SessionCommand.model_validate(fields)
        return self.record(self.machine.session_command(cmd, self.mono, now))

    def machine_cmd(self, action: MachineAction, cmd_id: str, **kw: object) -> list[Effect]:
        now = self.clock.now()
        fields: dict[str, object] = {
            "cmd_id": cmd_id,
            "machine": MACHINE,
            "action": action,
            "not_after": now + timedelta(seconds=10),
        }
        fields.update(kw)
        cmd = MachineCommand.model_validate(fields)
        return self.record(self.machine.machine_command(cmd, self.mono, now))

    def when(self, predicate: Callable[[Effect], bool]) -> list[float]:
        """Monotonic times at which matching effects were produced."""
        return [t for t, e in self.timeline if predicate(e)]

    def all(self) -> list[Effect]:
        return [e for _, e in self.timeline]


def bodies(effects: list[Effect], cls: type[B]) -> list[B]:
    return [e.body for e in effects if isinstance(e, Append) and isinstance(e.body, cls)]


def only_ended(effects: list[Effect]) -> SessionEndedBody:
    (ended,) = bodies(effects, SessionEndedBody)
    return ended


def feedback(effects: list[Effect], kind: FeedbackKind) -> list[str]:
    return [e.message for e in effects if isinstance(e, Feedback) and e.kind is kind]


def index(effects: list[Effect], cls: type) -> int:
    return next(
        i
        for i, e in enumerate(effects)
        if isinstance(e, cls) or (isinstance(e, Append) and isinstance(e.body, cls))
    )


# --------------------------------------------------------------------------- grant


def test_a_grant_journals_before_switching_on() -> None:
    rig = Rig()
    (request,) = rig.badge()
    assert request == RequestAccess("id-1", ALICE)
    assert rig.state() is State.AWAITING_DECISION
    effects = rig.decide("id-1")
    assert [type(e) for e in effects] == [Append, PowerOn, Feedback]
    (started,) = bodies(effects, SessionStartedBody)
    assert (started.session_id, started.badge, started.req_id) == ("s-1", ALICE, "id-1")
    assert (started.offline, started.started_at) == (False, rig.clock.now())
    assert feedback(effects, FeedbackKind.GRANT) == ["C'est parti !"]
    assert rig.state() is State.ACTIVE
    assert rig.machine.session_id == "s-1"


def test_a_refusal_shows_the_hub_message_and_returns_to_idle() -> None:
    rig = Rig()
    rig.badge()
    effects = rig.decide(
        "id-1",
        granted=False,
        code="outside_slot",
        message="Ce n'est pas ton créneau.",
        session_id=None,
        ends_at=None,
    )
    assert effects == [Feedback(FeedbackKind.DENY, "Ce n'est pas ton créneau.")]
    assert rig.state() is State.IDLE


def test_a_full_session_ticks_warns_and_ends_on_time() -> None:
    rig = Rig()
    rig.start(minutes=30)
    start = rig.mono
    rig.advance(30 * 60 + 5)
    ticks = bodies(rig.all(), UsageTickBody)
    assert [t.minute for t in ticks] == list(range(1, 31))
    assert [t.elapsed_s for t in ticks] == [60.0 * k for k in range(1, 31)]
    tick_times = rig.when(lambda e: isinstance(e, Append) and isinstance(e.body, UsageTickBody))
    assert tick_times == [start + 60.0 * k for k in range(1, 31)]
    warn_times = rig.when(lambda e: isinstance(e, Feedback) and e.kind is FeedbackKind.WARN)
    assert warn_times == [start + 20 * 60, start + 28 * 60]
    assert feedback(rig.all(), FeedbackKind.WARN) == [
        "Plus que 10 minutes : pense à sauvegarder !",
        "Plus que 2 minutes : pense à sauvegarder !",
    ]
    ended = only_ended(rig.all())
    assert ended.reason is EndReason.TIME_UP
    assert ended.duration_s == 30 * 60
    assert rig.when(lambda e: isinstance(e, PowerOff)) == [start + 30 * 60]
    all_effects = rig.all()
    assert index(all_effects, SessionEndedBody) < index(all_effects, PowerOff)
    assert rig.state() is State.IDLE
    assert rig.machine.next_wakeup() is None


def test_hub_warning_times_replace_the_defaults() -> None:
    rig = Rig()
    now = rig.clock.now()
    rig.start(minutes=20, warn_at=[now + timedelta(minutes=15)])
    start = rig.mono
    rig.advance(20 * 60)
    warn_times = rig.when(lambda e: isinstance(e, Feedback) and e.kind is FeedbackKind.WARN)
    assert warn_times == [start + 15 * 60]
    assert feedback(rig.all(), FeedbackKind.WARN) == ["Plus que 5 minutes : pense à sauvegarder !"]


def test_badge_out_ends_with_the_exact_duration() -> None:
    rig = Rig()
    rig.start()
    rig.advance(5 * 60 + 30.25)
    effects = rig.badge()
    ended = only_ended(effects)
    assert (ended.reason, ended.duration_s) == (EndReason.BADGE_OUT, 330.25)
    assert ended.ended_at == rig.clock.now()
    assert [type(e) for e in effects] == [Append, PowerOff, Feedback]
    assert [t.minute for t in bodies(rig.all(), UsageTickBody)] == [1, 2, 3, 4, 5]


def test_ticks_missed_by_a_late_wakeup_are_caught_up_at_the_end() -> None:
    rig = Rig()
    rig.start()
    rig.clock.advance(185)  # the agent was busy: no tick for three minutes
    effects = rig.badge()
    assert [t.minute for t in bodies(effects, UsageTickBody)] == [1, 2, 3]
    assert index(effects, UsageTickBody) < index(effects, SessionEndedBody)
    assert only_ended(effects).duration_s == 185


def test_another_badge_cannot_end_someone_elses_session() -> None:
    rig = Rig()
    rig.start()
    rig.clock.advance(10)
    effects = rig.badge(BOB)
    assert feedback(effects, FeedbackKind.DENY)
    assert rig.state() is State.ACTIVE


# --------------------------------------------------------------------------- stale input


def test_a_decision_past_its_not_after_is_ignored() -> None:
    rig = Rig()
    rig.badge()
    now = rig.clock.now()
    assert rig.decide("id-1", not_after=now - timedelta(seconds=1)) == []
    assert rig.state() is State.AWAITING_DECISION
    rig.clock.advance(0.5)
    assert rig.tick() == [DecideOffline("id-1", ALICE)]
    assert PowerOn() not in rig.all()


@pytest.mark.parametrize(("req_id", "machine"), [("id-99", MACHINE), ("id-1", "m-2")])
def test_a_decision_for_another_request_or_machine_is_ignored(req_id: str, machine: str) -> None:
    rig = Rig()
    rig.badge()
    assert rig.decide(req_id, machine=machine) == []
    assert rig.state() is State.AWAITING_DECISION


def test_a_decision_when_nothing_was_asked_is_ignored() -> None:
    rig = Rig()
    assert rig.decide("id-1") == []
    assert rig.state() is State.IDLE


# --------------------------------------------------------------------------- offline


def offline_grant(rig: Rig, minutes: float = 45, *, staff: bool = False) -> OfflineVerdict:
    return OfflineVerdict(
        granted=True,
        code=OfflineCode.GRANTED_STAFF if staff else OfflineCode.GRANTED,
        message="Le serveur ne répond pas : accès hors-ligne accordé jusqu'à 15h45.",
        ends_at=rig.clock.now() + timedelta(minutes=minutes),
        staff=staff,
        snapshot_version=4,
    )


def test_no_decision_within_the_timeout_asks_for_an_offline_decision() -> None:
    rig = Rig()
    rig.badge()
    rig.clock.advance(0.49)
    assert rig.tick() == []
    assert rig.machine.next_wakeup() == pytest.approx(rig.mono + 0.01)
    rig.clock.advance(0.01)
    assert rig.tick() == [DecideOffline("id-1", ALICE)]
    assert rig.tick() == []  # asked once
    # The hub's answer now comes too late: the offline decision stands.
    rig.clock.advance(0.1)
    assert rig.decide("id-1") == []
    verdict = offline_grant(rig)
    effects = rig.record(rig.machine.offline_verdict("id-1", verdict, rig.mono, rig.clock.now()))
    assert [type(e) for e in effects] == [Append, Append, PowerOn, Feedback]
    (decision,) = bodies(effects, OfflineDecisionBody)
    (started,) = bodies(effects, SessionStartedBody)
    assert (decision.granted, decision.code, decision.snapshot_version) == (
        True,
        "offline_granted",
        4,
    )
    assert decision.session_id == started.session_id == "id-2"
    assert started.offline
    assert started.ends_at == verdict.ends_at
    rig.advance(45 * 60)
    assert only_ended(rig.all()).duration_s == 45 * 60


def test_with_the_hub_offline_a_badge_is_decided_offline_at_once() -> None:
    rig = Rig(online=False)
    assert rig.badge() == [DecideOffline("id-1", ALICE)]


def test_losing_the_link_while_waiting_decides_offline_at_once() -> None:
    rig = Rig()
    rig.badge()
    assert rig.record(rig.machine.link(False, rig.mono)) == [DecideOffline("id-1", ALICE)]


def test_an_offline_refusal_is_journaled_and_shown() -> None:
    rig = Rig(online=False)
    rig.badge()
    verdict = OfflineVerdict(False, OfflineCode.STAFF_ONLY, "Hors-ligne, seuls les animateurs…")
    effects = rig.machine.offline_verdict("id-1", verdict, rig.mono, rig.clock.now())
    (decision,) = bodies(effects, OfflineDecisionBody)
    assert (decision.granted, decision.code, decision.session_id) == (
        False,
        "offline_staff_only",
        None,
    )
    assert feedback(effects, FeedbackKind.DENY) == [verdict.message]
    assert rig.state() is State.IDLE


def test_an_offline_verdict_that_never_comes_gives_up() -> None:
    config = SessionConfig(decision_timeout_s=0.5, verdict_timeout_s=5.0)
    rig = Rig(config, online=False)
    rig.badge()
    effects = rig.advance(5.5)
    assert feedback(effects, FeedbackKind.DENY)
    assert rig.state() is State.IDLE
    assert rig.machine.offline_verdict("id-1", offline_grant(rig), rig.mono, rig.clock.now()) == []


# --------------------------------------------------------------------------- printers


def test_a_printer_is_never_cut_while_a_job_runs() -> None:
    rig = Rig(PRINTER.preset)
    rig.start(minutes=10)
    start = rig.mono
    rig.record(rig.machine.job_running(rig.mono))
    rig.advance(10 * 60)  # time up while printing
    assert rig.state() is State.ENDING
    # Nothing that happens while the job runs may cut the power.
    rig.clock.advance(2)
    rig.badge()
    rig.badge(BOB)
    rig.session_cmd(SessionAction.END, "c-1")
    rig.machine_cmd(MachineAction.MAINTENANCE_ON, "c-2")
    rig.record(rig.machine.idle_timeout(rig.mono))
    rig.record(rig.machine.fault("octoprint_error", "HTTP 502", rig.mono))
    rig.record(rig.machine.link(False, rig.mono))
    rig.advance(50 * 60)
    assert not any(isinstance(e, PowerOff) for e in rig.all())
    assert bodies(rig.all(), SessionEndedBody) == []
    assert (
        bodies(rig.all(), UsageTickBody)[-1].minute == (rig.mono - start) // 60
    )  # billing runs on
    # The job ends and the printer is idle: now the session ends and power goes off.
    effects = rig.record(rig.machine.job_done(rig.mono))
    ended = only_ended(effects)
    assert ended.reason is EndReason.TIME_UP
    assert ended.duration_s == rig.mono - start
    assert index(effects, SessionEndedBody) < index(effects, PowerOff)
    assert rig.state() is State.MAINTENANCE  # asked for while printing


def test_a_finished_print_ends_the_printer_session() -> None:
    rig = Rig(PRINTER.preset)
    rig.start()
    rig.record(rig.machine.job_running(rig.mono))
    rig.advance(25 * 60)
    effects = rig.record(rig.machine.job_done(rig.mono))
    ended = only_ended(effects)
    assert (ended.reason, ended.duration_s) == (EndReason.JOB_DONE, 25 * 60)
    assert PowerOff() in effects


# --------------------------------------------------------------------------- printer cool-down

COOL_S = 600.0


def printer(*, hot: bool = False, job: bool = False, minutes: float = 60) -> Rig:
    """A printer with an active session, its nozzle hot or not, a job running or not."""
    rig = Rig(replace(PRINTER.preset, cooldown_s=COOL_S))
    rig.start(minutes=minutes)
    if hot:
        assert rig.record(rig.machine.heat(True, rig.mono)) == []
    if job:
        (started,) = rig.record(rig.machine.job_started(rig.mono, "cube.gcode"))
        assert started == Append(
            JobStartedBody(machine="m-1", session_id="s-1", file_name="cube.gcode")
        )
    rig.clock.advance(5)  # past the badge debounce
    return rig


def started_at(rig: Rig) -> float:
    """When the session switched the machine on."""
    return rig.when(lambda e: isinstance(e, PowerOn))[0]


def heat(rig: Rig, hot: bool) -> list[Effect]:
    return rig.record(rig.machine.heat(hot, rig.mono))


def job_done(rig: Rig) -> list[Effect]:
    return rig.record(rig.machine.job_done(rig.mono))


def badge_out(rig: Rig) -> list[Effect]:
    return rig.badge()


def time_up(rig: Rig) -> list[Effect]:
    return rig.advance(60 * 60)


def staff_end(rig: Rig) -> list[Effect]:
    return rig.session_cmd(SessionAction.END, "c-end")


ENDINGS = {
    "badge_out": (badge_out, EndReason.BADGE_OUT),
    "time_up": (time_up, EndReason.TIME_UP),
    "staff": (staff_end, EndReason.STAFF),
}


@pytest.mark.parametrize("trigger", sorted(ENDINGS))  # whatever ended the session
@pytest.mark.parametrize(
    ("job", "hot", "held_until"),
    [
        (False, False, "now"),  # a cold printer with no job ends at once
        (False, True, "cooled"),  # heated without printing: on until the nozzle cooled
        (True, False, "job_done"),  # printing: never cut while the job runs...
        (True, True, "job_done+cooled"),  # ...then, if hot, until it has cooled
    ],
)
def test_a_printer_is_cut_only_without_a_job_and_cold(
    trigger: str, job: bool, hot: bool, held_until: str
) -> None:
    rig = printer(hot=hot, job=job)
    start = started_at(rig)
    rig.clock.advance(90)
    end, reason = ENDINGS[trigger]
    effects = end(rig)
    if held_until == "now":
        assert only_ended(effects).reason is reason
        assert PowerOff() in effects
        assert rig.state() is State.IDLE
        return
    # Held: the session waits in ending, the power stays on, billing runs on.
    assert rig.state() is State.ENDING
    assert bodies(effects, SessionEndedBody) == []
    assert feedback(effects, FeedbackKind.INFO)
    rig.advance(5 * 60)
    if "job_done" in held_until:
        assert rig.machine.view(rig.mono).cooling is False
        effects = job_done(rig)
        if held_until == "job_done":
            assert only_ended(effects).reason is reason
            assert PowerOff() in effects
            return
        assert effects == [] or not bodies(effects, SessionEndedBody)
        rig.advance(60)
    assert rig.state() is State.ENDING
    assert rig.machine.view(rig.mono).cooling is True
    assert not any(isinstance(e, PowerOff) for e in rig.all())
    effects = heat(rig, False)  # the nozzle went below the safe temperature
    ended = only_ended(effects)
    assert (ended.reason, ended.duration_s) == (reason, rig.mono - start)
    assert index(effects, SessionEndedBody) < index(effects, PowerOff)
    assert rig.state() is State.IDLE
    assert bodies(rig.all(), UsageTickBody)[-1].minute == (rig.mono - start) // 60


@pytest.mark.parametrize("trigger", sorted(ENDINGS))
def test_a_printer_that_stays_hot_is_cut_after_the_longest_cool_down(trigger: str) -> None:
    rig = printer(hot=True)
    end, reason = ENDINGS[trigger]
    end(rig)
    assert rig.state() is State.ENDING
    (ending_at,) = rig.when(lambda e: isinstance(e, Feedback) and e.kind is FeedbackKind.INFO)
    assert (rig.machine.next_wakeup() or 0) <= ending_at + COOL_S  # it asks to be woken
    rig.advance(ending_at + COOL_S - 1 - rig.mono)
    assert rig.state() is State.ENDING
    assert not any(isinstance(e, PowerOff) for e in rig.all())
    effects = rig.advance(1)
    assert only_ended(effects).reason is reason
    assert PowerOff() in effects
    assert rig.when(lambda e: isinstance(e, PowerOff)) == [ending_at + COOL_S]


def test_a_finished_print_ends_the_session_once_the_nozzle_has_cooled() -> None:
    rig = printer(hot=True, job=True)
    start = started_at(rig)
    rig.advance(25 * 60)
    effects = job_done(rig)
    assert rig.state() is State.ENDING
    assert feedback(effects, FeedbackKind.INFO) == [
        "Travail terminé : la machine refroidit, elle s'éteindra ensuite. Ta session est finie."
    ]
    assert rig.badge() == [
        Feedback(FeedbackKind.INFO, "La machine refroidit : elle s'éteindra dans quelques minutes.")
    ]
    assert rig.badge(BOB) == [Feedback(FeedbackKind.DENY, feedback_text_busy())]
    rig.advance(3 * 60)
    effects = heat(rig, False)
    ended = only_ended(effects)
    assert (ended.reason, ended.duration_s) == (EndReason.JOB_DONE, rig.mono - start)
    assert PowerOff() in effects


def feedback_text_busy() -> str:
    rig = Rig()
    rig.start()
    (refusal,) = rig.badge(BOB)
    assert isinstance(refusal, Feedback)
    return refusal.message


def test_a_new_job_during_the_cool_down_holds_the_printer_again() -> None:
    rig = printer(hot=True, job=True)
    job_done(rig)  # the print ended: cooling
    assert rig.machine.view(rig.mono).cooling
    rig.advance(60)
    rig.record(rig.machine.job_started(rig.mono))  # the member starts another print
    view = rig.machine.view(rig.mono)
    assert (view.state, view.cooling, view.job_running) == (State.ENDING, False, True)
    rig.advance(2 * COOL_S)  # no cool-down limit while a job runs
    heat(rig, False)
    assert rig.state() is State.ENDING
    assert not any(isinstance(e, PowerOff) for e in rig.all())
    effects = job_done(rig)  # done and cold: ends now
    assert only_ended(effects).reason is EndReason.JOB_DONE
    assert PowerOff() in effects


def test_temperature_changes_while_printing_change_nothing() -> None:
    rig = printer(job=True)
    for hot in (True, False, True):
        assert heat(rig, hot) == []
    assert rig.state() is State.ACTIVE


def test_maintenance_asked_while_cooling_follows_the_cool_down() -> None:
    rig = printer(hot=True)
    rig.badge()
    assert rig.machine_cmd(MachineAction.MAINTENANCE_ON, "c-m") == [applied("c-m")]
    assert rig.state() is State.ENDING
    effects = heat(rig, False)
    assert only_ended(effects).reason is EndReason.BADGE_OUT
    assert rig.state() is State.MAINTENANCE


def test_without_a_cool_down_a_hot_printer_ends_at_once() -> None:
    rig = Rig(replace(PRINTER.preset, cooldown_s=0))
    rig.start()
    heat(rig, True)
    rig.clock.advance(5)
    effects = rig.badge()
    assert only_ended(effects).reason is EndReason.BADGE_OUT
    assert PowerOff() in effects


def test_a_laser_ignores_the_temperature() -> None:
    rig = Rig(LASER.preset)
    rig.start()
    heat(rig, True)
    rig.clock.advance(5)
    assert PowerOff() in rig.badge()


def test_the_agent_stopping_cuts_a_cooling_printer() -> None:
    rig = printer(hot=True)
    rig.badge()
    effects = rig.record(rig.machine.shutdown(rig.mono))
    assert only_ended(effects).reason is EndReason.EDGE_RESTART
    assert PowerOff() in effects


# --------------------------------------------------------------------------- jobs

REPORT = JobReport(name="cube.gcode", result=JobResult.DONE, duration_s=1520.5, filament_mm=812.4)


def job_ended(rig: Rig, report: JobReport = REPORT) -> list[Effect]:
    return rig.record(rig.machine.job_ended(report, rig.mono, rig.clock.now()))


def test_a_job_is_journaled_for_the_session_open_when_it_started() -> None:
    rig = printer(job=True)
    rig.badge()  # badge-out mid-print: the session waits for the job
    assert rig.state() is State.ENDING
    effects = job_ended(rig)
    (body,) = bodies(effects, JobEndedBody)
    assert effects == [Append(body)]  # journaled alone: the power waits for job_done
    assert body.model_dump() == {
        "session_id": "s-1",
        "machine": MACHINE,
        "job": "cube.gcode",
        "result": JobResult.DONE,
        "duration_s": 1520.5,
        "filament_mm": 812.4,
        "filament_estimated": False,
        "ended_at": rig.clock.now(),
        "user": None,  # not started from OctoPrint's page by a known user
    }
    assert rig.state() is State.ENDING
    assert only_ended(job_done(rig)).reason is EndReason.BADGE_OUT


def test_a_job_that_outlives_its_session_still_belongs_to_it() -> None:
    rig = printer(job=True)
    rig.record(rig.machine.shutdown(rig.mono))  # the session closes, the print goes on
    (body,) = bodies(job_ended(rig), JobEndedBody)
    assert body.session_id == "s-1"


@pytest.mark.parametrize("seen_start", [True, False])
def test_a_job_without_a_session_is_journaled_without_one(seen_start: bool) -> None:
    rig = Rig(PRINTER.preset)
    if seen_start:
        rig.record(rig.machine.job_started(rig.mono))  # started from OctoPrint by staff
    else:
        rig.record(rig.machine.job_running(rig.mono))  # found running (start not seen)
    report = replace(REPORT, result=JobResult.CANCELLED, filament_mm=None)
    (body,) = bodies(job_ended(rig, report), JobEndedBody)
    assert (body.session_id, body.result, body.filament_mm) == (None, "cancelled", None)


def test_the_next_job_is_not_attributed_to_an_ended_session() -> None:
    rig = printer(job=True)
    job_ended(rig)
    job_done(rig)  # ends the session (cold)
    assert rig.state() is State.IDLE
    rig.record(rig.machine.job_started(rig.mono))
    (body,) = bodies(job_ended(rig), JobEndedBody)
    assert body.session_id is None


def test_a_job_report_is_clamped_to_what_the_protocol_accepts() -> None:
    rig = printer()
    report = JobReport(name="x" * 300, result=JobResult.LOST, duration_s=-1.0)
    (body,) = bodies(job_ended(rig, report), JobEndedBody)
    assert (len(body.job), body.duration_s) == (200, 0.0)


# --------------------------------------------------------------------------- foreign and lost jobs


def test_a_job_started_with_nobody_badged_runs_without_a_session() -> None:
    rig = Rig(PRINTER.preset)
    (started,) = rig.record(rig.machine.job_started(rig.mono, "porte-cles.gcode"))
    assert started == Append(
        JobStartedBody(machine=MACHINE, session_id=None, file_name="porte-cles.gcode")
    )
    view = rig.machine.view(rig.mono)
    assert (view.state, view.job_running, view.foreign_job) == (State.IDLE, True, True)
    # A member the hub grants anyway (a race) is refused on the edge; staff is not.
    (refusal,) = rig.start()
    assert isinstance(refusal, Feedback)
    assert refusal.kind is FeedbackKind.DENY
    assert "fabmanager" in refusal.message
    assert rig.state() is State.IDLE
    effects = rig.start(staff=True)
    assert PowerOn() in effects
    # The foreign job ends: the staff session goes on (it did not start that job).
    job_ended(rig, replace(REPORT, name="porte-cles.gcode"))
    assert rig.record(rig.machine.job_done(rig.mono)) == []
    assert rig.state() is State.ACTIVE
    assert not rig.machine.view(rig.mono).foreign_job


def test_a_job_found_running_with_no_session_is_foreign_and_one_in_a_session_is_not() -> None:
    rig = Rig(PRINTER.preset)
    rig.record(rig.machine.job_running(rig.mono))  # a plug drawing power, a laser in Run
    assert rig.machine.view(rig.mono).foreign_job
    rig.record(rig.machine.job_done(rig.mono))
    assert not rig.machine.view(rig.mono).foreign_job
    rig.start()
    rig.record(rig.machine.job_running(rig.mono))
    assert not rig.machine.view(rig.mono).foreign_job


def test_an_offline_grant_is_refused_on_a_foreign_job_unless_staff() -> None:
    rig = Rig(PRINTER.preset, online=False)
    rig.record(rig.machine.job_started(rig.mono, "x.gcode"))
    (decide,) = rig.badge()
    assert isinstance(decide, DecideOffline)
    verdict = offline_grant(rig)
    effects = rig.record(
        rig.machine.offline_verdict(decide.req_id, verdict, rig.mono, rig.clock.now())
    )
    (record,) = bodies(effects, OfflineDecisionBody)
    assert (record.granted, record.code) == (False, "offline_running_without_session")
    rig.clock.advance(5)
    (decide,) = rig.badge()
    verdict = offline_grant(rig, staff=True)
    effects = rig.record(
        rig.machine.offline_verdict(decide.req_id, verdict, rig.mono, rig.clock.now())
    )
    assert PowerOn() in effects


@pytest.mark.parametrize(
    ("result", "cancel", "reason"),
    [
        (JobResult.DONE, False, EndReason.JOB_DONE),
        (JobResult.LOST, False, EndReason.JOB_LOST),
        (JobResult.FAILED, False, EndReason.FAULT),
        (JobResult.CANCELLED, True, EndReason.STAFF_CANCEL),
        (JobResult.CANCELLED, False, EndReason.JOB_DONE),
    ],
)
def test_the_end_reason_says_how_the_session_s_job_ended(
    result: JobResult, cancel: bool, reason: EndReason
) -> None:
    rig = printer(job=True)
    if cancel:
        rig.machine_cmd(MachineAction.CANCEL, "c-1")
    job_ended(rig, replace(REPORT, result=result))
    effects = job_done(rig)
    assert only_ended(effects).reason is reason
    (text,) = [e.message for e in effects if isinstance(e, Feedback)]
    assert ("Travail terminé" in text) is (reason is EndReason.JOB_DONE)


def test_presence_ends_when_the_member_leaves_not_when_the_job_does() -> None:
    rig = printer(job=True)
    rig.advance(10 * 60)
    rig.badge()  # badge-out mid-print, 10 min 5 s after the start
    rig.advance(50 * 60)
    ended = only_ended(job_done(rig))
    assert ended.reason is EndReason.BADGE_OUT
    assert ended.present_s == pytest.approx(10 * 60 + 5)
    assert ended.duration_s == pytest.approx(60 * 60 + 5)


def test_a_fault_holds_a_printer_at_most_its_limit_then_cuts_with_a_record() -> None:
    rig = Rig(replace(PRINTER.preset, fault_hold_max_s=30 * 60))
    rig.start(minutes=120)
    rig.record(rig.machine.job_started(rig.mono, "long.gcode"))
    effects = rig.record(
        rig.machine.fault("printer_unreachable", "OctoPrint unreachable", rig.mono)
    )
    assert PowerOff() not in effects
    assert not any(isinstance(e, PowerOff) for e in rig.advance(29 * 60))
    effects = rig.advance(60)
    faults = bodies(effects, MachineFaultBody)
    assert [f.code for f in faults] == ["fault_hold_expired"]
    assert only_ended(effects).reason is EndReason.FAULT
    assert effects[-2:][0] == PowerOff() or PowerOff() in effects
    assert rig.state() is State.IDLE
    # A fault that clears in time changes nothing.
    rig2 = Rig(replace(PRINTER.preset, fault_hold_max_s=30 * 60))
    rig2.start(minutes=120)
    rig2.record(rig2.machine.fault("printer_unreachable", "", rig2.mono))
    rig2.advance(10 * 60)
    rig2.record(rig2.machine.fault_cleared(rig2.mono))
    assert not any(isinstance(e, PowerOff) for e in rig2.advance(60 * 60))


# --------------------------------------------------------------------------- lasers


def test_a_laser_fault_cuts_at_once_and_nothing_but_a_new_grant_restarts_it() -> None:
    rig = Rig(LASER.preset)
    rig.start()
    rig.advance(90)
    effects = rig.record(rig.machine.fault("exhaust", "filter pressure low", rig.mono))
    assert isinstance(effects[0], PowerOff)  # cut before anything is written
    (fault,) = bodies(effects, MachineFaultBody)
    assert (fault.code, fault.detail) == ("exhaust", "filter pressure low")
    ended = only_ended(effects)
    assert (ended.reason, ended.duration_s) == (EndReason.FAULT, 90)
    assert rig.state() is State.IDLE
    mark = len(rig.timeline)
    # Time, commands, link changes and new badges while the fault lasts: never on.
    rig.advance(3600)
    rig.session_cmd(SessionAction.EXTEND, "c-1", minutes=30)
    rig.record(rig.machine.link(False, rig.mono))
    rig.record(rig.machine.link(True, rig.mono))
    rig.clock.advance(5)
    assert feedback(rig.badge(), FeedbackKind.DENY)
    assert not any(isinstance(e, PowerOn) for _, e in rig.timeline[mark:])
    # A request already in flight when the fault came is refused too.
    rig.record(rig.machine.fault_cleared(rig.mono))
    rig.clock.advance(5)
    rig.badge(BOB)
    rig.record(rig.machine.fault("exhaust", "", rig.mono))
    assert feedback(rig.decide("id-2"), FeedbackKind.DENY)
    assert not any(isinstance(e, PowerOn) for _, e in rig.timeline[mark:])
    # Cleared, then a new grant: on again.
    rig.record(rig.machine.fault_cleared(rig.mono))
    rig.clock.advance(5)
    assert PowerOn() in rig.start(BOB)


def test_a_lasting_fault_is_journaled_once_and_cut_at_every_report() -> None:
    rig = Rig(LASER.preset)
    for _ in range(3):
        rig.record(rig.machine.fault("grbl_alarm", "ALARM:1", rig.mono))
        rig.clock.advance(1)
    assert len(bodies(rig.all(), MachineFaultBody)) == 1
    assert rig.all().count(PowerOff()) == 3
    rig.record(rig.machine.fault_cleared(rig.mono))
    rig.record(rig.machine.fault("grbl_alarm", "ALARM:2", rig.mono))
    assert [f.detail for f in bodies(rig.all(), MachineFaultBody)] == ["ALARM:1", "ALARM:2"]


def test_a_printer_fault_is_journaled_and_the_print_goes_on() -> None:
    rig = Rig(PRINTER.preset)
    rig.start()
    rig.record(rig.machine.job_running(rig.mono))
    effects = rig.record(rig.machine.fault("octoprint_error", "HTTP 502", rig.mono))
    assert [f.code for f in bodies(effects, MachineFaultBody)] == ["octoprint_error"]
    assert feedback(effects, FeedbackKind.WARN)
    assert rig.state() is State.ACTIVE
    assert PowerOff() not in effects


def test_a_laser_session_is_cut_when_the_link_stays_lost() -> None:
    rig = Rig(LASER.preset)
    rig.start()
    rig.advance(60)
    rig.record(rig.machine.link(False, rig.mono))
    rig.advance(20)
    rig.record(rig.machine.link(True, rig.mono))  # back within the grace: nothing happens
    rig.advance(20)
    assert rig.state() is State.ACTIVE
    rig.record(rig.machine.link(False, rig.mono))
    lost_at = rig.mono
    rig.advance(60)
    ended = only_ended(rig.all())
    assert ended.reason is EndReason.LINK_LOST
    assert rig.when(lambda e: isinstance(e, PowerOff)) == [lost_at + 30]


def test_staff_keep_a_laser_without_the_link() -> None:
    rig = Rig(LASER.preset)
    rig.start(staff=True)
    rig.record(rig.machine.link(False, rig.mono))
    rig.advance(10 * 60)
    assert rig.state() is State.ACTIVE


# --------------------------------------------------------------------------- staff


def test_staff_extend_is_deduplicated_by_cmd_id() -> None:
    rig = Rig()
    rig.start(minutes=30)
    start = rig.mono
    rig.advance(25 * 60)
    first = rig.session_cmd(SessionAction.EXTEND, "c-1", minutes=15)
    assert feedback(first, FeedbackKind.INFO) == ["Session prolongée de 15 minutes."]
    rig.clock.advance(1)
    assert rig.session_cmd(SessionAction.EXTEND, "c-1", minutes=15) == []  # QoS 1 duplicate
    rig.advance(30 * 60)
    assert only_ended(rig.all()).duration_s == 45 * 60
    # The warnings were re-armed for the new end.
    warn_times = rig.when(lambda e: isinstance(e, Feedback) and e.kind is FeedbackKind.WARN)
    assert warn_times == [start + 20 * 60, start + 35 * 60, start + 43 * 60]


def test_staff_end_is_deduplicated_and_stale_commands_are_answered() -> None:
    rig = Rig()
    rig.start()
    rig.advance(120)
    now = rig.clock.now()
    stale = rig.session_cmd(SessionAction.END, "c-0", not_after=now - timedelta(seconds=1))
    assert stale == [Answer("c-0", Outcome.EXPIRED, "expired", CMD_EXPIRED)]
    (other,) = rig.session_cmd(SessionAction.END, "c-1", session_id="other")
    assert isinstance(other, Answer)
    assert (other.outcome, other.code) == (Outcome.REFUSED, "unknown_session")
    assert other.reason == "Cette session n'est pas (ou plus) en cours sur cette machine."
    effects = rig.session_cmd(SessionAction.END, "c-2")
    assert only_ended(effects).reason is EndReason.STAFF
    assert effects[-1] == applied("c-2")  # answered after the journal and the power cut
    assert rig.session_cmd(SessionAction.END, "c-2") == []  # a duplicate is not answered
    assert len(bodies(rig.all(), SessionEndedBody)) == 1
    # The session is over: a further command is refused, with why.
    (late,) = rig.session_cmd(SessionAction.EXTEND, "c-3", minutes=5)
    assert isinstance(late, Answer)
    assert (late.outcome, late.code) == (Outcome.REFUSED, "unknown_session")


def test_staff_warning_shows_their_message() -> None:
    rig = Rig()
    rig.start()
    effects = rig.session_cmd(SessionAction.WARN, "c-1", message="On range dans 5 minutes !")
    assert effects == [Feedback(FeedbackKind.WARN, "On range dans 5 minutes !"), applied("c-1")]


def test_maintenance_ends_the_session_and_refuses_badges_until_lifted() -> None:
    rig = Rig()
    rig.start()
    rig.advance(60)
    effects = rig.machine_cmd(MachineAction.MAINTENANCE_ON, "c-1")
    assert only_ended(effects).reason is EndReason.STAFF
    assert PowerOff() in effects
    assert rig.state() is State.MAINTENANCE
    rig.clock.advance(2)
    assert feedback(rig.badge(BOB), FeedbackKind.DENY)
    assert rig.machine_cmd(MachineAction.MAINTENANCE_OFF, "c-1") == []  # duplicate id
    assert rig.state() is State.MAINTENANCE
    rig.machine_cmd(MachineAction.MAINTENANCE_OFF, "c-2")
    assert rig.state() is State.IDLE
    rig.clock.advance(2)
    assert rig.badge(BOB) == [RequestAccess("id-2", BOB)]


@pytest.mark.parametrize(
    "action", [MachineAction.PAUSE, MachineAction.RESUME, MachineAction.CANCEL]
)
def test_print_commands_go_to_the_driver(action: MachineAction) -> None:
    rig = Rig(PRINTER.preset)
    assert rig.machine_cmd(action, "c-1", by=7) == [DriverCommand("c-1", action, 7)]
    assert rig.machine_cmd(action, "c-1") == []
    assert rig.machine_cmd(action, "c-2", machine="m-2") == [refused("c-2", "unknown_machine")]


def test_idle_timeout_ends_the_session() -> None:
    rig = Rig()
    rig.start()
    rig.advance(600)
    effects = rig.record(rig.machine.idle_timeout(rig.mono))
    assert only_ended(effects).reason is EndReason.IDLE


# --------------------------------------------------------------------------- gaming


def test_a_gaming_pc_is_locked_never_powered() -> None:
    rig = Rig(GAMING_PC.preset)
    effects = rig.start(minutes=15)
    assert Unlock() in effects
    rig.advance(15 * 60)
    assert only_ended(rig.all()).reason is EndReason.TIME_UP
    assert Lock() in rig.all()
    assert not any(isinstance(e, PowerOn | PowerOff) for e in rig.all())


def test_a_forced_break_ends_the_session_and_holds_the_player_back() -> None:
    rig = Rig(GAMING_PC.preset)
    rig.start(minutes=120, break_rule=BreakRule(play_min=50, break_min=10))
    start = rig.mono
    rig.advance(50 * 60)
    warn_times = rig.when(lambda e: isinstance(e, Feedback) and e.kind is FeedbackKind.WARN)
    assert warn_times[:2] == [start + 40 * 60, start + 48 * 60]
    assert feedback(rig.all(), FeedbackKind.WARN)[0] == (
        "Pause obligatoire dans 10 minutes : pense à sauvegarder !"
    )
    ended = only_ended(rig.all())
    assert (ended.reason, ended.duration_s) == (EndReason.BREAK, 50 * 60)
    assert rig.when(lambda e: isinstance(e, Lock)) == [start + 50 * 60]
    assert rig.state() is State.ON_BREAK
    rig.advance(5 * 60)
    assert feedback(rig.badge(), FeedbackKind.DENY) == [
        "Pause obligatoire : reviens dans 5 minutes."
    ]
    rig.advance(5 * 60)
    assert (
        feedback(rig.all(), FeedbackKind.INFO)[-1]
        == "La pause est finie : tu peux badger à nouveau."
    )
    assert rig.state() is State.IDLE
    assert rig.badge() == [RequestAccess("id-2", ALICE)]


def test_a_grant_that_ends_at_the_break_ends_as_a_break_announced_as_one() -> None:
    """The hub caps a 9-15 grant at the break (50 min of play): it is a break, not time up."""
    rig = Rig(GAMING_PC.preset)
    now = rig.clock.now()
    rig.start(
        minutes=50,
        break_rule=BreakRule(play_min=50, break_min=10),
        break_at=now + timedelta(minutes=50),
        warn_at=[now + timedelta(minutes=40), now + timedelta(minutes=48)],
    )
    start = rig.mono
    rig.advance(50 * 60)
    warnings = feedback(rig.all(), FeedbackKind.WARN)
    assert warnings[:2] == [
        "Pause obligatoire dans 10 minutes : pense à sauvegarder !",
        "Pause obligatoire dans 2 minutes : pense à sauvegarder !",
    ]
    assert rig.when(lambda e: isinstance(e, Feedback) and e.kind is FeedbackKind.WARN)[:2] == [
        start + 40 * 60,
        start + 48 * 60,
    ]
    ended = only_ended(rig.all())
    assert (ended.reason, ended.duration_s) == (EndReason.BREAK, 50 * 60)
    assert rig.state() is State.ON_BREAK
    assert feedback(rig.badge(), FeedbackKind.DENY) == [
        "Pause obligatoire : reviens dans 10 minutes."
    ]


def test_the_hubs_break_time_counts_play_before_this_session() -> None:
    """30 min played on another PC: the hub says the break comes in 20 min, not 50."""
    rig = Rig(GAMING_PC.preset)
    now = rig.clock.now()
    rig.start(
        minutes=60,
        break_rule=BreakRule(play_min=50, break_min=10),
        break_at=now + timedelta(minutes=20),
    )
    start = rig.mono
    rig.advance(20 * 60)
    assert only_ended(rig.all()).reason is EndReason.BREAK
    assert rig.when(lambda e: isinstance(e, Lock)) == [start + 20 * 60]


def test_without_the_hubs_break_time_a_grant_ending_at_play_min_is_a_break() -> None:
    rig = Rig(GAMING_PC.preset)
    rig.start(minutes=50, break_rule=BreakRule(play_min=50, break_min=10))
    rig.advance(50 * 60)
    assert only_ended(rig.all()).reason is EndReason.BREAK


def test_another_player_may_use_the_machine_during_a_break() -> None:
    rig = Rig(GAMING_PC.preset)
    rig.start(minutes=60, break_rule=BreakRule(play_min=20, break_min=15))
    rig.advance(21 * 60)
    assert rig.state() is State.ON_BREAK
    assert rig.badge(BOB) == [RequestAccess("id-2", BOB)]
    assert Unlock() in rig.decide("id-2", session_id="s-2")


def test_a_staff_break_uses_its_minutes() -> None:
    rig = Rig(GAMING_PC.preset)
    rig.start()
    rig.advance(300)
    effects = rig.session_cmd(SessionAction.BREAK, "c-1", minutes=3)
    assert only_ended(effects).reason is EndReason.BREAK
    assert rig.machine.next_wakeup() == rig.mono + 180


# --------------------------------------------------------------------------- clocks


@pytest.mark.parametrize("jump_s", [-3600.0, 7200.0, -1e9])
def test_wall_clock_jumps_do_not_move_the_deadline(jump_s: float) -> None:
    rig = Rig()
    rig.start(minutes=30)
    start, started_at = rig.mono, rig.clock.now()
    rig.advance(600)
    rig.clock.jump_wall(jump_s)
    rig.advance(30 * 60)
    ended = only_ended(rig.all())
    assert ended.duration_s == 30 * 60
    assert rig.when(lambda e: isinstance(e, PowerOff)) == [start + 30 * 60]
    assert ended.ended_at == started_at + timedelta(minutes=30)


def test_a_grant_already_over_is_refused() -> None:
    rig = Rig()
    rig.badge()
    effects = rig.decide("id-1", minutes=-1)
    assert feedback(effects, FeedbackKind.DENY)
    assert PowerOn() not in effects
    assert rig.state() is State.IDLE


def test_waking_every_second_or_only_when_asked_gives_the_same_story() -> None:
    config = replace(GAMING_PC.preset, warn_before_min=(10, 2))
    rule = BreakRule(play_min=30, break_min=5)
    by_wakeup, by_second = Rig(config), Rig(config)
    for rig in (by_wakeup, by_second):
        rig.start(minutes=50, break_rule=rule)
    by_wakeup.advance(60 * 60)
    for _ in range(60 * 60):
        by_second.clock.advance(1)
        by_second.tick()
    assert by_wakeup.timeline == by_second.timeline
    assert len(bodies(by_wakeup.all(), UsageTickBody)) == 30


def test_the_view_reports_the_remaining_time() -> None:
    rig = Rig()
    rig.start(minutes=30)
    rig.advance(600)
    view = rig.machine.view(rig.mono)
    assert (view.state, view.session_id, view.badge) == (State.ACTIVE, "s-1", ALICE)
    assert view.remaining_s == 20 * 60
