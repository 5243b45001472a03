"""One machine as the agent drives it: its session state machine and its devices.

A :class:`MachineUnit` bundles, for one machine of the edge:

* its :class:`~edge.session.SessionMachine` (pure; the agent feeds it inputs and
  executes the effects it returns);
* its output device: an :class:`~devices.actuators.Actuator` (relay, smart plug;
  always a :class:`~devices.actuators.LatchedActuator` for a laser) or, for a gaming
  PC, a :class:`~devices.pc.SessionLock`;
* its optional driver: a :class:`~devices.grbl.GrblLaser` (with a
  :class:`~devices.grbl.LaserInterlock` that trips the latch on the driver's own
  thread, milliseconds after an alarm; its run-time meter gives a laser session's
  beam-on time) or an :class:`~devices.octoprint.OctoPrintFollower` (run by
  :class:`AsyncDrivers`, watched by a :class:`PrinterWatch`);
* its badge reader, read by a :class:`ReaderThread`.

Every method here that touches an output device runs on the agent's thread (the
one owner of the devices); device errors are translated into short strings the
agent turns into ``machine_fault`` inputs. Readers and drivers run on their own
threads and only *post* to the agent's queue.

A printer's signals (:class:`PrinterWatch`, on the driver loop's thread) reach the
agent as soon as OctoPrint pushes them:

* ``PrintStarted`` → ``job_started`` (the job belongs to the session open now);
  a snapshot that shows a job nobody announced (the agent started mid-print, the
  start happened while OctoPrint was unreachable) → ``job_running``;
* ``PrintDone``/``PrintFailed``/``PrintCancelled``/``JobLost`` → ``job_ended`` with a
  :class:`~edge.session.JobReport` (OctoPrint's ``PrintFailed(reason=cancelled)``
  after a ``PrintCancelled`` is the same job: dropped here); the power is held
  until the snapshot shows no job any more (``job_done``: the printer may still be
  *Finishing* its end script when the event arrives);
* only new data releases the power: never the last known values republished when
  OctoPrint becomes unreachable, nor a snapshot within ``START_GRACE_S`` of a
  ``PrintStarted`` whose end was not announced (it may predate the start);
* the nozzle crossing ``cooldown_below_c`` → ``hot`` / ``cooled`` (last known
  while OctoPrint is unreachable: a hot printer stays hot).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from devices.actuators import Actuator, LatchedActuator
from devices.errors import DeviceError
from devices.pc import SessionLock
from devices.readers import BadgeReader
from edge.session import JobReport, SessionMachine, SessionView, State
from edge.settings import MachineSettings
from protocol.messages import Availability, JobResult, MachineAction, Scalar

if TYPE_CHECKING:
    # Drivers are imported where a machine uses them: an edge without a laser or a
    # printer does not pay for their modules.
    from devices.grbl import GrblEvent, GrblLaser, LaserInterlock
    from devices.octoprint import JobEvent, OctoPrintFollower, PrinterSnapshot

__all__ = [
    "AsyncDrivers",
    "BadgeRead",
    "DriverSignal",
    "MachineUnit",
    "MachineView",
    "PrinterWatch",
    "ReaderThread",
    "SignalKind",
]

logger = logging.getLogger(__name__)

SignalKind = Literal[
    "job_started",  # a job started now (attributed to the session open now)
    "job_running",  # a job holds the machine (start not seen, or busy by power)
    "job_ended",  # a job ended: ``DriverSignal.job`` says how (journaled once)
    "job_done",  # no job any more, the machine is idle: power may go
    "hot",  # above its safe temperature: never cut (cool-down)
    "cooled",  # below it again
    "idle",
    "fault",
    "fault_cleared",
]

#: Telemetry period of a printer while OctoPrint is followed (seconds).
PRINTER_TELE_S: Final = 1.0

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
    faulted while any source is); ``job`` describes the job of a ``job_ended``.
    """

    machine: str
    kind: SignalKind
    source: str = "driver"
    detail: str = ""
    job: JobReport | None = None


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


# --------------------------------------------------------------------------- printers

#: A snapshot showing no job this soon after a ``PrintStarted`` (and before the job's
#: end event) does not release the power: it may have been built before the start
#: (a printer is never cut on a guess).
START_GRACE_S: Final = 2.0


class PrinterWatch:
    """Turns one OctoPrint follower's events and snapshots into agent signals.

    Runs on the driver loop's thread (it is the follower's listener, see
    :meth:`attach`) and only *posts* :class:`DriverSignal` values: the agent thread
    stays the one owner of the machine. Posts happen when something changes, so a
    printer costs the agent's queue a few items per job, not one per push message.

    Args:
        machine: the machine id.
        post: the agent's queue.
        hot_from_c: the nozzle at or above this is ``hot`` (``cooldown_below_c``).
        clock: monotonic time (the start grace).
    """

    def __init__(
        self,
        machine: str,
        post: Callable[[DriverSignal], None],
        *,
        hot_from_c: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.machine = machine
        self.hot_from_c = hot_from_c
        self._post = post
        self._clock = clock
        self._snapshot: PrinterSnapshot | None = None
        #: What the agent was told last: a job holds the printer.
        self._job = False
        self._hot = False
        #: File and ``monotonic_s`` of the ``PrintStarted`` of the running job.
        self._started: tuple[str | None, float] | None = None
        self._last_start = -math.inf
        #: OctoPrint said the last job ended (the next snapshot without one is trusted).
        self._ended = True

    def attach(self, follower: OctoPrintFollower) -> None:
        """Listen to ``follower`` (before it is entered)."""
        follower.add_listener(on_event=self.on_event, on_snapshot=self.on_snapshot)

    def on_event(self, event: JobEvent) -> None:
        """A job event from OctoPrint (or the follower's own ``JobLost``)."""
        from devices.octoprint import JobEventKind

        kind = event.kind
        if kind is JobEventKind.PRINT_STARTED:
            if self._started is not None:
                logger.warning("%s: a job started while another was running", self.machine)
            self._started = (event.file_name, event.monotonic_s)
            self._last_start = self._clock()
            self._ended = False
            self._job = True
            self._signal("job_started", detail=event.file_name or "")
        elif kind in (JobEventKind.PRINT_PAUSED, JobEventKind.PRINT_RESUMED):
            self._hold()
        elif event.ends_job:
            if kind is JobEventKind.PRINT_FAILED and event.reason == "cancelled":
                return  # OctoPrint's echo of the PrintCancelled just before: same job
            self._signal("job_ended", job=self._report(event))
            self._started = None
            self._ended = True

    def on_snapshot(self, snapshot: PrinterSnapshot) -> None:
        """A new snapshot (push ``current``, safety poll, link change).

        Only new data releases the power: a link change republishes the last
        known values (``last_update`` unchanged), which prove nothing.
        """
        previous, self._snapshot = self._snapshot, snapshot
        fresh = previous is None or snapshot.last_update != previous.last_update
        settled = self._ended or self._clock() - self._last_start >= START_GRACE_S
        if snapshot.job_active:
            self._hold()
        elif self._job and fresh and settled:
            self._job = False
            self._signal("job_done")
        tool = snapshot.tool0
        if tool is not None and tool.actual is not None:
            hot = tool.actual >= self.hot_from_c
            if hot != self._hot:
                self._hot = hot
                self._signal("hot" if hot else "cooled", detail=f"{tool.actual:.0f} °C")

    def _hold(self) -> None:
        if not self._job:
            self._job = True
            self._signal("job_running")

    def _report(self, event: JobEvent) -> JobReport:
        """What the agent journals for an ended job (see :class:`JobReport`)."""
        from devices.octoprint import JobEventKind

        result = {
            JobEventKind.PRINT_DONE: JobResult.DONE,
            JobEventKind.PRINT_FAILED: JobResult.FAILED,
            JobEventKind.PRINT_CANCELLED: JobResult.CANCELLED,
        }.get(event.kind, JobResult.LOST)
        snap = self._snapshot
        started = self._started
        name = event.file_name or (snap.file_name if snap else None) or ""
        same_file = snap is not None and snap.file_name in (None, name)
        if event.print_time_s is not None:
            duration = event.print_time_s
        elif started is not None:
            duration = event.monotonic_s - started[1]
        elif same_file and snap is not None and snap.print_time_s is not None:
            duration = snap.print_time_s
        else:
            duration = 0.0
        filament = None
        if same_file and snap is not None and snap.filament_mm is not None:
            if result is JobResult.DONE:
                filament = snap.filament_mm
            elif snap.progress_pct is not None:
                filament = round(snap.filament_mm * min(100.0, snap.progress_pct) / 100, 1)
        return JobReport(name=name, result=result, duration_s=duration, filament_mm=filament)

    def _signal(self, kind: SignalKind, *, detail: str = "", job: JobReport | None = None) -> None:
        self._post(DriverSignal(self.machine, kind, "printer", detail, job))


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
    #: What the driver reports: the machine is hot (a printer's nozzle, see PrinterWatch).
    hot: bool = False
    #: Since when the power readings say "not busy" (first such reading, or the
    #: session start); ``None`` while busy.
    idle_since: float | None = 0.0
    #: Session id and monotonic start of the last session started (idle detection).
    followed: tuple[str, float] | None = None
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
            # Not connected yet, never tried and failed: the first handshake is under
            # way (about a second after start); a failed attempt sets ``error``.
            connecting = snap.error is None and snap.version is None
            if not snap.connected and not connecting:
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

    def run_time_s(self) -> float | None:
        """The driver's cumulative run-time meter (a laser's beam-on time), if any."""
        if self.laser is not None:
            return self.laser.snapshot().run_time_s
        return None

    def tele_interval_s(self, default: float) -> float:
        """Telemetry period: 1 s for a printer followed through OctoPrint while it is in
        use (a session, a job, or a nozzle still hot), else ``default``: an idle, cold
        printer has nothing to show every second."""
        if self.printer is None or not self.printer.link_up:
            return default
        if self.job or self.hot or self.session.state is not State.IDLE:
            return min(default, PRINTER_TELE_S)
        return default

    def telemetry(self, *, power: bool = True) -> dict[str, Scalar]:
        """Values for ``tele/{machine}`` (never used for metering); ``power``: ask the
        plug for its power reading too (a request to the device)."""
        values: dict[str, Scalar] = {}
        watts = self.power_w() if power else None
        if watts is not None:
            values["power_w"] = round(watts, 1)
        if self.laser is not None:
            snap = self.laser.snapshot()
            values["state"] = snap.state.value if snap.state is not None else "unknown"
            values["firing"] = snap.firing
            values["run_time_s"] = round(snap.run_time_s, 1)
        if self.printer is not None:
            values.update(printer_telemetry(self.printer.snapshot))
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


def printer_telemetry(snap: PrinterSnapshot) -> dict[str, Scalar]:
    """A printer's telemetry values: state, temperatures, progress, time left.

    Never the job's file name: file names name children (``porte-cles-lea.gcode``) and
    ``tele/+`` is read by observers and shown on the live floor; the name stays on the
    edge and in the staff-only job record (``job_ended``)."""
    values: dict[str, Scalar] = {"state": snap.state, "connected": snap.connected}
    for prefix, heater in (("nozzle", snap.tool0), ("bed", snap.bed)):
        if heater is not None:
            if heater.actual is not None:
                values[f"{prefix}_c"] = round(heater.actual, 1)
            if heater.target is not None:
                values[f"{prefix}_target_c"] = round(heater.target, 1)
    if snap.job_active:
        if snap.progress_pct is not None:
            values["progress"] = round(snap.progress_pct, 1)
        if snap.print_time_left_s is not None:
            values["time_left_s"] = round(snap.print_time_left_s)
    return values


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
