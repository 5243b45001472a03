"""A GRBL 1.1 laser controller over a serial port: state, alarms, door and run time.

The edge needs four things from a GRBL laser: whether it is reachable, what it is
doing (``Idle``, ``Run``, ``Hold``, ``Alarm``, ``Door``…), an immediate word when
something goes wrong (alarm, door opened, link lost) so it can cut the laser's
power, and how long the beam fired, metered apart from the session time.

Threading (DESIGN §5.2, one owner per connection)
-------------------------------------------------
:class:`GrblLaser` owns the port through one reader thread, started by
:meth:`~GrblLaser.open` and stopped by :meth:`~GrblLaser.close`. That thread:

1. opens the port (``exclusive``: a second program would steal the answers),
   sends a soft reset (``0x18``) so GRBL starts from a known state, and waits
   for the banner ``Grbl 1.1x ['$' for help]``; then asks ``$$`` to learn the
   laser mode (``$32``) and full power (``$30``);
2. sends ``?`` every ``poll_interval`` seconds and parses every line it gets
   (:mod:`devices.grbl.protocol`); unparseable lines are noise: counted, logged,
   ignored;
3. declares the link lost when the port vanishes (USB unplugged) or when
   ``silence_polls`` polls in a row went unanswered (:class:`~devices.errors.DeviceTimeout`),
   then reopens the port with exponential backoff and starts again at step 1.

Other threads read :meth:`~GrblLaser.snapshot` and send the few commands the edge
needs (:meth:`~GrblLaser.feed_hold`, :meth:`~GrblLaser.soft_reset`,
:meth:`~GrblLaser.unlock`); writes are serialised by a lock. Listeners receive
:data:`GrblEvent` values **on the reader thread**, and must return quickly;
:class:`~devices.grbl.interlock.LaserInterlock` is one that trips a latched
actuator on alarm, door and link loss.

Safety
------
The driver never resumes (``~``), never unlocks (``$X``) and never homes (``$H``)
by itself: only :meth:`~GrblLaser.unlock` sends ``$X`` and :meth:`~GrblLaser.home`
``$H`` (the edge's staff "re-arm" command). While a homing cycle runs, the silence
watchdog waits (GRBL does not answer ``?`` then). Closing sends a feed hold (best effort)
so the gantry does not carry on while the agent is gone; the laser's power is the
edge's actuator, which is off whenever the agent does not run.

Caveats from the GRBL interface document: GRBL does not answer ``?`` during a
homing cycle or after a critical (hard limit) alarm until a soft reset; both look
like silence and end in a reconnect, whose soft reset is harmless (it stops, it
never moves). ``clock`` only timestamps reports (run-time meter, ``last_seen``);
polling and timeouts use real time.
"""

from __future__ import annotations

import concurrent.futures
import logging
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

import serial

from devices.backoff import Backoff
from devices.errors import (
    DeviceConfigError,
    DeviceError,
    DeviceProtocolError,
    DeviceTimeout,
    DeviceUnavailable,
)
from devices.grbl.meter import RunTimeMeter
from devices.grbl.protocol import (
    FEED_HOLD,
    HOMING_SETTING,
    LASER_MODE_SETTING,
    MAX_SPINDLE_SETTING,
    SOFT_RESET,
    STATUS_QUERY,
    AlarmMessage,
    Banner,
    ErrorResponse,
    Feedback,
    GrblMessage,
    GrblState,
    LineSplitter,
    Ok,
    Setting,
    StatusReport,
    alarm_meaning,
    parse_line,
)
from devices.lifecycle import Managed

__all__ = [
    "AlarmRaised",
    "Connected",
    "ControllerReset",
    "Disconnected",
    "DoorOpened",
    "GrblEvent",
    "GrblLaser",
    "GrblListener",
    "GrblSnapshot",
    "StateChanged",
]

_LOGGER = logging.getLogger(__name__)

#: Noise lines logged as warnings per connection; the rest go to debug.
_NOISE_WARNINGS: Final = 5
#: Longest wait for the reader thread to stop on close.
_JOIN_TIMEOUT_S: Final = 3.0


# ------------------------------------------------------------------------------ events


@dataclass(frozen=True)
class Connected:
    """The link is up: the port is open and GRBL answered the reset with its banner."""

    version: str


@dataclass(frozen=True)
class Disconnected:
    """The link is lost (port vanished, or GRBL silent): the laser state is unknown."""

    error: DeviceError


@dataclass(frozen=True)
class AlarmRaised:
    """GRBL is in its alarm state; ``code`` is ``None`` when only the state said so."""

    code: int | None
    meaning: str


@dataclass(frozen=True)
class DoorOpened:
    """The safety door was opened (``Door`` state or door pin ``D`` triggered)."""


@dataclass(frozen=True)
class StateChanged:
    """The machine state changed (``previous`` is ``None`` after a connect)."""

    previous: GrblState | None
    current: GrblState


@dataclass(frozen=True)
class ControllerReset:
    """GRBL printed its banner while connected: it was reset (by us or by hand)."""

    version: str


GrblEvent = Connected | Disconnected | AlarmRaised | DoorOpened | StateChanged | ControllerReset
#: Receives events on the driver's reader thread; must be quick and must not block.
GrblListener = Callable[[GrblEvent], None]


#: Longest sleep of the serving loop waiting for a byte (``close()`` is seen this fast).
_MAX_WAIT_S: Final = 0.2


def _readable(port: Any, wait_s: float) -> bool:
    """Wait up to ``wait_s`` for ``port`` to have a byte to read.

    Uses the port's file descriptor with ``select`` (POSIX serial ports and ptys);
    a port without one (Windows, ``loop://``) is always "maybe readable", so the
    caller's read waits its own short timeout as before.
    """
    fileno = getattr(port, "fileno", None)
    if wait_s <= 0 or fileno is None:
        return True
    try:
        fd = fileno()
    except (OSError, ValueError, AttributeError):
        return True
    readable, _, _ = select.select([fd], [], [], wait_s)
    return bool(readable)


@dataclass(frozen=True)
class GrblSnapshot:
    """What the driver knows about the laser right now (read by any thread).

    Attributes:
        connected: the port is open and GRBL answered its banner.
        version: GRBL version from the last banner (``1.1h``).
        state: machine state from the last status report.
        substate: its substate (``Hold:1``, ``Door:2``…).
        alarm_code: code of the last ``ALARM:N`` while the alarm lasts.
        door_open: the last report says the door is open.
        feed: real-time feed rate.
        power: real-time spindle value, the laser power ``S`` in laser mode.
        max_power: ``$30``, the ``S`` of full power, when known.
        laser_mode: ``$32``, when known.
        homing: ``$22``, when known (a re-arm homes after unlocking).
        firing: the last report was ``Run`` with ``S`` > 0.
        run_time_s: firing time counted since the driver was built (±1 poll
            interval per firing period, see :mod:`devices.grbl.meter`).
        last_seen: ``clock()`` time of the last status report.
        reports: status reports received since the driver was built.
        noise_lines: unparseable lines received since the driver was built.
        error: why the link is down, if it is.
    """

    connected: bool = False
    version: str | None = None
    state: GrblState | None = None
    substate: int | None = None
    alarm_code: int | None = None
    door_open: bool = False
    feed: float | None = None
    power: float | None = None
    max_power: float | None = None
    laser_mode: bool | None = None
    homing: bool | None = None
    firing: bool = False
    run_time_s: float = 0.0
    last_seen: float | None = None
    reports: int = 0
    noise_lines: int = 0
    error: str | None = None

    @property
    def alarm(self) -> bool:
        """Whether GRBL is in alarm (state ``Alarm`` or an ``ALARM:N`` not yet cleared)."""
        return self.state is GrblState.ALARM or self.alarm_code is not None


# ------------------------------------------------------------------------------ driver


class GrblLaser(Managed):
    """A GRBL 1.1 laser on a serial port, followed by polling ``?``.

    Args:
        port: device path, preferably a stable ``/dev/serial/by-id/…`` link.
        baudrate: GRBL 1.1 uses 115200.
        poll_interval: seconds between ``?`` queries (GRBL answers in 5-20 ms);
            also the run-time meter's resolution.
        clock: monotonic clock timestamping status reports (injected by tests).
        silence_polls: unanswered polls in a row after which the link is lost.
        banner_timeout_s: longest wait for the banner after the soft reset (an
            Arduino reboots when the port opens, which takes 1-2 s).
        write_timeout_s: longest wait for a write to the port.
        reconnect_initial_s: first delay before reopening a lost port.
        reconnect_max_s: longest delay between reopen attempts.
        on_event: a first listener (see :meth:`add_listener`).
        hold_on_close: send a feed hold when closing.

    Raises:
        DeviceConfigError: an option is out of range.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        poll_interval: float = 0.2,
        *,
        clock: Callable[[], float] = time.monotonic,
        silence_polls: int = 10,
        banner_timeout_s: float = 3.0,
        write_timeout_s: float = 1.0,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 5.0,
        on_event: GrblListener | None = None,
        hold_on_close: bool = True,
    ) -> None:
        if not poll_interval > 0:
            raise DeviceConfigError(f"poll_interval must be > 0, not {poll_interval}")
        if silence_polls < 1:
            raise DeviceConfigError(f"silence_polls must be >= 1, not {silence_polls}")
        if not banner_timeout_s > 0 or not write_timeout_s > 0:
            raise DeviceConfigError("banner_timeout_s and write_timeout_s must be > 0")
        self.port = port
        self.baudrate = baudrate
        self.poll_interval = poll_interval
        self.silence_polls = silence_polls
        self.banner_timeout_s = banner_timeout_s
        self.write_timeout_s = write_timeout_s
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.hold_on_close = hold_on_close
        self._clock = clock
        self._listeners: tuple[GrblListener, ...] = (on_event,) if on_event else ()
        # Short read timeout: the loop polls on schedule and notices close() quickly.
        # Where the port has a file descriptor (POSIX) the loop rather sleeps in
        # select() until a byte arrives or the next poll is due: an idle laser then
        # wakes twice a poll (query, answer), not twenty times a second.
        self._read_timeout = min(0.05, poll_interval / 2)

        self._lock = threading.Lock()  # guards the state below
        self._changed = threading.Condition(self._lock)
        self._write_lock = threading.Lock()  # guards _serial and writes to it
        self._serial: Any = None  # serial.Serial while attached
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._splitter = LineSplitter()
        self._meter = RunTimeMeter()
        self._pending: deque[tuple[str, concurrent.futures.Future[GrblMessage] | None]] = deque()

        self._connected = False
        self._awaiting_banner = False
        self._banner: Banner | None = None
        self._settings_due = False
        self._homing = False
        self._unanswered = 0
        self._noise_this_link = 0
        self._snapshot = GrblSnapshot()
        self._alarm_active = False
        self._door_active = False

    def __repr__(self) -> str:
        return f"GrblLaser({self.port!r}, baudrate={self.baudrate})"

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        """Whether the link is up (port open, banner seen, answering polls)."""
        with self._lock:
            return self._connected

    def add_listener(self, listener: GrblListener) -> None:
        """Also send events to ``listener`` (called on the reader thread)."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def open(self) -> None:
        """Start the reader thread; an absent port is not an error (see ``connected``).

        Raises:
            DeviceUnavailable: already open.
        """
        if self._thread is not None:
            raise DeviceUnavailable(f"{self!r} is already open")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"grbl {self.port}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Feed hold (best effort), stop the reader thread, release the port; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self.hold_on_close:
            try:
                self._write_realtime(FEED_HOLD)
            except DeviceError as err:
                _LOGGER.debug("%r: no feed hold on close: %s", self, err)
        self._stop.set()
        thread.join(_JOIN_TIMEOUT_S)
        if thread.is_alive():
            _LOGGER.error("%r: reader thread did not stop within %.0f s", self, _JOIN_TIMEOUT_S)

    def snapshot(self) -> GrblSnapshot:
        """The laser's state as last seen (a frozen value, safe to keep)."""
        with self._lock:
            return self._snapshot

    def wait_for(
        self, predicate: Callable[[GrblSnapshot], bool], timeout: float
    ) -> GrblSnapshot | None:
        """Wait until ``predicate(snapshot)`` holds; return that snapshot, or ``None`` on timeout.

        The predicate is checked at every change of the snapshot, so nothing is
        polled and nothing sleeps longer than needed.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self._snapshot):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)
            return self._snapshot

    def feed_hold(self) -> None:
        """Send the real-time feed hold ``!``: motion decelerates and stops (``Hold``).

        Raises:
            DeviceUnavailable: the port is not open or the write failed.
        """
        self._write_realtime(FEED_HOLD)
        _LOGGER.info("%r: feed hold sent", self)

    def soft_reset(self) -> None:
        """Send the real-time soft reset ``0x18``: everything stops, GRBL re-initialises.

        A reset during motion raises ``ALARM:3`` (position lost). GRBL answers with
        its banner, reported as :class:`ControllerReset`.

        Raises:
            DeviceUnavailable: the port is not open or the write failed.
        """
        self._write_realtime(SOFT_RESET)
        _LOGGER.info("%r: soft reset sent", self)

    def unlock(self, timeout: float = 2.0) -> None:
        """Send ``$X`` to leave the alarm state (kill alarm lock). Only on explicit request.

        Raises:
            DeviceUnavailable: not connected, or the link was lost meanwhile.
            DeviceTimeout: GRBL did not answer within ``timeout`` seconds.
            DeviceProtocolError: GRBL refused (``error:N``, with its meaning).
        """
        self._run_line("$X", timeout)
        _LOGGER.warning("%r: alarm lock cleared by explicit $X", self)

    def home(self, timeout: float = 120.0) -> None:
        """Run the homing cycle ``$H`` and wait for its ``ok``. Only on explicit request.

        GRBL does not answer status queries while it homes: the silence watchdog
        waits for the cycle (at most ``timeout``).

        Raises:
            DeviceUnavailable: not connected, or the link was lost meanwhile.
            DeviceTimeout: the cycle did not end within ``timeout`` seconds.
            DeviceProtocolError: GRBL refused (``error:5``: homing not enabled) or the
                cycle failed.
        """
        self._homing = True
        try:
            self._run_line("$H", timeout)
        finally:
            self._homing = False
            self._unanswered = 0
        _LOGGER.warning("%r: homing cycle done ($H)", self)

    def _run_line(self, line: str, timeout: float) -> None:
        future = self._send_line(line)
        try:
            result = future.result(timeout)
        except concurrent.futures.TimeoutError as err:
            raise DeviceTimeout(f"{self!r}: no answer to {line} within {timeout} s") from err
        if isinstance(result, ErrorResponse):
            raise DeviceProtocolError(
                f"{self!r}: GRBL refused {line}: error:{result.code} ({result.meaning})"
            )

    # ------------------------------------------------------------------ writing

    def _write_realtime(self, command: bytes) -> None:
        with self._write_lock:
            self._write_locked(command)

    def _send_line(self, line: str) -> concurrent.futures.Future[GrblMessage]:
        future: concurrent.futures.Future[GrblMessage] = concurrent.futures.Future()
        with self._write_lock:
            if not self.connected:
                raise DeviceUnavailable(f"{self!r} is not connected")
            with self._lock:  # registered before writing: the answer may be instant
                self._pending.append((line, future))
            self._write_locked(line.encode("ascii") + b"\n")
        return future

    def _write_locked(self, data: bytes) -> None:
        """Write ``data`` to the port; the caller holds ``_write_lock``."""
        port = self._serial
        if port is None:
            raise DeviceUnavailable(f"{self!r} is not connected")
        try:
            port.write(data)
        except serial.SerialTimeoutException as err:
            raise DeviceTimeout(f"{self!r}: write timed out") from err
        except (serial.SerialException, OSError) as err:
            raise DeviceUnavailable(f"{self!r}: write failed: {err}") from err

    # ------------------------------------------------------------------ reader thread

    def _run(self) -> None:
        """The reader thread: connect, serve, and reconnect with backoff until closed."""
        backoff = Backoff(self.reconnect_initial_s, self.reconnect_max_s)
        absent_reported = False
        while not self._stop.is_set():
            try:
                self._attach()
                self._handshake()
            except Exception as exc:  # DeviceError expected; anything else is a bug, kept alive
                err = exc if isinstance(exc, DeviceError) else self._fault(exc)
                if self._stop.is_set():  # closed during the handshake: not a failure
                    self._detach(None)
                    break
                self._detach(err)
                delay = backoff.failed()
                if absent_reported:
                    _LOGGER.debug("%r: still unavailable (%s); retry in %.1f s", self, err, delay)
                else:
                    _LOGGER.warning("%r: unavailable (%s); retrying", self, err)
                    absent_reported = True
                self._stop.wait(delay)
                continue
            connected_at = time.monotonic()
            absent_reported = False
            try:
                self._serve()
            except DeviceError as err:
                _LOGGER.warning("%r: link lost (%s); reconnecting", self, err)
                self._lost(err)
                absent_reported = True
            except Exception as exc:  # a bug must not leave a laser unwatched in silence
                self._lost(self._fault(exc))
                absent_reported = True
            finally:
                self._detach(None)
            if self._stop.is_set():
                break
            # Only a link that held resets the backoff: a flapping port is retried
            # ever slower instead of resetting the controller twice a second.
            if time.monotonic() - connected_at >= backoff.max_s:
                backoff.succeeded()
            self._stop.wait(backoff.failed())

    def _fault(self, exc: Exception) -> DeviceError:
        """Log an unexpected exception of the reader thread; report it as a driver fault."""
        _LOGGER.error("%r: driver fault; reconnecting", self, exc_info=exc)
        return DeviceProtocolError(f"driver fault: {exc!r}")

    def _attach(self) -> None:
        self._splitter.reset()
        try:
            port = serial.Serial(
                port=self.port,
                baudrate=self.baudrate,
                timeout=self._read_timeout,
                write_timeout=self.write_timeout_s,
                exclusive=True,
            )
        except ValueError as err:
            raise DeviceConfigError(f"{self!r}: invalid serial settings: {err}") from err
        except (serial.SerialException, OSError) as err:
            raise DeviceUnavailable(str(err)) from err
        with self._write_lock:
            self._serial = port

    def _detach(self, error: DeviceError | None) -> None:
        with self._write_lock:
            port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as err:
                _LOGGER.debug("%r: error while closing: %s", self, err)
        with self._lock:
            pending = list(self._pending)
            self._pending.clear()
            self._connected = False
            self._awaiting_banner = False
            self._meter.interrupt()
            self._update(
                connected=False,
                firing=False,
                error=str(error) if error else self._snapshot.error,
            )
        self._fail_pending(pending, f"{self!r}: link closed")

    def _handshake(self) -> None:
        """Soft reset, wait for the banner, ask for the settings; then the link is up."""
        with self._lock:
            self._awaiting_banner = True
            self._banner = None
        self._write_realtime(SOFT_RESET)
        deadline = time.monotonic() + self.banner_timeout_s
        while True:
            with self._lock:
                banner = self._banner
            if banner is not None:
                break
            if self._stop.is_set():
                raise DeviceUnavailable(f"{self!r} is closing")
            if time.monotonic() >= deadline:
                raise DeviceTimeout(
                    f"no GRBL banner within {self.banner_timeout_s} s after a soft reset"
                )
            self._pump()
        if not banner.supported:
            raise DeviceProtocolError(f"GRBL {banner.version} is not supported (needs 1.1)")
        self._unanswered = 0
        self._noise_this_link = 0
        with self._lock:
            self._connected = True
            self._update(connected=True, version=banner.version, error=None)
        _LOGGER.info("%r: connected to GRBL %s", self, banner.version)
        self._emit([Connected(banner.version)])
        self._query_settings()

    def _query_settings(self) -> None:
        """Ask ``$$``; the ``$32``/``$30`` lines are picked up whenever they arrive."""
        self._settings_due = False
        with self._write_lock:
            with self._lock:
                self._pending.append(("$$", None))
            self._write_locked(b"$$\n")

    def _serve(self) -> None:
        """Poll ``?`` on schedule and dispatch lines until the link fails or close()."""
        next_poll = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_poll:
                if self._homing:  # GRBL is silent while it homes (see home())
                    self._unanswered = 0
                if self._unanswered >= self.silence_polls:
                    raise DeviceTimeout(f"no status report for {self._unanswered} polls")
                self._write_realtime(STATUS_QUERY)
                self._unanswered += 1
                next_poll += self.poll_interval
                if next_poll <= now:  # fell behind (slow machine): do not burst
                    next_poll = now + self.poll_interval
            if self._settings_due:
                self._query_settings()
            self._pump(next_poll - time.monotonic())

    def _pump(self, wait_s: float = 0.0) -> None:
        """Read what arrived (waiting up to ``wait_s``, at most ``_MAX_WAIT_S``, for the
        first byte) and handle each complete line."""
        port = self._serial
        try:
            if not port.in_waiting and not _readable(port, min(wait_s, _MAX_WAIT_S)):
                return
            data: bytes = port.read(max(1, port.in_waiting))
        except (serial.SerialException, OSError) as err:
            raise DeviceUnavailable(f"port lost: {err}") from err
        if not data:
            return
        at = self._clock()
        for line in self._splitter.feed(data):
            self._handle_line(line, at)

    def _handle_line(self, line: str, at: float) -> None:
        try:
            message = parse_line(line)
        except DeviceProtocolError as err:
            self._noise(err)
            return
        events: list[GrblEvent] = []
        resolved: list[tuple[str, concurrent.futures.Future[GrblMessage] | None]] = []
        failed: list[tuple[str, concurrent.futures.Future[GrblMessage] | None]] = []
        with self._lock:
            if isinstance(message, StatusReport):
                self._on_status(message, at, events)
            elif isinstance(message, Ok | ErrorResponse):
                if self._pending:
                    resolved.append(self._pending.popleft())
                else:
                    _LOGGER.debug("%r: %r without a pending line", self, message)
            elif isinstance(message, AlarmMessage):
                self._alarm_active = True
                self._update(alarm_code=message.code)
                events.append(AlarmRaised(message.code, message.meaning))
            elif isinstance(message, Banner):
                failed = list(self._pending)
                self._pending.clear()
                self._unanswered = 0
                if self._awaiting_banner:
                    self._awaiting_banner = False
                    self._banner = message
                else:
                    _LOGGER.warning("%r: GRBL was reset (banner %s)", self, message.version)
                    self._settings_due = True
                    self._update(version=message.version)
                    events.append(ControllerReset(message.version))
            elif isinstance(message, Setting):
                if message.number == LASER_MODE_SETTING:
                    self._update(laser_mode=message.value != 0)
                elif message.number == HOMING_SETTING:
                    self._update(homing=message.value != 0)
                elif message.number == MAX_SPINDLE_SETTING:
                    self._update(max_power=message.value)
            elif isinstance(message, Feedback) and message.kind == "MSG":
                _LOGGER.info("%r: GRBL says %s", self, message.text)
            else:
                _LOGGER.debug("%r: %r", self, message)
        for line_sent, future in resolved:
            self._resolve(line_sent, future, message)
        self._fail_pending(failed, f"{self!r}: GRBL was reset before answering")
        self._emit(events)

    def _on_status(self, report: StatusReport, at: float, events: list[GrblEvent]) -> None:
        """Apply a status report; the caller holds ``_lock``."""
        self._unanswered = 0
        previous = self._snapshot.state
        self._meter.observe(at, report.firing)
        if previous is not report.state:
            events.append(StateChanged(previous, report.state))
        alarm_code = self._snapshot.alarm_code
        if report.state is GrblState.ALARM:
            if not self._alarm_active:
                self._alarm_active = True
                meaning = alarm_meaning(alarm_code) if alarm_code else "alarm state"
                events.append(AlarmRaised(alarm_code, meaning))
        else:
            self._alarm_active = False
            alarm_code = None
        door = report.door_open or report.state is GrblState.DOOR
        if door and not self._door_active:
            events.append(DoorOpened())
        self._door_active = door
        self._update(
            state=report.state,
            substate=report.substate,
            alarm_code=alarm_code,
            door_open=report.door_open,
            feed=report.feed,
            power=report.spindle,
            firing=report.firing,
            run_time_s=self._meter.total_s,
            last_seen=at,
            reports=self._snapshot.reports + 1,
        )

    def _resolve(
        self,
        line: str,
        future: concurrent.futures.Future[GrblMessage] | None,
        answer: GrblMessage,
    ) -> None:
        if future is not None:
            future.set_result(answer)
        elif isinstance(answer, ErrorResponse):
            _LOGGER.warning(
                "%r: GRBL refused %r: error:%d (%s)", self, line, answer.code, answer.meaning
            )

    def _fail_pending(
        self,
        pending: list[tuple[str, concurrent.futures.Future[GrblMessage] | None]],
        reason: str,
    ) -> None:
        for _, future in pending:
            if future is not None and not future.done():
                future.set_exception(DeviceUnavailable(reason))

    def _lost(self, error: DeviceError) -> None:
        with self._lock:
            was_connected = self._connected
            self._connected = False
            self._meter.interrupt()
            # The machine state is unknown now; an alarm or open door still there
            # after the reconnect is reported again (tripping a latch twice is harmless).
            self._alarm_active = self._door_active = False
            self._update(
                connected=False,
                state=None,
                substate=None,
                door_open=False,
                feed=None,
                power=None,
                firing=False,
                error=str(error),
            )
        if was_connected:
            self._emit([Disconnected(error)])

    def _noise(self, error: DeviceProtocolError) -> None:
        self._noise_this_link += 1
        with self._lock:
            self._update(noise_lines=self._snapshot.noise_lines + 1)
        if self._noise_this_link <= _NOISE_WARNINGS:
            _LOGGER.warning("%r: ignored: %s", self, error)
        else:
            _LOGGER.debug("%r: ignored: %s", self, error)

    def _update(self, **changes: Any) -> None:
        """Replace the snapshot and wake waiters; the caller holds ``_lock``."""
        self._snapshot = replace(self._snapshot, **changes)
        self._changed.notify_all()

    def _emit(self, events: list[GrblEvent]) -> None:
        with self._lock:
            listeners = self._listeners
        for event in events:
            _LOGGER.debug("%r: event %r", self, event)
            for listener in listeners:
                try:
                    listener(event)
                except Exception:  # a listener bug must not stop the watch on the laser
                    _LOGGER.exception("%r: listener %r failed on %r", self, listener, event)
