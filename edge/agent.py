"""The edge agent: badge to machine in milliseconds, exact usage through any outage.

One :class:`Agent` per edge id (a Raspberry Pi or a gaming PC) serves the machines of
its :class:`~edge.settings.EdgeSettings`. Who runs where:

* **the agent thread** owns the :class:`~edge.session.SessionMachine` of every
  machine, the output devices (relays, plugs, PC locks), the journal writes and
  the journal sender. It takes inputs from one queue, feeds them to the session
  machines and executes the returned effects **in order**: an ``Append`` is
  committed (fsync) to the journal before the ``PowerOn`` that follows it; it calls
  ``tick()`` when a machine's ``next_wakeup()`` is due; it publishes each machine's
  retained state when its availability changes, and telemetry every few seconds.
* **reader threads** (one per machine) post badges to the queue;
* **paho's network thread** (:mod:`edge.link`) posts decisions, commands, journal
  acknowledgements, policy snapshots and the hub's status to the same queue;
* **drivers** (GRBL reader thread, the OctoPrint loop) trip a laser's latch on their
  own thread and post faults and job signals: a printer's job events and the changes
  of its snapshot (job, nozzle temperature) are posted the moment OctoPrint pushes
  them (:class:`~edge.machines.PrinterWatch`).

Machines (see ``docs/machines.md``): a printer's ``job_ended`` is journaled for the
session open when the job started, before anything acts on it; its power is held
while OctoPrint reports a job and while the nozzle is hot (cool-down, in the session
machine). A laser's ``session_ended`` carries ``run_s``, its beam-on time during the
session (difference of the GRBL driver's run-time meter between start and end). A
generic machine with ``busy_above_w`` follows its plug's power at every telemetry
(``tele_interval_s``): busy above the threshold, and ``idle_timeout_min`` below it
ends the session. Printers publish telemetry every second while in use, printing
or hot (and OctoPrint is followed), the others and idle printers every
``tele_interval_s``.

Start and stop (DESIGN §4, research §3.4):

1. the journal is opened and sessions a crash left open are closed
   (``edge_restart``, duration of their last minute tick) **before** any actuator
   is touched;
2. every output device is opened, which switches it off (or locks the PC);
3. readers, drivers, the link and the agent thread start.

Stopping ends running sessions (``edge_restart``, exact duration), switches every
machine off, waits up to ``drain_timeout_s`` for the hub to acknowledge the journal,
publishes the machines offline and says goodbye on the link. An unexpected error
in the agent thread switches everything off and ends the process with an error;
a crash that runs no code at all is covered by the wiring (normally-open relays).

Every hub→edge message passes the :class:`~edge.intake.Intake` first (its MAC under
this edge's own key, its ``not_after``); what fails is dropped and counted on the
edge's status. Journal sending (DESIGN §3) is the :class:`~edge.outbox.Outbox`'s, and the policy
snapshot in use (verified, cached in a file) the :class:`~edge.policystore.PolicyStore`'s;
both run on the agent thread, which keeps the order of effects: never act on what is
not journaled.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

from devices.errors import DeviceConfigError, DeviceError
from devices.registry import DeviceContext
from edge.clock import Clock, SystemClock
from edge.feedback import (
    FeedbackHub,
    FeedbackSink,
    FeedbackStream,
)
from edge.intake import Intake, LinkChange
from edge.journal import EventBody, Journal, JournalError
from edge.kinds import DriverSignal, SignalKind
from edge.link import EdgeLink, LinkError, LinkHandler, LinkSettings
from edge.machines import (
    ACTUATOR_FAULT,
    NOTIFY_TITLE,
    AsyncDrivers,
    BadgeRead,
    CommandDone,
    MachineUnit,
    MachineView,
    ReaderThread,
    describe,
)
from edge.offline import decide_offline
from edge.outbox import Outbox
from edge.outcomes import CMD_EXPIRED, applied, refused
from edge.policystore import PolicyStore
from edge.reporter import Reporter
from edge.sdnotify import SystemdNotifier
from edge.session import (
    Answer,
    Append,
    DecideOffline,
    DriverCommand,
    Effect,
    Feedback,
    FeedbackKind,
    Lock,
    PowerOff,
    PowerOn,
    RequestAccess,
    State,
    Unlock,
)
from edge.settings import EdgeSettings
from edge.wiring import build_units, device_context, feedback_sinks, link_settings
from protocol.ids import badge_hash
from protocol.messages import (
    AccessDecision,
    AccessRequest,
    CommandOutcome,
    EndReason,
    HubStatus,
    JournalCommand,
    MachineAction,
    MachineCommand,
    MachineRearmedBody,
    MachineState,
    Message,
    Outcome,
    PolicySnapshot,
    Scalar,
    SessionCommand,
    SessionEndedBody,
    SessionStartedBody,
    Telemetry,
)

__all__ = [
    "Agent",
    "AgentError",
    "Companion",
    "Link",
    "LinkFactory",
    "ScaledClock",
    "run_agents",
]

logger = logging.getLogger(__name__)

VERSION: Final = "edge-0.1"
#: Longest the agent thread sleeps (real seconds) between two looks at the clock.
MAX_SLEEP_S: Final = 1.0
#: Housekeeping period (real seconds): resend timer, device checks, driver polls.
HOUSEKEEPING_S: Final = 1.0
#: How often the online status is republished with fresh health counters (seconds).
HEALTH_S: Final = 60.0
#: Delay before reopening an output device that failed (real seconds).
OUTPUT_RETRY_S: Final = 5.0
#: Fault source of a machine whose journal writes fail.
JOURNAL_FAULT: Final = "journal"


class AgentError(RuntimeError):
    """The agent cannot start (journal unusable, devices misconfigured)."""


class ScaledClock:
    """A clock whose monotonic time runs ``speed`` times faster (the demo's time-lapse).

    The wall clock stays real, so decisions' ``not_after`` and the hub's end times
    keep their meaning; durations (and so quotas) run ``speed`` times faster.
    """

    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self._origin = time.monotonic()

    def monotonic(self) -> float:
        """Scaled seconds since an arbitrary origin."""
        return self._origin + (time.monotonic() - self._origin) * self.speed

    def now(self) -> datetime:
        """The real wall time."""
        return SystemClock().now()


class Link(Protocol):
    """What the agent needs from its MQTT link (:class:`~edge.link.EdgeLink`)."""

    @property
    def is_up(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 2.0) -> None: ...

    def request_access(self, request: AccessRequest) -> bool: ...

    def send_event(self, event: Message) -> bool: ...

    def send_outcome(self, outcome: CommandOutcome) -> bool: ...

    def publish_state(self, state: MachineState) -> bool: ...

    def publish_tele(self, tele: Telemetry) -> bool: ...

    def refresh_status(self) -> None: ...
    def publish_health(self, journal_backlog: int) -> bool: ...


#: Builds the link: (settings, handler, epoch source) -> link. Tests wrap the real one.
LinkFactory = Callable[[LinkSettings, LinkHandler, Callable[[], int]], Link]


def _edge_link(settings: LinkSettings, handler: LinkHandler, epochs: Callable[[], int]) -> Link:
    return EdgeLink(settings, handler, epoch_source=epochs)


# --------------------------------------------------------------------------- queue items


@dataclass(frozen=True, slots=True)
class _Tele:
    machine: str
    values: Mapping[str, Scalar]


class _Wake:
    """Look at the clock again (a test advanced it, or stop was asked)."""


_WAKE: Final = _Wake()


# --------------------------------------------------------------------------- the agent


class Agent:
    """One edge: its machines, journal, link and feedback (see the module docstring).

    Args:
        settings: the validated edge settings.
        clock: time source (``FakeClock`` in tests; a :class:`ScaledClock` is used
            when ``settings.time_scale`` is not 1).
        device_context: runtime seams of the device factories (GPIO pin factory,
            HTTP transport); the MQTT publisher of Tasmota plugs is added here.
        link_factory: builds the MQTT link (tests wrap the real one).
        sinks: extra feedback sinks (the console and GPIO sinks come from the settings).
        narrate: receives one plain line per message shown (the demo's narration).
    """

    def __init__(
        self,
        settings: EdgeSettings,
        *,
        clock: Clock | None = None,
        device_context: DeviceContext | None = None,
        link_factory: LinkFactory | None = None,
        sinks: Iterable[FeedbackSink] = (),
        narrate: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        if clock is None:
            clock = ScaledClock(settings.time_scale) if settings.time_scale != 1 else SystemClock()
        self.clock: Clock = clock
        self._speed: float = getattr(clock, "speed", 1.0)
        self._device_context = device_context
        self._ctx = DeviceContext()
        self._link_factory = link_factory or _edge_link
        self._extra_sinks = list(sinks)
        self._narrate = narrate
        self.journal = Journal(settings.journal.path, settings.edge_id, clock)
        self.stream = FeedbackStream(settings.feedback.history)
        try:
            self._key = settings.key_bytes()
        except (OSError, ValueError) as err:
            raise AgentError(f"edge key {settings.edge_key_file}: {err}") from err
        #: Checks every hub→edge message (MAC, freshness) before it reaches the queue.
        self.intake = Intake(settings.edge_id, self._key, self.clock.now, self.post)
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._units: dict[str, MachineUnit] = {}
        self._readers: list[ReaderThread] = []
        self._drivers = AsyncDrivers()
        self._feedback: FeedbackHub | None = None
        self._link: Link | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._beat = time.monotonic()
        self._started = False
        self.reporter = Reporter(self.clock, self._speed, settings.tele_interval_s)
        self.outbox = Outbox(self.journal, settings.edge_id, settings.journal)
        self.policy = PolicyStore(
            settings.policy_cache_path, settings.edge_id, self._key, self.journal
        )
        # Link and hub, as the agent thread sees them.
        self._link_up = False
        self._hub_status_online = False
        self._hub_online = False
        self._next_housekeeping = 0.0
        self._next_health = time.monotonic() + HEALTH_S
        #: Set when the agent thread died of an unexpected error.
        self.failed: BaseException | None = None

    # ------------------------------------------------------------------ reading (any thread)

    @property
    def edge_id(self) -> str:
        """This agent's edge id."""
        return self.settings.edge_id

    def views(self) -> Mapping[str, MachineView]:
        """Every machine's latest view (an immutable snapshot, safe from any thread)."""
        return self.reporter.views

    def view(self, machine: str) -> MachineView:
        """One machine's latest view."""
        return self.reporter.views[machine]

    @property
    def hub_online(self) -> bool:
        """Link up and the hub says it is online (as last seen by the agent thread)."""
        return self._hub_online

    @property
    def acked_through(self) -> int:
        """The hub's latest ``ack_through`` for this edge."""
        return self.outbox.acked

    @property
    def resends(self) -> int:
        """How many times events were sent again (resend timer, link up, replay)."""
        return self.outbox.resends

    @property
    def stopped(self) -> bool:
        """The agent thread has ended (stopped, or failed: see :attr:`failed`)."""
        return self._stopped.is_set()

    @property
    def heartbeat(self) -> float:
        """``time.monotonic()`` when the agent thread last went round its loop (it does
        at least every :data:`MAX_SLEEP_S`); a stuck thread stops the systemd pings."""
        return self._beat

    @property
    def policy_version(self) -> int | None:
        """Version of the verified policy snapshot in use, if any."""
        return self.policy.version

    def unit(self, machine: str) -> MachineUnit:
        """A machine's unit (its devices): for tests and the demo's simulation only."""
        return self._units[machine]

    # ------------------------------------------------------------------ posting (any thread)

    def post(self, item: object) -> None:
        """Queue an input for the agent thread."""
        self._inbox.put(item)

    def wake(self) -> None:
        """Make the agent look at its clock now (after a test advanced a fake clock)."""
        self._inbox.put(_WAKE)

    def signal(
        self, machine: str, kind: SignalKind, *, source: str = "driver", detail: str = ""
    ) -> None:
        """Report a driver observation (job running/done, idle, fault) for ``machine``."""
        self._inbox.put(DriverSignal(machine, kind, source, detail))

    def publish_telemetry(self, machine: str, values: Mapping[str, Scalar]) -> None:
        """Add values to ``machine``'s telemetry (a simulation's temperatures…)."""
        self._inbox.put(_Tele(machine, dict(values)))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Open the journal, close left-open sessions, switch everything off, connect.

        Raises:
            AgentError: the journal cannot be used or a device cannot be built.
        """
        if self._started:
            return
        s = self.settings
        try:
            self.journal.open()
            closed = self.journal.close_open_sessions(EndReason.EDGE_RESTART)
        except JournalError as err:
            raise AgentError(f"journal {s.journal.path}: {err}") from err
        if closed:
            logger.warning(
                "%d session(s) left open by the last run closed as edge_restart", len(closed)
            )
        self.outbox.restore()
        self.policy.restore()
        self._ctx = device_context(s, self._device_context, self._publish_raw)
        try:
            self._units = build_units(s, self._ctx, self.post)
        except (DeviceConfigError, ValueError) as err:
            self.journal.close()
            raise AgentError(f"device configuration: {err}") from err
        mono = self.clock.monotonic()
        for unit in self._units.values():  # safe default: off / locked, before anything else
            error = unit.open_outputs()
            if error is not None:
                logger.error("%s: output device unavailable: %s", unit.id, describe(error))
                unit.retry_at = time.monotonic() + OUTPUT_RETRY_S
                self._add_fault(unit, ACTUATOR_FAULT, describe(error), mono)
        sinks = feedback_sinks(s, self._ctx, self._narrate, self._extra_sinks)
        self._feedback = FeedbackHub(sinks, self.stream)
        self._feedback.open()
        for unit in self._units.values():
            unit.follower.open()
        parts = [part for u in self._units.values() for part in u.follower.async_parts()]
        try:
            self._drivers.start(parts)
        except Exception as err:
            logger.error("async drivers (OctoPrint followers) could not start: %s", err)
        self._readers = [ReaderThread(u.id, u.reader, self.post) for u in self._units.values()]
        for reader in self._readers:
            reader.start()
        self._link = self._link_factory(
            link_settings(s, self._units, VERSION), self.intake, self.journal.next_epoch
        )
        self._publish_views()
        self._started = True
        self._stopping.clear()
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name=f"agent-{s.edge_id}", daemon=True)
        self._thread.start()
        try:
            self._link.start()
        except LinkError as err:
            self.stop()
            raise AgentError(f"MQTT link: {err}") from err
        logger.info(
            "edge %s started: %d machine(s), journal %s (last seq %d, %d pending)",
            s.edge_id,
            len(self._units),
            s.journal.path,
            self.journal.last_seq(),
            self.journal.pending(),
        )

    def stop(self, timeout: float | None = None) -> None:
        """End sessions, switch off, drain the journal, say goodbye; idempotent."""
        if not self._started:
            return
        self._started = False
        for reader in self._readers:
            reader.stop()
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            wait = timeout if timeout is not None else self.settings.drain_timeout_s + 10.0
            self._thread.join(wait)
            if self._thread.is_alive():
                logger.error("edge %s: agent thread did not stop in time", self.edge_id)
            self._thread = None
        self._close_devices()
        if self._link is not None:
            self._link.stop()
        if self._feedback is not None:
            self._feedback.close()
        self.journal.close()
        logger.info("edge %s stopped", self.edge_id)

    def __enter__(self) -> Agent:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, stop: threading.Event) -> None:
        """Start, serve until ``stop`` is set (or the agent fails), then stop.

        Raises:
            AgentError: the agent could not start, or its thread failed.
        """
        self.start()
        try:
            while not stop.is_set() and not self._stopped.is_set():
                stop.wait(0.5)
        finally:
            self.stop()
        if self.failed is not None:
            raise AgentError(f"the agent failed: {self.failed}") from self.failed

    # ------------------------------------------------------------------ building

    def _publish_raw(self, topic: str, payload: bytes) -> None:
        link = self._link
        if not isinstance(link, EdgeLink) or not link.publish_raw(topic, payload):
            raise DeviceError(f"cannot publish on {topic}: the MQTT link is down")

    def _close_devices(self) -> None:
        for unit in self._units.values():
            unit.close_outputs()
            unit.follower.close()
        self._drivers.stop()

    # ------------------------------------------------------------------ the agent thread

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._step()
            self._shutdown()
        except BaseException as err:
            self.failed = err
            logger.critical(
                "edge %s: agent thread failed: switching everything off",
                self.edge_id,
                exc_info=True,
            )
            for unit in self._units.values():
                unit.close_outputs()
        finally:
            self._stopped.set()

    def _step(self) -> None:
        self._beat = time.monotonic()
        try:
            item: object | None = self._inbox.get(timeout=self._sleep_for())
        except queue.Empty:
            item = None
        handled = 0
        while item is not None:
            self._handle(item)
            handled += 1
            if handled >= 200:
                break
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                item = None
        self._tick()
        if time.monotonic() >= self._next_housekeeping:
            self._housekeeping()
        self.outbox.pump(self._link)
        self._publish_views()

    def _sleep_for(self) -> float:
        now = self.clock.monotonic()
        wait = min(MAX_SLEEP_S, max(0.0, self._next_housekeeping - time.monotonic()))
        for unit in self._units.values():
            due = unit.session.next_wakeup()
            if due is not None:
                wait = min(wait, max(0.0, (due - now) / self._speed))
        return wait

    def _tick(self) -> None:
        for unit in self._units.values():
            for _ in range(10):  # several timed transitions may be due at once
                due = unit.session.next_wakeup()
                mono = self.clock.monotonic()
                if due is None or mono < due:
                    break
                self._execute(unit, unit.session.tick(mono))

    # ------------------------------------------------------------------ inputs

    def _handle(self, item: object) -> None:
        mono, wall = self.clock.monotonic(), self.clock.now()
        match item:
            case BadgeRead():
                unit = self._units.get(item.machine)
                if unit is None:
                    return
                try:
                    badge = badge_hash(self.settings.secret_bytes, item.uid)
                except ValueError as err:
                    logger.warning("%s: unreadable badge: %s", item.machine, err)
                    return
                self._execute(unit, unit.session.badge(badge, mono))
            case AccessDecision():
                unit = self._units.get(item.machine)
                if unit is None:
                    logger.warning("decision %s for unknown machine %s", item.req_id, item.machine)
                    return
                self._execute(unit, unit.session.decision(item, mono, wall))
            case JournalCommand():
                if not self.outbox.on_command(item):
                    self.intake.reject("ack_beyond", "an ack_through beyond the journal")
            case SessionCommand():
                for unit in self._units.values():
                    if unit.session.session_id == item.session_id:
                        self._execute(unit, unit.session.session_command(item, mono, wall))
                        return
                logger.info(
                    "command %s for session %s not running here", item.cmd_id, item.session_id
                )
                self._answer(
                    Answer(item.cmd_id, Outcome.EXPIRED, "expired", CMD_EXPIRED)
                    if wall > item.not_after
                    else refused(item.cmd_id, "unknown_session")
                )
            case MachineCommand():
                unit = self._units.get(item.machine)
                if unit is None:
                    logger.warning("command %s for unknown machine %s", item.cmd_id, item.machine)
                    self._answer(refused(item.cmd_id, "unknown_machine"))
                    return
                self._execute(unit, unit.session.machine_command(item, mono, wall))
            case CommandDone():
                unit = self._units.get(item.machine)
                if unit is not None:
                    self._execute(unit, self._command_done(item))
            case PolicySnapshot():
                self.policy.accept(item)
            case HubStatus():
                self._hub_status_online = item.online
                self._hub_changed(mono)
            case LinkChange():
                self._link_up = item.up
                if item.up:
                    for unit in self._units.values():
                        unit.published = None  # republish every retained state
                else:
                    self._hub_status_online = False
                self._hub_changed(mono)
            case DriverSignal():
                unit = self._units.get(item.machine)
                if unit is not None:
                    self._on_signal(unit, item, mono)
            case _Tele():
                unit = self._units.get(item.machine)
                if unit is not None:
                    unit.extra_tele.update(item.values)
            case _Wake():
                pass
            case _:
                logger.debug("ignored input %r", item)

    def _hub_changed(self, mono: float) -> None:
        online = self._link_up and self._hub_status_online
        if online == self._hub_online:
            return
        self._hub_online = online
        logger.info("edge %s: hub %s", self.edge_id, "online" if online else "offline")
        self.outbox.online(online)  # back online: resend what is unacknowledged
        for unit in self._units.values():
            self._execute(unit, unit.session.link(online, mono))

    def _on_signal(self, unit: MachineUnit, signal: DriverSignal, mono: float) -> None:
        self._execute(unit, unit.on_signal(signal, mono, self.clock.now()))

    def _add_fault(self, unit: MachineUnit, source: str, detail: str, mono: float) -> None:
        self._execute(unit, unit.add_fault(source, detail, mono))

    def _clear_fault(self, unit: MachineUnit, source: str, mono: float) -> None:
        self._execute(unit, unit.clear_fault(source, mono))

    # ------------------------------------------------------------------ effects

    def _execute(self, unit: MachineUnit, effects: list[Effect], depth: int = 0) -> None:
        """Execute ``effects`` in order; a failed journal write blocks what follows."""
        if depth > 4:
            logger.error("%s: effect chain too deep: %r dropped", unit.id, effects)
            return
        blocked = False
        for effect in _runs_of_appends(effects):
            mono = self.clock.monotonic()
            match effect:
                case list():  # consecutive journal entries: one transaction, one fsync
                    if blocked:
                        continue
                    try:
                        self.journal.append_many([_with_run_time(unit, a.body) for a in effect])
                    except JournalError as err:
                        # Never act on what is not journaled: leave the machine off, and
                        # refuse badges (fault) until the journal takes writes again.
                        logger.critical("%s: journal write failed, not acting: %s", unit.id, err)
                        blocked = True
                        if depth < 4:
                            self._add_fault(unit, JOURNAL_FAULT, str(err), mono)
                        continue
                    if JOURNAL_FAULT in unit.faults:
                        self._clear_fault(unit, JOURNAL_FAULT, mono)
                    for append in effect:
                        if isinstance(append.body, SessionStartedBody):
                            if unit.power_watch is not None:
                                unit.power_watch.session_started(mono)
                            unit.run_mark = unit.run_time_s()
                        elif isinstance(append.body, SessionEndedBody):
                            unit.run_mark = None
                case PowerOn() | Unlock():
                    if blocked:
                        continue
                    error = (
                        unit.power_on() if isinstance(effect, PowerOn) else unit.set_locked(False)
                    )
                    if error is not None:
                        self._device_failed(unit, error, mono, depth)
                case PowerOff() | Lock():
                    error = (
                        unit.power_off() if isinstance(effect, PowerOff) else unit.set_locked(True)
                    )
                    if error is not None:
                        self._device_failed(unit, error, mono, depth)
                case Feedback():
                    self._show(unit, effect.kind, effect.message)
                case RequestAccess():
                    self._request(unit, effect)
                case DecideOffline():
                    wall = self.clock.now()
                    verdict = decide_offline(
                        self.policy.snapshot,
                        self._key,
                        unit.id,
                        effect.badge,
                        wall,
                        staff_grant=timedelta(minutes=self.settings.offline.staff_grant_min),
                        verified=True,  # every snapshot kept was verified on arrival
                        used_s=self.policy.used_since(unit.id, effect.badge),
                    )
                    logger.info(
                        "%s: offline decision %s (%s)", unit.id, verdict.code, effect.req_id
                    )
                    follow = unit.session.offline_verdict(effect.req_id, verdict, mono, wall)
                    self._execute(unit, follow, depth + 1)
                case DriverCommand():
                    answer = unit.driver_command(effect, self._drivers, self.post)
                    self._execute(unit, answer, depth + 1)
                case Answer():
                    self._answer(effect)

    def _command_done(self, done: CommandDone) -> list[Effect]:
        """A driver command ended off this thread: journal a re-arm (who did it), answer."""
        command = done.command
        if done.refusal is not None:
            logger.info(
                "%s: %s refused (%s)", done.machine, command.action.value, done.refusal.code
            )
            return [refused(command.cmd_id, done.refusal.code, done.refusal.reason)]
        effects: list[Effect] = []
        if command.action is MachineAction.REARM:
            body = MachineRearmedBody(machine=done.machine, cmd_id=command.cmd_id, by=command.by)
            effects.append(Append(body))
        return [*effects, applied(command.cmd_id)]

    def _answer(self, answer: Answer) -> None:
        """Tell the hub what became of a command (lost with the link: the hub times out)."""
        outcome = CommandOutcome(
            cmd_id=answer.cmd_id,
            outcome=answer.outcome,
            code=answer.code,
            reason=answer.reason[:300],
            ts=self.clock.now(),
        )
        logger.info("command %s: %s %s", answer.cmd_id, answer.outcome.value, answer.code)
        link = self._link
        if link is None or not link.send_outcome(outcome):
            logger.info("command %s: outcome not sent (link down)", answer.cmd_id)

    def _device_failed(
        self, unit: MachineUnit, error: DeviceError, mono: float, depth: int
    ) -> None:
        detail = describe(error)  # what the journal's machine_fault and the log show
        logger.error("%s: output device failed: %s", unit.id, detail)
        first = ACTUATOR_FAULT not in unit.faults
        unit.faults[ACTUATOR_FAULT] = detail
        unit.retry_at = time.monotonic() + OUTPUT_RETRY_S
        if first:
            self._execute(unit, unit.session.fault(ACTUATOR_FAULT, detail, mono), depth + 1)

    def _show(self, unit: MachineUnit, kind: FeedbackKind, message: str) -> None:
        if kind in unit.notices:  # its kind's desktop notifications (a gaming PC)
            unit.notify(NOTIFY_TITLE, message)
        if self._feedback is not None:
            self._feedback.show(unit.id, kind, message, self.clock.now(), unit.session.session_id)

    def _request(self, unit: MachineUnit, effect: RequestAccess) -> None:
        link = self._link
        request = AccessRequest(
            req_id=effect.req_id,
            edge=self.edge_id,
            machine=unit.id,
            badge=effect.badge,
            ts=self.clock.now(),
        )
        if link is None or not link.request_access(request):
            # The link just went down: decide alone now rather than after the timeout.
            logger.info("%s: request %s not sent: deciding offline", unit.id, effect.req_id)
            self._execute(unit, unit.session.link(False, self.clock.monotonic()))
            if self._hub_online:
                self._execute(unit, unit.session.link(True, self.clock.monotonic()))

    # ------------------------------------------------------------------ housekeeping

    def _housekeeping(self) -> None:
        now = time.monotonic()
        self._next_housekeeping = now + HOUSEKEEPING_S
        mono = self.clock.monotonic()
        self.outbox.housekeeping()
        if self._link is not None:
            self._link.refresh_status()  # the count of rejected hub messages, if it moved
        if now >= self._next_health:
            self._next_health = now + HEALTH_S
            link = self._link_if_up()
            if link is not None:
                link.publish_health(self.outbox.pending())
        for unit in self._units.values():
            self._check_devices(unit, mono, now)
        self.reporter.telemetry(self._units.values(), self._link_if_up(), now, self._follow_power)

    def _check_devices(self, unit: MachineUnit, mono: float, now: float) -> None:
        # Output device failed: try again now and then (it switches off); clear the fault.
        if ACTUATOR_FAULT in unit.faults and now >= unit.retry_at:
            error = unit.check_output()
            if error is None:
                self._clear_fault(unit, ACTUATOR_FAULT, mono)
            else:
                unit.retry_at = now + OUTPUT_RETRY_S
        # Drivers: faults (GRBL alarm, printer error) and jobs (a print running).
        reported = unit.driver_faults()
        for source, detail in reported.items():
            if source not in unit.faults:
                self._add_fault(unit, source, detail, mono)
        owned = unit.follower.fault_sources
        for source in [s for s in unit.faults if s in owned and s not in reported]:
            self._clear_fault(unit, source, mono)

    def _follow_power(self, unit: MachineUnit, values: Mapping[str, Scalar]) -> None:
        """A telemetry's power reading: busy or idle for a machine with a power watch."""
        if unit.power_watch is None:
            return
        mono = self.clock.monotonic()
        active = unit.session.state is State.ACTIVE
        reading = values.get("power_w")
        for signal in unit.power_watch.sample(reading, mono, job=unit.job, active=active):
            self._on_signal(unit, signal, mono)

    def _publish_views(self) -> None:
        self.reporter.publish_views(self._units.values(), self._link_if_up())

    def _link_if_up(self) -> Link | None:
        return self._link if self._link_up else None

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        """On the agent thread: end sessions, switch off, drain, publish offline."""
        mono = self.clock.monotonic()
        for unit in self._units.values():
            self._execute(unit, unit.session.shutdown(mono))
            unit.close_outputs()
        self._publish_views()
        self.outbox.drain(self._link, self.settings.drain_timeout_s, self._drain_poll)
        self.reporter.publish_offline(self._units.values(), self._link_if_up())

    def _drain_poll(self, wait_s: float) -> None:
        """While draining: take only the hub's answers (acknowledgements, status, link)."""
        try:
            item = self._inbox.get(timeout=wait_s)
        except queue.Empty:
            return
        if isinstance(item, JournalCommand | HubStatus | LinkChange):
            self._handle(item)


class Companion(Protocol):
    """Something that runs beside the agents of a process (the demo's visitors)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def run_agents(
    agents: list[Agent],
    stop: threading.Event,
    companions: Iterable[Companion] = (),
    notifier: SystemdNotifier | None = None,
) -> None:
    """Start every agent (then the companions), serve until ``stop`` is set or an agent
    fails, then stop everything in reverse order.

    Under systemd (``Type=notify``) the process says ``READY=1`` once everything has
    started, pings the watchdog while every agent thread is alive, and says
    ``STOPPING=1`` on the way out (:mod:`edge.sdnotify`).

    Raises:
        AgentError: an agent could not start or failed.
    """
    started: list[Agent] = []
    running: list[Companion] = []
    systemd = notifier or SystemdNotifier()
    try:
        for agent in agents:
            agent.start()
            started.append(agent)
        for companion in companions:
            companion.start()
            running.append(companion)
        systemd.ready()
        period = systemd.watchdog_s
        poll = 0.5 if period is None else min(0.5, period / 4)
        while not stop.is_set() and not any(a.stopped for a in started):
            # Ping only while every agent thread goes round its loop: a wedged
            # thread (a driver call that never returns) gets the unit restarted.
            stale = period is None or any(
                time.monotonic() - a.heartbeat > max(period / 2, 2 * MAX_SLEEP_S) for a in started
            )
            if not stale:
                systemd.ping()
            stop.wait(poll)
    finally:
        systemd.stopping()
        for companion in reversed(running):
            companion.stop()
        for agent in reversed(started):
            agent.stop()
    failed = [a for a in started if a.failed is not None]
    if failed:
        first = failed[0]
        raise AgentError(f"edge {first.edge_id} failed: {first.failed}") from first.failed


def _with_run_time(unit: MachineUnit, body: EventBody) -> EventBody:
    """A ``session_ended`` of a machine with a run-time meter gets its ``run_s``."""
    if isinstance(body, SessionEndedBody) and unit.run_mark is not None:
        total = unit.run_time_s()
        if total is not None:
            return body.model_copy(update={"run_s": round(max(0.0, total - unit.run_mark), 3)})
    return body


def _runs_of_appends(effects: list[Effect]) -> list[Effect | list[Append]]:
    """``effects`` with each run of consecutive :class:`Append` gathered in a list."""
    out: list[Effect | list[Append]] = []
    for effect in effects:
        if isinstance(effect, Append):
            last = out[-1] if out else None
            if isinstance(last, list):
                last.append(effect)
            else:
                out.append([effect])
        else:
            out.append(effect)
    return out
