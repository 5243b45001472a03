"""One machine as the agent drives it: its session state machine and its devices.

A :class:`MachineUnit` bundles, for one machine of the edge:

* its :class:`~edge.session.SessionMachine` (pure; the agent feeds it inputs and
  executes the effects it returns);
* its output device: an :class:`~devices.actuators.Actuator` (relay, smart plug;
  latched for kinds that never restart by itself) or, for a gaming PC, a
  :class:`~devices.pc.SessionLock`;
* its kind's :class:`~edge.kinds.base.Follower` (a laser's GRBL controller, a
  printer's OctoPrint; nothing for a generic machine): faults, telemetry, staff
  commands and run time, whatever the kind (:mod:`edge.kinds`);
* its :class:`~edge.power.PowerWatch` when a metering plug says busy or idle;
* its badge reader, read by a :class:`ReaderThread`.

Every method here that touches an output device runs on the agent's thread (the
one owner of the devices) and returns the :class:`~devices.errors.DeviceError`
it met, typed, for the agent to journal and show. Readers and drivers run on
their own threads and only *post* to the agent's queue; async drivers share the
one asyncio loop of :class:`AsyncDrivers`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from devices.actuators import Actuator, LatchedActuator
from devices.errors import DeviceError
from devices.pc import SessionLock
from devices.readers import BadgeReader
from edge.effects import DriverCommand, Effect, FeedbackKind
from edge.kinds import DriverSignal, Follower, SignalKind
from edge.kinds.base import Deferred
from edge.outcomes import Refusal, applied, refused
from edge.power import PowerWatch
from edge.session import SessionMachine, SessionStatus, State
from edge.settings import MachineSettings
from protocol.messages import Availability, Scalar

__all__ = [
    "ACTUATOR_FAULT",
    "NOTIFY_TITLE",
    "AsyncDrivers",
    "BadgeRead",
    "CommandDone",
    "CommandRun",
    "DriverSignal",
    "MachineUnit",
    "MachineView",
    "ReaderThread",
    "SignalKind",
    "describe",
]

logger = logging.getLogger(__name__)

#: Title of every desktop notification.
NOTIFY_TITLE: Final = "fabrique"

#: Fault source of a machine whose output device fails (the agent clears it itself).
ACTUATOR_FAULT: Final = "actuator"


def describe(err: DeviceError) -> str:
    """How a device error is journaled and logged: its type and its message."""
    return f"{type(err).__name__}: {err}"


@dataclass(frozen=True, slots=True)
class BadgeRead:
    """A reader saw a badge (raw UID, hashed on the agent's thread)."""

    machine: str
    uid: str


@dataclass(frozen=True, slots=True)
class MachineView:
    """What one machine is doing, for other threads (the kiosk, the demo, tests)."""

    machine: str
    kind: str
    availability: Availability
    session: SessionStatus
    outputs_ok: bool
    reader_connected: bool
    faults: tuple[str, ...] = ()


# --------------------------------------------------------------------------- readers


class ReaderThread:
    """Reads one badge reader on its own thread and posts :class:`BadgeRead` items.

    The reader absorbs noise and unplugs itself (see :mod:`devices.readers.base`);
    anything else it raises is logged and retried after a pause, so a reader can
    never stop the agent.
    """

    def __init__(
        self, machine: str, reader: BadgeReader, post: Callable[[BadgeRead], None]
    ) -> None:
        self.machine = machine
        self.reader = reader
        self._post = post
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open the reader and start reading."""
        self._thread = threading.Thread(
            target=self._run, name=f"reader-{self.machine}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading and close the reader."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self.reader:
                    while not self._stop.is_set():
                        uid = self.reader.read(0.25)
                        if uid is not None:
                            self._post(BadgeRead(self.machine, uid))
            except Exception:
                logger.exception("%s: badge reader failed; retrying", self.machine)
                self._stop.wait(2.0)


# --------------------------------------------------------------------------- async drivers


class AsyncDrivers:
    """One asyncio loop on its own thread for the async drivers (OctoPrint followers).

    :meth:`start` enters every follower in the loop; :meth:`submit` runs a coroutine
    there (a printer command) without waiting; :meth:`stop` leaves them and ends the
    loop.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    def start(
        self, followers: Sequence[AbstractAsyncContextManager[Any]], timeout: float = 10.0
    ) -> None:
        """Start the loop and enter ``followers`` (they connect in the background)."""
        if not followers:
            return
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="async-drivers", daemon=True)
        self._thread.start()

        async def enter() -> None:
            stack = contextlib.AsyncExitStack()
            for follower in followers:
                await stack.enter_async_context(follower)
            self._stack = stack

        asyncio.run_coroutine_threadsafe(enter(), loop).result(timeout)

    def submit(
        self,
        coro: Coroutine[Any, Any, Any],
        what: str,
        on_done: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        """Run ``coro`` on the loop; ``on_done`` gets its error (``None``: it returned),
        on the loop's thread. Without ``on_done`` a failure is logged."""
        loop = self._loop
        if loop is None:
            coro.close()
            logger.warning("%s: no driver loop running", what)
            if on_done is not None:
                on_done(Refusal("driver_unreachable"))
            return
        future = asyncio.run_coroutine_threadsafe(coro, loop)

        def done(f: concurrent.futures.Future[Any]) -> None:
            error: BaseException | None = (
                Refusal("driver_error") if f.cancelled() else f.exception()
            )
            if on_done is not None:
                on_done(error)
            elif error is not None:
                logger.error("%s failed: %s", what, error)

        future.add_done_callback(done)

    def stop(self, timeout: float = 10.0) -> None:
        """Leave every follower and stop the loop."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        stack, self._stack = self._stack, None
        if stack is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        loop.close()


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class CommandDone:
    """A driver command handed off the agent thread ended (posted to the agent's queue).

    ``refusal`` is ``None`` when it was carried out."""

    machine: str
    command: DriverCommand
    refusal: Refusal | None


class CommandRun:
    """The :class:`~edge.kinds.base.Run` of one driver command: its end is posted back
    to the agent as a :class:`CommandDone` (the agent answers the hub from its thread)."""

    def __init__(
        self,
        machine: str,
        command: DriverCommand,
        drivers: AsyncDrivers,
        post: Callable[[object], None],
    ) -> None:
        self.machine = machine
        self.command = command
        self._drivers = drivers
        self._post = post

    def coroutine(self, coro: Coroutine[Any, Any, Any], what: str) -> Deferred:
        """On the drivers' asyncio loop."""
        self._drivers.submit(coro, what, lambda error: self._done(error, what))
        return Deferred()

    def blocking(self, call: Callable[[], Any], what: str) -> Deferred:
        """On a short-lived thread of its own."""

        def work() -> None:
            try:
                call()
            except BaseException as err:
                self._done(err, what)
            else:
                self._done(None, what)

        threading.Thread(target=work, name=f"cmd-{self.machine}", daemon=True).start()
        return Deferred()

    def _done(self, error: BaseException | None, what: str) -> None:
        refusal: Refusal | None = None
        if isinstance(error, Refusal):
            refusal = error
        elif error is not None:
            logger.error("%s failed: %s", what, error)
            refusal = Refusal("driver_error")
        self._post(CommandDone(self.machine, self.command, refusal))


# --------------------------------------------------------------------------- the unit


@dataclass
class MachineUnit:
    """One machine: settings, session machine, devices, and what the agent tracks of them."""

    settings: MachineSettings
    session: SessionMachine
    reader: BadgeReader
    #: Its kind's follower (faults, telemetry, commands, run time).
    follower: Follower
    actuator: Actuator | None = None
    lock: SessionLock | None = None
    #: Busy/idle by the plug's power (``busy_above_w``), if any.
    power_watch: PowerWatch | None = None
    #: Whether the output device is open (off / locked) and answering.
    outputs_ok: bool = False
    #: Active fault sources (code -> detail); the session machine is faulted while any.
    faults: dict[str, str] = field(default_factory=dict)
    #: What the driver reports: a job runs (print, busy by power).
    job: bool = False
    #: What the driver reports: the machine is hot (a printer's nozzle, see PrinterWatch).
    hot: bool = False
    #: Next attempt to reopen a failed output (real monotonic seconds).
    retry_at: float = 0.0
    #: Key of the last published retained state.
    published: tuple[object, ...] | None = None
    #: Extra telemetry posted by a simulation, published with the next tele.
    extra_tele: dict[str, Scalar] = field(default_factory=dict)
    #: When the last telemetry was published, and the next power reading is due
    #: (real monotonic seconds).
    last_tele: float | None = None
    next_power: float = 0.0
    #: The driver's run-time meter when the open session started (lasers).
    run_mark: float | None = None
    #: Messages also shown as desktop notifications (its kind's ``notify``).
    notices: frozenset[FeedbackKind] = frozenset()

    @property
    def id(self) -> str:
        """The machine id."""
        return self.settings.id

    # ------------------------------------------------------------------ signals and faults

    def on_signal(self, signal: DriverSignal, mono: float, wall: datetime) -> list[Effect]:
        """A driver's signal: what the agent tracks of it, and the session's effects."""
        s = self.session
        match signal.kind:
            case "job_started":
                self.job = True
                return s.job_started(mono, signal.detail)
            case "job_running":
                self.job = True
                return s.job_running(mono)
            case "job_ended":
                return s.job_ended(signal.job, mono, wall) if signal.job is not None else []
            case "job_done":
                self.job = False
                return s.job_done(mono)
            case "hot" | "cooled":
                logger.info("%s: %s (%s)", self.id, signal.kind, signal.detail)
                self.hot = signal.kind == "hot"
                return s.heat(self.hot, mono)
            case "idle":
                return s.idle_timeout(mono)
            case "fault":
                return self.add_fault(signal.source, signal.detail or signal.source, mono)
            case "fault_cleared":
                return self.clear_fault(signal.source, mono)

    def add_fault(self, source: str, detail: str, mono: float) -> list[Effect]:
        """A fault source is active: journaled once per episode, cut again if the kind cuts."""
        new = source not in self.faults
        self.faults[source] = detail
        if new or self.session.config.cut_on_fault:
            return self.session.fault(source, detail, mono)
        return []

    def clear_fault(self, source: str, mono: float) -> list[Effect]:
        """A fault source is gone; the machine may be granted again once none is left."""
        if self.faults.pop(source, None) is not None and not self.faults:
            logger.info("%s: fault cleared (%s)", self.id, source)
            return self.session.fault_cleared(mono)
        return []

    # ------------------------------------------------------------------ outputs

    def open_outputs(self) -> DeviceError | None:
        """Open the output device (which switches off / locks); the error, or None."""
        try:
            if self.actuator is not None:
                self.actuator.open()
            if self.lock is not None:
                self.lock.open()
        except DeviceError as err:
            self.outputs_ok = False
            return err
        self.outputs_ok = True
        return None

    def close_outputs(self) -> None:
        """Switch off / lock and release (never raises)."""
        for device in (self.actuator, self.lock):
            if device is None:
                continue
            try:
                device.close()
            except Exception:
                logger.exception("%s: %r did not close cleanly", self.id, device)
        self.outputs_ok = False

    def power_on(self) -> DeviceError | None:
        """Switch on (a latch is re-armed first: this is a new grant)."""
        if self.actuator is None:
            return None
        try:
            if isinstance(self.actuator, LatchedActuator):
                self.actuator.rearm()
            self.actuator.on()
        except DeviceError as err:
            return err
        return None

    def power_off(self) -> DeviceError | None:
        """Switch off."""
        if self.actuator is None:
            return None
        try:
            self.actuator.off()
        except DeviceError as err:
            return err
        return None

    def set_locked(self, locked: bool) -> DeviceError | None:
        """Lock or unlock the PC session (a gaming PC is never powered off)."""
        if self.lock is None:
            return None
        try:
            if locked:
                self.lock.lock()
            else:
                self.lock.unlock()
        except DeviceError as err:
            return err
        return None

    def notify(self, title: str, message: str) -> None:
        """Show a desktop notification on a gaming PC (best effort, titled
        :data:`NOTIFY_TITLE`)."""
        if self.lock is None:
            return
        try:
            self.lock.notify(title, message)
        except DeviceError as err:
            logger.warning("%s: notification failed: %s", self.id, err)

    def check_output(self) -> DeviceError | None:
        """Is the output device answering again? (switches off; used to clear a fault)."""
        if not self.outputs_ok:
            return self.open_outputs()
        if self.actuator is not None:
            return self.power_off()
        if self.lock is not None:
            return self.set_locked(True)
        return None

    def power_w(self) -> float | None:
        """The actuator's power reading, ``None`` without a meter or on error."""
        if self.actuator is None or not self.outputs_ok:
            return None
        try:
            return self.actuator.power_w()
        except DeviceError as err:
            logger.debug("%s: power reading failed: %s", self.id, err)
            return None

    # ------------------------------------------------------------------ drivers

    def driver_command(
        self, command: DriverCommand, drivers: AsyncDrivers, post: Callable[[object], None]
    ) -> list[Effect]:
        """Forward a staff command (pause, resume, cancel, re-arm) to the driver; its
        answer now, or nothing when the kind deferred it (a :class:`CommandDone` follows)."""
        run = CommandRun(self.id, command, drivers, post)
        verdict = self.follower.command(command.action, run)
        if isinstance(verdict, Deferred):
            return []
        if isinstance(verdict, Refusal):
            logger.info("%s: %s refused (%s)", self.id, command.action.value, verdict.code)
            return [refused(command.cmd_id, verdict.code, verdict.reason)]
        return [applied(command.cmd_id)]

    def driver_faults(self) -> dict[str, str]:
        """Fault sources the driver reports right now (polled by the agent)."""
        return self.follower.faults()

    def run_time_s(self) -> float | None:
        """The driver's cumulative run-time meter (a laser's beam-on time), if any."""
        return self.follower.run_time_s()

    def tele_interval_s(self, default: float) -> float:
        """Telemetry period: the follower's while the machine is in use, else ``default``."""
        in_use = self.job or self.hot or self.session.state is not State.IDLE
        return self.follower.tele_interval_s(default, in_use)

    def telemetry(self, *, power: bool = True) -> dict[str, Scalar]:
        """Values for ``tele/{machine}`` (never used for metering); ``power``: ask the
        plug for its power reading too (a request to the device)."""
        values: dict[str, Scalar] = {}
        watts = self.power_w() if power else None
        if watts is not None:
            values["power_w"] = round(watts, 1)
        values.update(self.follower.telemetry())
        values.update(self.extra_tele)
        return values

    # ------------------------------------------------------------------ view

    def view(self, mono: float) -> MachineView:
        """The machine's snapshot for other threads and its retained state."""
        session = self.session.view(mono)
        if not self.outputs_ok:
            availability = Availability.OFFLINE
        elif session.state is State.MAINTENANCE:
            availability = Availability.MAINTENANCE
        elif session.faulted:
            availability = Availability.FAULT
        elif session.state in (State.ACTIVE, State.ENDING) or session.foreign_job:
            availability = Availability.IN_USE
        else:
            availability = Availability.FREE
        return MachineView(
            machine=self.id,
            kind=self.settings.kind,
            availability=availability,
            session=session,
            outputs_ok=self.outputs_ok,
            reader_connected=self.reader.connected,
            faults=tuple(sorted(self.faults)),
        )
