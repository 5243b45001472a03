"""One machine as the agent drives it: its session state machine and its devices.

A :class:`MachineUnit` bundles, for one machine of the edge:

* its :class:`~edge.session.SessionMachine` (pure; the agent feeds it inputs and
  executes the effects it returns);
* its output device: an :class:`~devices.actuators.Actuator` (relay, smart plug;
  always a :class:`~devices.actuators.LatchedActuator` for a laser) or, for a gaming
  PC, a :class:`~devices.pc.SessionLock`;
* its optional driver: a :class:`~devices.grbl.GrblLaser` (with a
  :class:`~devices.grbl.LaserInterlock` that trips the latch on the driver's own
  thread, milliseconds after an alarm) or an
  :class:`~devices.octoprint.OctoPrintFollower` (run by :class:`AsyncDrivers`);
* its badge reader, read by a :class:`ReaderThread`.

Every method here that touches an output device runs on the agent's thread (the
one owner of the devices); device errors are translated into short strings the
agent turns into ``machine_fault`` inputs. Readers and drivers run on their own
threads and only *post* to the agent's queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from devices.actuators import Actuator, LatchedActuator
from devices.errors import DeviceError
from devices.pc import SessionLock
from devices.readers import BadgeReader
from edge.session import SessionMachine, SessionView, State
from edge.settings import MachineSettings
from protocol.messages import Availability, MachineAction, Scalar

if TYPE_CHECKING:
    # Drivers are imported where a machine uses them: an edge without a laser or a
    # printer does not pay for their modules.
    from devices.grbl import GrblEvent, GrblLaser, LaserInterlock
    from devices.octoprint import OctoPrintFollower

__all__ = [
    "AsyncDrivers",
    "BadgeRead",
    "DriverSignal",
    "MachineUnit",
    "MachineView",
    "ReaderThread",
    "SignalKind",
]

logger = logging.getLogger(__name__)

SignalKind = Literal["job_running", "job_done", "idle", "fault", "fault_cleared"]

#: Fault sources the agent clears by itself once the device works again.
ACTUATOR_FAULT: Final = "actuator"
GRBL_FAULT: Final = "grbl"
PRINTER_FAULT: Final = "printer"


@dataclass(frozen=True, slots=True)
class BadgeRead:
    """A reader saw a badge (raw UID, hashed on the agent's thread)."""

    machine: str
    uid: str


@dataclass(frozen=True, slots=True)
class DriverSignal:
    """A driver (or a simulation) reports something about a machine.

    ``source`` names the fault source for ``fault``/``fault_cleared`` (the machine is
    faulted while any source is).
    """

    machine: str
    kind: SignalKind
    source: str = "driver"
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MachineView:
    """What one machine is doing, for other threads (the kiosk, the demo, tests)."""

    machine: str
    kind: str
    availability: Availability
    session: SessionView
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

    def start(self, followers: Sequence[OctoPrintFollower], timeout: float = 10.0) -> None:
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

    def submit(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        """Run ``coro`` on the loop; its failure is logged."""
        loop = self._loop
        if loop is None:
            coro.close()
            logger.warning("%s: no driver loop running", what)
            return
        future = asyncio.run_coroutine_threadsafe(coro, loop)

        def done(f: concurrent.futures.Future[Any]) -> None:
            error = f.exception()
            if error is not None:
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


# --------------------------------------------------------------------------- the unit


@dataclass
class MachineUnit:
    """One machine: settings, session machine, devices, and what the agent tracks of them."""

    settings: MachineSettings
    session: SessionMachine
    reader: BadgeReader
    actuator: Actuator | None = None
    lock: SessionLock | None = None
    laser: GrblLaser | None = None
    printer: OctoPrintFollower | None = None
    #: Whether the output device is open (off / locked) and answering.
    outputs_ok: bool = False
    #: Active fault sources (code -> detail); the session machine is faulted while any.
    faults: dict[str, str] = field(default_factory=dict)
    #: What the driver reports: a job runs (print, busy by power).
    job: bool = False
    #: Monotonic time of the last "busy" power reading, or of the session start.
    last_busy: float = 0.0
    #: Session id and monotonic start of the last session started (idle detection).
    followed: tuple[str, float] | None = None
    #: Next attempt to reopen a failed output (real monotonic seconds).
    retry_at: float = 0.0
    #: Key of the last published retained state.
    published: tuple[object, ...] | None = None
    #: Extra telemetry posted by a simulation, published with the next tele.
    extra_tele: dict[str, Scalar] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The machine id."""
        return self.settings.id

    # ------------------------------------------------------------------ outputs

    def open_outputs(self) -> str | None:
        """Open the output device (which switches off / locks); the error, or None."""
        try:
            if self.actuator is not None:
                self.actuator.open()
            if self.lock is not None:
                self.lock.open()
        except DeviceError as err:
            self.outputs_ok = False
            return f"{type(err).__name__}: {err}"
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

    def power_on(self) -> str | None:
        """Switch on (a laser's latch is re-armed first: this is a new grant)."""
        if self.actuator is None:
            return None
        try:
            if isinstance(self.actuator, LatchedActuator):
                self.actuator.rearm()
            self.actuator.on()
        except DeviceError as err:
            return f"{type(err).__name__}: {err}"
        return None

    def power_off(self) -> str | None:
        """Switch off."""
        if self.actuator is None:
            return None
        try:
            self.actuator.off()
        except DeviceError as err:
            return f"{type(err).__name__}: {err}"
        return None

    def set_locked(self, locked: bool) -> str | None:
        """Lock or unlock the PC session (a gaming PC is never powered off)."""
        if self.lock is None:
            return None
        try:
            if locked:
                self.lock.lock()
            else:
                self.lock.unlock()
        except DeviceError as err:
            return f"{type(err).__name__}: {err}"
        return None

    def notify(self, title: str, message: str) -> None:
        """Show a desktop notification on a gaming PC (best effort)."""
        if self.lock is None:
            return
        try:
            self.lock.notify(title, message)
        except DeviceError as err:
            logger.warning("%s: notification failed: %s", self.id, err)

    def check_output(self) -> str | None:
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

    def driver_command(self, action: MachineAction, drivers: AsyncDrivers) -> None:
        """Forward a staff command (pause, resume, cancel a print) to the driver."""
        if self.printer is not None:
            printer = self.printer
            commands = {
                MachineAction.PAUSE: printer.pause,
                MachineAction.RESUME: printer.resume,
                MachineAction.CANCEL: printer.cancel,
            }
            command = commands.get(action)
            if command is not None:
                drivers.submit(command(), f"{self.id}: {action.value}")
                return
        if self.laser is not None and action in (MachineAction.PAUSE, MachineAction.CANCEL):
            try:
                self.laser.feed_hold()
            except DeviceError as err:
                logger.warning("%s: feed hold failed: %s", self.id, err)
            return
        logger.info("%s: %s has no driver here: ignored", self.id, action.value)

    def driver_faults(self) -> dict[str, str]:
        """Fault sources the drivers report right now (polled by the agent)."""
        faults: dict[str, str] = {}
        if self.laser is not None:
            snap = self.laser.snapshot()
            if not snap.connected:
                faults[GRBL_FAULT] = f"GRBL link down: {snap.error or 'not connected'}"
            elif snap.alarm:
                faults[GRBL_FAULT] = f"GRBL alarm {snap.alarm_code or ''}".strip()
            elif snap.door_open:
                faults[GRBL_FAULT] = "laser door open"
        if self.printer is not None:
            psnap = self.printer.snapshot
            if psnap.error or psnap.state.startswith("Error"):
                faults[PRINTER_FAULT] = (psnap.error or psnap.state)[:200]
        return faults

    def driver_job(self) -> bool | None:
        """Whether the driver reports a job running; ``None`` when it has no opinion."""
        if self.printer is not None:
            return self.printer.job_active  # last known while OctoPrint is away: fail-hold
        return None

    def telemetry(self) -> dict[str, Scalar]:
        """Values for ``tele/{machine}`` (never used for metering)."""
        values: dict[str, Scalar] = {}
        power = self.power_w()
        if power is not None:
            values["power_w"] = round(power, 1)
        if self.laser is not None:
            snap = self.laser.snapshot()
            values["state"] = snap.state.value if snap.state is not None else "unknown"
            values["firing"] = snap.firing
            values["run_time_s"] = round(snap.run_time_s, 1)
        if self.printer is not None:
            psnap = self.printer.snapshot
            values["state"] = psnap.state
            if psnap.tool0 is not None and psnap.tool0.actual is not None:
                values["nozzle_c"] = psnap.tool0.actual
            if psnap.bed is not None and psnap.bed.actual is not None:
                values["bed_c"] = psnap.bed.actual
            if psnap.progress_pct is not None:
                values["progress"] = round(psnap.progress_pct, 1)
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
        elif session.state in (State.ACTIVE, State.ENDING):
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


def grbl_listener(
    machine: str, interlock: LaserInterlock, post: Callable[[DriverSignal], None]
) -> Callable[[GrblEvent], None]:
    """A GRBL listener: trip the latch at once (driver thread), then tell the agent."""
    from devices.grbl import AlarmRaised, Disconnected, DoorOpened, LaserInterlock

    def listen(event: GrblEvent) -> None:
        interlock(event)
        if isinstance(event, AlarmRaised | DoorOpened | Disconnected):
            reason = LaserInterlock.reason(event) or "GRBL fault"
            post(DriverSignal(machine, "fault", GRBL_FAULT, reason))

    return listen
