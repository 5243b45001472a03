"""The session state machine of one machine: pure, no I/O, no threads, no clock.

Every input is a method call carrying the current monotonic time (and the wall time
when the input has a ``not_after`` or starts a session); every method returns the
list of :data:`Effect` values the agent must execute **in order**. Enabling effects
always follow the journal entry that justifies them (``Append`` before ``PowerOn``);
a fault on a machine that cuts on fault is the one exception, where ``PowerOff``
comes first because cutting power is always safe and must not wait for an fsync.

States::

    idle ──badge──▶ awaiting_decision ──grant──▶ active ──end──▶ idle
      ▲                 │  (timeout: DecideOffline)   │  │
      └──deny/stale─────┘                             │  └─job running or hot──▶ ending ──┐
    on_break ◀──break (play_min reached / staff)──────┘     (job done, then cooled) ──▶ idle ◀┘
    maintenance ◀──maintenance_on (any state; an active session ends first)

* The grant's ``ends_at`` becomes a monotonic deadline once, at grant time: a wall
  clock jump or a lost network never extends a session.
* A ``usage_tick`` is journaled at every full minute of a session (also while a
  printer finishes its job in ``ending``), with ``elapsed_s`` on the minute.
* ``session_ended`` carries the exact monotonic duration and an :class:`EndReason`.
* Warnings default to 10 and 2 minutes before the end (or the hub's ``warn_at``), and
  before a forced break.
* A forced break ends the session (reason ``break``) so that metered time is play
  time only; the player's badge is refused on this machine until the break is over
  (the hub enforces it everywhere else), other players may use the machine.
* A 3D printer (``hold_while_job``) is never switched off while a job runs: its
  session waits in ``ending`` and ends when the driver reports the job done and the
  printer idle.
* A machine with a cool-down (``cooldown_s``, 3D printers: heat creep clogs a hot
  nozzle whose fan stops) is never switched off while the agent reports it hot
  (:meth:`SessionMachine.heat`): a session that ends (job done, badge-out, time up…)
  waits in ``ending`` until it has cooled or ``cooldown_s`` has passed, then ends
  with the reason it was ending for. A cold machine with no job ends at once.
* Jobs are attributed to the session open when they started
  (:meth:`~SessionMachine.job_started`); :meth:`~SessionMachine.job_ended` journals
  one ``job_ended`` per job the driver reports ended (the driver removes its own
  duplicates), before anything acts on it.
* A laser (``cut_on_fault``) is cut at once on a fault and is never switched on again
  without a new grant; while the fault lasts no grant switches it on.
* Decisions and commands past their ``not_after``, for an unknown request or
  session, or already seen (``cmd_id``), are ignored. Seen command ids are kept in
  memory only: commands live ten seconds, so a restart cannot replay an old one.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from edge.clock import mono_deadline, wall_estimate
from edge.effects import (
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
    Unlock,
)
from edge.offline import OfflineVerdict
from edge.outcomes import CMD_EXPIRED, refused
from edge.sessionconfig import Actuation, SessionConfig, SessionStatus, State
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

logger = logging.getLogger(__name__)

__all__ = [
    "Actuation",
    "Answer",
    "Append",
    "DecideOffline",
    "DriverCommand",
    "Effect",
    "Feedback",
    "FeedbackKind",
    "JobReport",
    "Lock",
    "PowerOff",
    "PowerOn",
    "RequestAccess",
    "SessionConfig",
    "SessionMachine",
    "SessionStatus",
    "State",
    "Unlock",
]


# --------------------------------------------------------------------------- helpers


class _RecentIds:
    """The last ``size`` command ids seen, to drop QoS 1 duplicates."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, cmd_id: str) -> bool:
        """Remember ``cmd_id``; False when it was already known."""
        if cmd_id in self._ids:
            self._ids.move_to_end(cmd_id)
            return False
        self._ids[cmd_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True


@dataclass(slots=True)
class _Pending:
    req_id: str
    badge: str
    asked_mono: float
    offline: bool = False  # DecideOffline was emitted: the hub's answer is now ignored


@dataclass(frozen=True, order=True, slots=True)
class _Warning:
    at: float
    minutes: int
    before_break: bool = False


@dataclass(slots=True)
class _Session:
    session_id: str
    badge: str
    offline: bool
    staff: bool
    started_mono: float
    started_wall: datetime
    deadline: float
    break_rule: BreakRule | None
    #: The hub's break time (monotonic): its count of continuous play in the zone.
    hub_break_at: float | None = None
    break_at: float | None = None
    break_min: int | None = None
    warnings: list[_Warning] = field(default_factory=list)
    minutes: int = 0
    ending: EndReason | None = None
    #: While ``ending`` and cooling: when power goes off even if still hot.
    cool_until: float | None = None
    #: The member's presence (s): from the start until the session was asked to end.
    present_s: float | None = None


def _new_id() -> str:
    return uuid.uuid4().hex


def _minutes(n: int) -> str:
    return f"{n} minute" if n == 1 else f"{n} minutes"


# --------------------------------------------------------------------------- texts
# Plain French, "tu", short enough for a reader screen.

_BUSY: Final = "Cette machine est déjà utilisée par quelqu'un. Choisis-en une autre qui est libre."
_MAINTENANCE: Final = (
    "Cette machine est en maintenance. Choisis-en une autre ou demande à un animateur."
)
_FAULTED: Final = "Cette machine est en défaut : préviens un animateur."
_PENDING: Final = "Un instant, une demande est déjà en cours sur cette machine."
_NO_ANSWER: Final = "Pas de réponse pour l'instant : badge à nouveau dans un moment."
_TOO_LATE: Final = "Ton temps est déjà écoulé : demande à un animateur."
_ENDING: Final = "Session terminée : le travail en cours continue, la machine s'éteindra à la fin."
_STILL_ENDING: Final = "Le travail en cours continue : la machine s'éteindra à la fin."
_COOLING: Final = "Session terminée : la machine refroidit, elle s'éteindra ensuite."
_JOB_DONE_COOLING: Final = (
    "Travail terminé : la machine refroidit, elle s'éteindra ensuite. Ta session est finie."
)
_STILL_COOLING: Final = "La machine refroidit : elle s'éteindra dans quelques minutes."
_BREAK_OVER: Final = "La pause est finie : tu peux badger à nouveau."
_STAFF_WARN: Final = "Un animateur te demande de terminer bientôt : pense à sauvegarder."
_FAULT_HOLD: Final = "Un défaut est signalé sur cette machine : préviens un animateur."
_FOREIGN: Final = (
    "Un travail tourne sur cette machine sans session : demande à un fabmanager de s'en occuper."
)
_THEN_COOLING: Final = " La machine refroidit, elle s'éteindra ensuite."

_END_TEXTS: Final[dict[EndReason, str]] = {
    EndReason.BADGE_OUT: "Session terminée. À bientôt !",
    EndReason.TIME_UP: "Temps écoulé : ta session est terminée.",
    EndReason.STAFF: "Un animateur a terminé ta session.",
    EndReason.JOB_DONE: "Travail terminé : ta session est finie.",
    EndReason.IDLE: "Machine inutilisée depuis un moment : ta session est terminée.",
    EndReason.FAULT: "Défaut machine : la machine est coupée. Préviens un animateur.",
    EndReason.LINK_LOST: "Connexion au serveur perdue : la machine est coupée par sécurité.",
    EndReason.JOB_LOST: "Ton travail a été perdu par la machine : préviens un animateur.",
    EndReason.STAFF_CANCEL: "Un animateur a annulé ton travail : ta session est terminée.",
}

#: How the end of the session's own job ends it (a print that did not finish is
#: never "Travail terminé").
_JOB_END_REASONS: Final[dict[JobResult, EndReason]] = {
    JobResult.DONE: EndReason.JOB_DONE,
    JobResult.CANCELLED: EndReason.JOB_DONE,  # cancelled at the machine by its user
    JobResult.FAILED: EndReason.FAULT,
    JobResult.LOST: EndReason.JOB_LOST,
}


def _warning_text(w: _Warning) -> str:
    if w.before_break:
        return f"Pause obligatoire dans {_minutes(w.minutes)} : pense à sauvegarder !"
    return f"Plus que {_minutes(w.minutes)} : pense à sauvegarder !"


def _break_text(minutes_left: int) -> str:
    return f"Pause obligatoire : reviens dans {_minutes(minutes_left)}."


# --------------------------------------------------------------------------- machine


class SessionMachine:
    """The pure session state machine of one machine (see the module docstring).

    ``new_id`` makes request and offline session ids (uuid4 hex by default; tests
    pass a counter). The machine starts ``idle`` with the hub considered offline
    until :meth:`link` says otherwise.
    """

    def __init__(
        self,
        machine: str,
        config: SessionConfig | None = None,
        *,
        new_id: Callable[[], str] = _new_id,
    ) -> None:
        self.machine = machine
        self.config = config if config is not None else SessionConfig()
        self._new_id = new_id
        self._state = State.IDLE
        self._pending: _Pending | None = None
        self._session: _Session | None = None
        self._job_running = False
        self._hot = False
        #: Session open when the running job started (``None``: none, or not seen).
        self._job_session: str | None = None
        #: Session the running job belongs to, until the machine is idle (job_done).
        self._job_owner: str | None = None
        #: The running job was started (or found running) with no session open.
        self._job_foreign = False
        #: How the running job ended (set by ``job_ended``, used at ``job_done``).
        self._job_end: EndReason | None = None
        #: Staff asked to cancel the running job.
        self._cancel_asked = False
        self._faulted = False
        #: When the current fault episode started (monotonic), and whether its hold
        #: (``fault_hold_max_s``) already ran out.
        self._faulted_since: float | None = None
        self._hold_expired = False
        self._maintenance_after = False
        self._hub_online = False
        self._link_down_since: float | None = None
        self._break_badge: str | None = None
        self._break_until = 0.0
        self._seen_cmds = _RecentIds()

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def session_id(self) -> str | None:
        """The running (or ending) session, if any."""
        return self._session.session_id if self._session is not None else None

    def view(self, mono: float) -> SessionStatus:
        """A snapshot of the machine for its retained state."""
        s = self._session
        remaining = None
        if s is not None and self._state is State.ACTIVE:
            remaining = max(0.0, s.deadline - mono)
        return SessionStatus(
            machine=self.machine,
            state=self._state,
            session_id=s.session_id if s else None,
            badge=s.badge if s else None,
            offline=s.offline if s else False,
            staff=s.staff if s else False,
            remaining_s=remaining,
            job_running=self._job_running,
            faulted=self._faulted,
            cooling=s is not None and self._state is State.ENDING and s.cool_until is not None,
            foreign_job=self.foreign_job,
        )

    @property
    def foreign_job(self) -> bool:
        """A job holds the machine that was started with no session open."""
        return self._job_running and self._job_foreign

    def next_wakeup(self) -> float | None:
        """The monotonic time of the next timed transition, so the agent can sleep."""
        cfg = self.config
        if self._state is State.AWAITING_DECISION and self._pending is not None:
            p = self._pending
            extra = cfg.verdict_timeout_s if p.offline else 0.0
            return p.asked_mono + cfg.decision_timeout_s + extra
        if self._state is State.ON_BREAK:
            return self._break_until
        s = self._session
        if s is None:
            return None
        times = [s.started_mono + (s.minutes + 1) * cfg.tick_s]
        hold_until = self._fault_hold_until()
        if hold_until is not None:
            times.append(hold_until)
        if self._state is State.ACTIVE:
            times.append(s.deadline)
            if s.break_at is not None:
                times.append(s.break_at)
            if s.warnings:
                times.append(s.warnings[0].at)
            if self._link_cut_applies(s) and self._link_down_since is not None:
                times.append(self._link_down_since + cfg.link_grace_s)
        elif self._state is State.ENDING and s.cool_until is not None:
            times.append(s.cool_until)
        return min(times)

    # ------------------------------------------------------------------ inputs

    def link(self, online: bool, mono: float) -> list[Effect]:
        """The hub became reachable or unreachable (``hub/status`` and the MQTT link)."""
        if online == self._hub_online:
            return []
        self._hub_online = online
        self._link_down_since = None if online else mono
        p = self._pending
        if not online and p is not None and not p.offline:
            # No answer can come now: decide at once rather than after the timeout.
            p.offline = True
            return [DecideOffline(p.req_id, p.badge)]
        return []

    def badge(self, badge: str, mono: float) -> list[Effect]:
        """A badge (its keyed hash) was presented at this machine.

        The reader already counts a badge held on it, or tapped twice, once
        (``debounce_s`` of the reader, :class:`devices.readers.Debouncer`).
        """
        state = self._state
        if state is State.MAINTENANCE:
            return [Feedback(FeedbackKind.DENY, _MAINTENANCE)]
        if state in (State.IDLE, State.ON_BREAK):
            return self._request(badge, mono)
        if state is State.AWAITING_DECISION:
            if self._pending is not None and badge == self._pending.badge:
                return []
            return [Feedback(FeedbackKind.INFO, _PENDING)]
        s = self._session
        assert s is not None
        if badge != s.badge:
            return [Feedback(FeedbackKind.DENY, _BUSY)]
        if state is State.ENDING:
            text = _STILL_COOLING if s.cool_until is not None else _STILL_ENDING
            return [Feedback(FeedbackKind.INFO, text)]
        return self._end(EndReason.BADGE_OUT, mono)

    def decision(self, decision: AccessDecision, mono: float, wall: datetime) -> list[Effect]:
        """The hub answered an access request."""
        p = self._pending
        if p is None or decision.req_id != p.req_id:
            logger.info(
                "%s: decision for unknown request %s ignored", self.machine, decision.req_id
            )
            return []
        if decision.machine != self.machine:
            logger.warning(
                "%s: decision %s names machine %s: ignored",
                self.machine,
                decision.req_id,
                decision.machine,
            )
            return []
        if wall > decision.not_after:
            logger.warning(
                "%s: decision %s arrived after its not_after: ignored", self.machine, p.req_id
            )
            return []
        if p.offline:
            logger.info(
                "%s: hub decision %s came after the offline decision: ignored",
                self.machine,
                p.req_id,
            )
            return []
        self._pending = None
        if not decision.granted:
            self._state = self._rest_state(mono)
            return [Feedback(FeedbackKind.DENY, decision.message)]
        if self._faulted:
            self._state = self._rest_state(mono)
            return [Feedback(FeedbackKind.DENY, _FAULTED)]
        if self.foreign_job and not decision.staff:
            self._state = self._rest_state(mono)
            return [Feedback(FeedbackKind.DENY, _FOREIGN)]
        assert decision.session_id is not None
        assert decision.ends_at is not None
        return self._start(
            session_id=decision.session_id,
            badge=p.badge,
            req_id=p.req_id,
            offline=False,
            staff=decision.staff,
            ends_at=decision.ends_at,
            warn_at=decision.warn_at,
            break_rule=decision.break_rule,
            break_at=decision.break_at,
            message=decision.message,
            mono=mono,
            wall=wall,
        )

    def offline_verdict(
        self, req_id: str, verdict: OfflineVerdict, mono: float, wall: datetime
    ) -> list[Effect]:
        """The agent decided offline after :class:`DecideOffline`; journal and apply it."""
        p = self._pending
        if p is None or p.req_id != req_id or not p.offline:
            logger.info("%s: offline verdict for unknown request %s ignored", self.machine, req_id)
            return []
        self._pending = None
        refused_by_fault = verdict.granted and self._faulted
        refused_by_job = verdict.granted and self.foreign_job and not verdict.staff
        granted = (
            verdict.granted
            and verdict.ends_at is not None
            and not refused_by_fault
            and not refused_by_job
        )
        code = str(verdict.code)
        if refused_by_fault:
            code = "offline_machine_fault"
        elif refused_by_job:
            code = "offline_running_without_session"
        session_id = self._new_id() if granted else None
        record = Append(
            OfflineDecisionBody(
                req_id=req_id,
                machine=self.machine,
                badge=p.badge,
                granted=granted,
                code=code,
                session_id=session_id,
                ends_at=verdict.ends_at if granted else None,
                snapshot_version=verdict.snapshot_version,
            )
        )
        if not granted:
            self._state = self._rest_state(mono)
            message = verdict.message
            if refused_by_fault:
                message = _FAULTED
            elif refused_by_job:
                message = _FOREIGN
            return [record, Feedback(FeedbackKind.DENY, message)]
        assert session_id is not None
        assert verdict.ends_at is not None
        return [
            record,
            *self._start(
                session_id=session_id,
                badge=p.badge,
                req_id=req_id,
                offline=True,
                staff=verdict.staff,
                ends_at=verdict.ends_at,
                warn_at=(),
                break_rule=None if verdict.staff else self.config.offline_break_rule,
                message=verdict.message,
                mono=mono,
                wall=wall,
            ),
        ]

    def tick(self, mono: float) -> list[Effect]:
        """Time passed: decision timeout, usage ticks, warnings, breaks, end of time."""
        cfg = self.config
        if self._state is State.AWAITING_DECISION and self._pending is not None:
            p = self._pending
            if not p.offline and mono >= p.asked_mono + cfg.decision_timeout_s:
                logger.info(
                    "%s: no decision within %.1f s: deciding offline",
                    self.machine,
                    cfg.decision_timeout_s,
                )
                p.offline = True
                return [DecideOffline(p.req_id, p.badge)]
            if p.offline and mono >= p.asked_mono + cfg.decision_timeout_s + cfg.verdict_timeout_s:
                logger.error(
                    "%s: no offline verdict for %s: request dropped", self.machine, p.req_id
                )
                self._pending = None
                self._state = self._rest_state(mono)
                return [Feedback(FeedbackKind.DENY, _NO_ANSWER)]
            return []
        if self._state is State.ON_BREAK:
            if mono >= self._break_until:
                self._state = State.IDLE
                return [Feedback(FeedbackKind.INFO, _BREAK_OVER)]
            return []
        s = self._session
        if s is None:
            return []
        effects: list[Effect] = self._usage_ticks(s, mono)
        hold_until = self._fault_hold_until()
        if hold_until is not None and mono >= hold_until:
            return effects + self._fault_hold_expired(s, mono)
        if self._state is State.ENDING and s.cool_until is not None and mono >= s.cool_until:
            logger.warning(
                "%s: still hot %.0f s after the session ended: power cut anyway",
                self.machine,
                self.config.cooldown_s,
            )
            return effects + self._finish(s.ending or EndReason.JOB_DONE, mono)
        if self._state is not State.ACTIVE:
            return effects
        if (
            self._link_cut_applies(s)
            and self._link_down_since is not None
            and mono >= self._link_down_since + cfg.link_grace_s
        ):
            return effects + self._end(EndReason.LINK_LOST, mono)
        if s.break_at is not None and mono >= s.break_at:
            return effects + self._end(EndReason.BREAK, mono)
        if mono >= s.deadline:
            return effects + self._end(EndReason.TIME_UP, mono)
        due = [w for w in s.warnings if w.at <= mono]
        if due:
            s.warnings = [w for w in s.warnings if w.at > mono]
            effects.append(Feedback(FeedbackKind.WARN, _warning_text(due[-1])))
        return effects

    def session_command(self, cmd: SessionCommand, mono: float, wall: datetime) -> list[Effect]:
        """Staff or hub command about the running session (end, extend, warn, break).

        Every command is answered (:class:`Answer`), except a duplicate delivery."""
        early = self._accept_command(cmd.cmd_id, cmd.not_after, wall)
        if early is not None:
            return early
        s = self._session
        if s is None or cmd.session_id != s.session_id:
            logger.info(
                "%s: command %s for session %s not running here: refused",
                self.machine,
                cmd.cmd_id,
                cmd.session_id,
            )
            return [refused(cmd.cmd_id, "unknown_session")]
        if self._state is not State.ACTIVE:
            return [refused(cmd.cmd_id, "not_active")]
        done = Answer(cmd.cmd_id, Outcome.APPLIED)
        if cmd.action is SessionAction.END:
            return [*self._end(EndReason.STAFF, mono), done]
        if cmd.action is SessionAction.WARN:
            return [Feedback(FeedbackKind.WARN, cmd.message or _STAFF_WARN), done]
        if cmd.action is SessionAction.BREAK:
            rule_min = s.break_rule.break_min if s.break_rule else self.config.default_break_min
            s.break_min = cmd.minutes or rule_min
            return [*self._end(EndReason.BREAK, mono), done]
        # EXTEND
        if cmd.minutes is None:
            logger.warning(
                "%s: extend command %s without minutes: refused", self.machine, cmd.cmd_id
            )
            return [refused(cmd.cmd_id, "bad_command")]
        s.deadline += cmd.minutes * 60
        self._plan(s, mono, hub_warnings=None)
        return [Feedback(FeedbackKind.INFO, f"Session prolongée de {_minutes(cmd.minutes)}."), done]

    def machine_command(self, cmd: MachineCommand, mono: float, wall: datetime) -> list[Effect]:
        """Staff command about the machine (maintenance here; pause, resume, cancel and
        re-arm go to the driver, whose kind answers them)."""
        if cmd.machine != self.machine:
            logger.warning(
                "%s: command %s for machine %s: ignored", self.machine, cmd.cmd_id, cmd.machine
            )
            return [refused(cmd.cmd_id, "unknown_machine")]
        early = self._accept_command(cmd.cmd_id, cmd.not_after, wall)
        if early is not None:
            return early
        done = Answer(cmd.cmd_id, Outcome.APPLIED)
        if cmd.action is MachineAction.MAINTENANCE_ON:
            return [*self.maintenance(True, mono), done]
        if cmd.action is MachineAction.MAINTENANCE_OFF:
            return [*self.maintenance(False, mono), done]
        if cmd.action is MachineAction.CANCEL and self._job_running:
            self._cancel_asked = True
        return [DriverCommand(cmd.cmd_id, cmd.action, cmd.by)]

    def maintenance(self, on: bool, mono: float) -> list[Effect]:
        """Put the machine in or out of maintenance; a running session ends first (staff)."""
        if not on:
            self._maintenance_after = False
            if self._state is State.MAINTENANCE:
                self._state = State.IDLE
            return []
        if self._state is State.MAINTENANCE:
            return []
        if self._state is State.ACTIVE:
            self._maintenance_after = True
            return self._end(EndReason.STAFF, mono)
        if self._state is State.ENDING:
            self._maintenance_after = True
            return []
        self._pending = None
        self._state = State.MAINTENANCE
        return self._cut()

    def job_running(self, mono: float) -> list[Effect]:
        """The driver reports a job (a print, a laser run, a plug drawing power) in
        progress: hold the power. A job found running with no session open runs
        without a session (:attr:`foreign_job`); one found during a session is
        taken as the session's."""
        if not self._job_running:
            self._job_owner = self.session_id
            self._job_foreign = self._job_owner is None
        self._job_running = True
        if self._session is not None:
            self._session.cool_until = None  # a new job holds; cooling starts after it
        return []

    def job_started(self, mono: float, file_name: str = "") -> list[Effect]:
        """A job started now: it belongs to the session open now (if any), and runs.

        Journaled (``job_started``, with the file name for staff) before anything
        acts on it; with no session open the machine runs without a session.
        """
        self._job_session = self._job_owner = self.session_id
        self._job_foreign = self._job_owner is None
        self._job_end = None
        self._cancel_asked = False
        self._job_running = True
        if self._session is not None:
            self._session.cool_until = None
        if self._job_foreign:
            logger.warning("%s: a job started with no session open", self.machine)
        body = JobStartedBody(
            machine=self.machine, session_id=self._job_owner, file_name=file_name[:200] or None
        )
        return [Append(body)]

    def job_ended(self, report: JobReport, mono: float, wall: datetime) -> list[Effect]:
        """A job ended (done, failed, cancelled, lost): journal it for its session.

        Power is not released here: the driver reports :meth:`job_done` once the
        machine is idle (a printer finishing its end script still holds).
        """
        session_id, self._job_session = self._job_session, None
        reason = _JOB_END_REASONS.get(report.result, EndReason.JOB_DONE)
        if report.result is JobResult.CANCELLED and self._cancel_asked:
            reason = EndReason.STAFF_CANCEL
        self._job_end = reason
        body = JobEndedBody(
            session_id=session_id,
            machine=self.machine,
            job=report.name[:200],
            result=report.result,
            duration_s=min(max(0.0, report.duration_s), 7 * 24 * 3600),
            filament_mm=report.filament_mm,
            filament_estimated=report.filament_estimated and report.filament_mm is not None,
            ended_at=wall,
            user=report.user,
        )
        logger.info(
            "%s: job %r %s after %.0f s (session %s)",
            self.machine,
            body.job,
            body.result,
            body.duration_s,
            session_id,
        )
        return [Append(body)]

    def job_done(self, mono: float) -> list[Effect]:
        """The driver reports no job any more and the machine idle: power may go.

        Only the session's own job ends it (``end_on_job_done``): a job started
        with no session (or in an earlier one) never ends a session granted since.
        """
        owner, reason = self._job_owner, self._job_end or EndReason.JOB_DONE
        self._job_running = self._job_foreign = self._cancel_asked = False
        self._job_owner = self._job_end = None
        s = self._session
        if s is None:
            return []
        if self._state is State.ENDING:
            return self._after_job(s, mono)
        if (
            self._state is State.ACTIVE
            and self.config.end_on_job_done
            and owner is not None
            and owner == s.session_id
        ):
            return self._end(reason, mono)
        return []

    def heat(self, hot: bool, mono: float) -> list[Effect]:
        """The agent reports the machine hot (nozzle above its safe temperature) or cooled."""
        self._hot = hot
        s = self._session
        if (
            not hot
            and s is not None
            and self._state is State.ENDING
            and s.cool_until is not None
            and not self._job_running
        ):
            return self._finish(s.ending or EndReason.JOB_DONE, mono)
        return []

    def idle_timeout(self, mono: float) -> list[Effect]:
        """The driver saw the machine unused for its idle timeout."""
        if self._state is State.ACTIVE and not self._job_running:
            return self._end(EndReason.IDLE, mono)
        return []

    def fault(self, code: str, detail: str, mono: float) -> list[Effect]:
        """The machine reports a fault (alarm, exhaust failure, lost controller).

        One ``machine_fault`` is journaled per fault episode: drivers that report the
        fault at every poll do not fill the SD card; a machine that cuts on fault is
        switched off again at every report.
        """
        if self._faulted:
            return [self._off()] if self.config.cut_on_fault else []
        self._faulted = True
        self._faulted_since, self._hold_expired = mono, False
        record = Append(
            MachineFaultBody(machine=self.machine, code=(code or "fault")[:64], detail=detail[:500])
        )
        s = self._session
        if not self.config.cut_on_fault:
            effects: list[Effect] = [record]
            if s is not None:
                effects.append(Feedback(FeedbackKind.WARN, _FAULT_HOLD))
            return effects
        logger.warning("%s: fault %s: power cut", self.machine, code)
        effects = [self._off(), record]
        if s is not None:
            effects += self._finish(EndReason.FAULT, mono, already_off=True)
        return effects

    def fault_cleared(self, mono: float) -> list[Effect]:
        """The fault is gone; the machine may be granted again (it stays off)."""
        self._faulted = False
        self._faulted_since, self._hold_expired = None, False
        return []

    def shutdown(self, mono: float) -> list[Effect]:
        """The agent stops: end the session (``edge_restart``, exact duration), switch off.

        A pending request is forgotten (a late decision finds no request). The
        journal then holds no open session, so the next start has nothing to close.
        """
        self._pending = None
        if self._session is not None:
            return self._finish(EndReason.EDGE_RESTART, mono)
        if self._state is State.AWAITING_DECISION:
            self._state = self._rest_state(mono)
        return [self._off()]

    # ------------------------------------------------------------------ internals

    def _fault_hold_until(self) -> float | None:
        """When a fault that holds the power stops holding it (``fault_hold_max_s``)."""
        limit = self.config.fault_hold_max_s
        if (
            limit is None
            or self.config.cut_on_fault
            or self._faulted_since is None
            or self._hold_expired
            or self._session is None
        ):
            return None
        return self._faulted_since + limit

    def _fault_hold_expired(self, s: _Session, mono: float) -> list[Effect]:
        """A fault lasted ``fault_hold_max_s``: journal it (an alert), cut, end the session."""
        self._hold_expired = True
        limit = self.config.fault_hold_max_s or 0.0
        logger.warning("%s: fault still there after %.0f s: power cut anyway", self.machine, limit)
        record = Append(
            MachineFaultBody(
                machine=self.machine,
                code="fault_hold_expired",
                detail=f"fault still there after {round(limit / 60)} min: power cut",
            )
        )
        # The job (if any) can no longer hold the power; its end, if the driver ever
        # reports it, is still journaled for its session.
        self._job_running = False
        reason = s.ending if self._state is State.ENDING and s.ending else EndReason.FAULT
        return [record, *self._finish(reason, mono)]

    def _request(self, badge: str, mono: float) -> list[Effect]:
        if self._faulted:
            return [Feedback(FeedbackKind.DENY, _FAULTED)]
        if badge == self._break_badge and mono < self._break_until:
            left = max(1, round((self._break_until - mono) / 60))
            return [Feedback(FeedbackKind.DENY, _break_text(left))]
        p = _Pending(self._new_id(), badge, mono, offline=not self._hub_online)
        self._pending = p
        self._state = State.AWAITING_DECISION
        if p.offline:
            return [DecideOffline(p.req_id, badge)]
        return [RequestAccess(p.req_id, badge)]

    def _start(
        self,
        *,
        session_id: str,
        badge: str,
        req_id: str,
        offline: bool,
        staff: bool,
        ends_at: datetime,
        warn_at: tuple[datetime, ...],
        break_rule: BreakRule | None,
        message: str,
        mono: float,
        wall: datetime,
        break_at: datetime | None = None,
    ) -> list[Effect]:
        deadline = mono_deadline(ends_at, mono, wall)
        if deadline <= mono:
            self._state = self._rest_state(mono)
            return [Feedback(FeedbackKind.DENY, _TOO_LATE)]
        s = _Session(
            session_id=session_id,
            badge=badge,
            offline=offline,
            staff=staff,
            started_mono=mono,
            started_wall=wall,
            deadline=deadline,
            break_rule=break_rule,
            hub_break_at=mono_deadline(break_at, mono, wall) if break_at is not None else None,
        )
        hub_warnings = [mono_deadline(w, mono, wall) for w in warn_at] or None
        self._plan(s, mono, hub_warnings)
        self._session = s
        self._state = State.ACTIVE
        logger.info(
            "%s: session %s started (%s), %.0f s granted",
            self.machine,
            session_id,
            "offline" if offline else "online",
            deadline - mono,
        )
        started = SessionStartedBody(
            session_id=session_id,
            machine=self.machine,
            badge=badge,
            req_id=req_id,
            offline=offline,
            started_at=wall,
            ends_at=ends_at,
        )
        return [Append(started), self._on(), Feedback(FeedbackKind.GRANT, message)]

    def _plan(self, s: _Session, mono: float, hub_warnings: list[float] | None) -> None:
        """(Re)compute the break time and the future warnings of ``s``.

        The break is the hub's ``break_at`` (it counts play before this session too),
        else ``play_min`` after the start (offline grants). A break at the grant's end
        *is* its end: the session then ends as a break, announced as one.
        """
        s.break_at = None
        if s.break_rule is not None:
            at = s.hub_break_at
            if at is None:
                at = s.started_mono + s.break_rule.play_min * 60
            if at <= s.deadline:
                s.break_at, s.break_min = at, s.break_rule.break_min
        if s.break_at is not None and s.break_at >= s.deadline:
            ends = []
        elif hub_warnings is not None:
            ends = [_Warning(at, max(1, round((s.deadline - at) / 60))) for at in hub_warnings]
        else:
            ends = [_Warning(s.deadline - m * 60, m) for m in self.config.warn_before_min]
        breaks = []
        if s.break_at is not None:
            breaks = [
                _Warning(s.break_at - m * 60, m, before_break=True)
                for m in self.config.warn_before_min
            ]
        s.warnings = sorted(w for w in ends + breaks if w.at > mono)

    def _usage_ticks(self, s: _Session, mono: float) -> list[Effect]:
        """One ``usage_tick`` per full minute elapsed since the last one."""
        tick_s = self.config.tick_s
        ticks: list[Effect] = []
        while mono >= s.started_mono + (s.minutes + 1) * tick_s:
            s.minutes += 1
            ticks.append(
                Append(
                    UsageTickBody(
                        session_id=s.session_id,
                        machine=self.machine,
                        minute=s.minutes,
                        elapsed_s=s.minutes * tick_s,
                    )
                )
            )
        return ticks

    def _end(self, reason: EndReason, mono: float) -> list[Effect]:
        """End the active session, or wait in ``ending`` while a job runs or it cools."""
        s = self._session
        assert s is not None
        if self.config.hold_while_job and self._job_running:
            s.ending = reason
            self._state = State.ENDING
            logger.info(
                "%s: session %s ends (%s) once the job is done", self.machine, s.session_id, reason
            )
            s.present_s = mono - s.started_mono
            return [*self._usage_ticks(s, mono), Feedback(FeedbackKind.INFO, _ENDING)]
        if self._must_cool():
            s.ending = reason
            self._state = State.ENDING
            s.cool_until = mono + self.config.cooldown_s
            s.present_s = mono - s.started_mono
            logger.info("%s: session %s ends (%s) once cooled", self.machine, s.session_id, reason)
            if reason is EndReason.JOB_DONE:
                text = _JOB_DONE_COOLING
            elif reason in (EndReason.JOB_LOST, EndReason.STAFF_CANCEL, EndReason.FAULT):
                text = _END_TEXTS[reason] + _THEN_COOLING
            else:
                text = _COOLING
            return [*self._usage_ticks(s, mono), Feedback(FeedbackKind.INFO, text)]
        return self._finish(reason, mono)

    def _after_job(self, s: _Session, mono: float) -> list[Effect]:
        """In ``ending``, the job is over: cool down if hot, else finish now."""
        if self._must_cool():
            s.cool_until = mono + self.config.cooldown_s
            logger.info("%s: job done, waiting for the machine to cool", self.machine)
            return self._usage_ticks(s, mono)
        return self._finish(s.ending or EndReason.JOB_DONE, mono)

    def _must_cool(self) -> bool:
        return self.config.cooldown_s > 0 and self._hot

    def _finish(self, reason: EndReason, mono: float, *, already_off: bool = False) -> list[Effect]:
        """Journal ``session_ended`` with the exact duration, then switch off."""
        s = self._session
        assert s is not None
        effects = self._usage_ticks(s, mono)
        self._session = None
        duration = mono - s.started_mono
        present = duration if s.present_s is None else min(s.present_s, duration)
        effects.append(
            Append(
                SessionEndedBody(
                    session_id=s.session_id,
                    machine=self.machine,
                    reason=reason,
                    duration_s=duration,
                    present_s=present,
                    ended_at=wall_estimate(mono, s.started_mono, s.started_wall),
                )
            )
        )
        if not already_off:
            effects += self._cut()
        logger.info(
            "%s: session %s ended (%s) after %.1f s", self.machine, s.session_id, reason, duration
        )
        if self._maintenance_after:
            self._maintenance_after = False
            self._state = State.MAINTENANCE
            effects.append(Feedback(FeedbackKind.INFO, _END_TEXTS[EndReason.STAFF]))
        elif reason is EndReason.BREAK:
            minutes = s.break_min or self.config.default_break_min
            self._break_badge, self._break_until = s.badge, mono + minutes * 60
            self._state = State.ON_BREAK
            effects.append(Feedback(FeedbackKind.WARN, _break_text(minutes)))
        else:
            self._state = State.IDLE
            bad_news = reason in (EndReason.FAULT, EndReason.JOB_LOST)
            kind = FeedbackKind.WARN if bad_news else FeedbackKind.INFO
            effects.append(Feedback(kind, _END_TEXTS.get(reason, "Session terminée.")))
        return effects

    def _accept_command(
        self, cmd_id: str, not_after: datetime, wall: datetime
    ) -> list[Effect] | None:
        """``None``: carry the command out; else what to do instead (nothing for a
        duplicate delivery, which was answered the first time; ``expired`` for a late one)."""
        if not self._seen_cmds.add(cmd_id):
            logger.debug("%s: duplicate command %s ignored", self.machine, cmd_id)
            return []
        if wall > not_after:
            logger.warning(
                "%s: command %s arrived after its not_after: ignored", self.machine, cmd_id
            )
            return [Answer(cmd_id, Outcome.EXPIRED, "expired", CMD_EXPIRED)]
        return None

    def _link_cut_applies(self, s: _Session) -> bool:
        return self.config.cut_on_link_loss and not self._hub_online and not (s.offline or s.staff)

    def _rest_state(self, mono: float) -> State:
        """Idle, or on break while the last player's break lasts."""
        if self._break_badge is not None and mono < self._break_until:
            return State.ON_BREAK
        return State.IDLE

    def _on(self) -> Effect:
        return Unlock() if self.config.actuation is Actuation.LOCK else PowerOn()

    def _off(self) -> Effect:
        return Lock() if self.config.actuation is Actuation.LOCK else PowerOff()

    def _cut(self) -> list[Effect]:
        """Switch off, unless a job runs on a machine that must hold while it does."""
        if self.config.hold_while_job and self._job_running:
            return []
        return [self._off()]
