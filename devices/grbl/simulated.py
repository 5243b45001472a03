"""A simulated GRBL 1.1 laser controller on a real pseudo-terminal, and a laser that uses it.

:class:`GrblPeer` answers on the master side of a pty the way gnea/grbl's
``doc/markdown/interface.md`` and ``realtime_cmds.md`` describe, so that the real
driver (:class:`~devices.grbl.GrblLaser`, pyserial on the pty's slave) exchanges real
bytes with it:

* real-time bytes act at once and never enter the line buffer: ``?`` answers a
  status report (unless :attr:`GrblPeer.answer_status` is off, as during homing
  or after a critical alarm), ``!`` holds a running job, ``~`` resumes it (from
  ``Hold:0``, or from ``Door:0`` once the door is closed), ``0x18`` resets:
  ``ALARM:3`` first if it was moving, then the banner, then
  ``[MSG:'$H'|'$X' to unlock]`` if it is in alarm;
* lines end with ``\\n``: ``$$`` prints the settings, ``$X`` unlocks an alarm,
  ``$H`` homes (leaves the alarm; ``error:5`` unless ``$22=1``),
  ``$G`` prints the parser state, a line in :attr:`GrblPeer.errors` gets
  ``error:N``, one in :attr:`GrblPeer.unanswered` nothing, anything else ``ok``;
* the first report after a reset carries ``WCO:``, the second ``Ov:`` (and
  ``A:S`` while the laser is on), as GRBL does;
* a job (:meth:`GrblPeer.start_job`) is ``Run`` with the laser power ``S`` > 0 and
  a moving position for a given time, then ``Idle``; a feed hold or an open door
  stops its clock, a reset or an alarm ends it.

Tests script the machine with :meth:`~GrblPeer.set_state`, :meth:`~GrblPeer.alarm`,
:meth:`~GrblPeer.send` (any line, noise included) and pull the cable with
:meth:`~GrblPeer.drop` / :meth:`~GrblPeer.replug`.

:class:`SimulatedGrblLaser` is the real :class:`~devices.grbl.GrblLaser` whose
serial port is a pty served by its own :class:`GrblPeer`: ``open()`` creates the
pty and starts the peer before the driver opens the slave, ``close()`` stops both.
The demo makes it cut (:meth:`~SimulatedGrblLaser.cut`), trips alarms and opens
the door; everything the edge sees goes through the real driver and protocol.
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from devices.errors import DeviceConfigError, DeviceUnavailable
from devices.grbl.driver import GrblLaser

__all__ = [
    "BANNER",
    "GrblPeer",
    "PeerPort",
    "PeerState",
    "PtyPair",
    "Received",
    "SimulatedGrblLaser",
]

BANNER = "Grbl 1.1h ['$' for help]"


class PeerPort(Protocol):
    """The pty a :class:`GrblPeer` answers on: its master fd and how to (un)plug it."""

    @property
    def master(self) -> int | None: ...

    def plug(self) -> None: ...

    def unplug(self) -> None: ...


class PtyPair:
    """A pseudo-terminal pair in raw mode; a serial driver opens :attr:`path`."""

    def __init__(self) -> None:
        self.master: int | None = None
        self.slave: int | None = None
        self.path = ""

    def plug(self) -> None:
        """Create the pair (raw at once: no echo or line buffering before pyserial)."""
        if self.master is not None:
            raise DeviceUnavailable("the pty is already plugged")
        master, slave = os.openpty()
        tty.setraw(slave)
        self.master, self.slave = master, slave
        self.path = os.ttyname(slave)

    def unplug(self) -> None:
        """Close the pair: the driver's next read fails as for a pulled cable."""
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None


@dataclass
class PeerState:
    """What the simulated machine is doing; formatted into each status report."""

    state: str = "Idle"
    sub: int | None = None
    feed: float = 0.0
    power: float = 0.0
    pins: str = ""
    mpos: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class Received:
    """Everything the peer got from the driver, in order."""

    realtime: list[bytes] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    status_queries: int = 0


@dataclass
class _Job:
    """A running cut: how long it still fires, at what feed and power."""

    remaining_s: float
    feed: float
    power: float
    elapsed_s: float = 0.0


class GrblPeer:
    """A GRBL 1.1 controller answering on ``port.master`` from its own thread.

    Args:
        port: the pty pair; the driver opens its slave.
        banner: what to print on reset (``None``: a device that never answers).
        settings: the ``$$`` print-out (``$32=1`` laser mode, ``$30`` full power).
    """

    def __init__(
        self,
        port: PeerPort,
        banner: str | None = BANNER,
        settings: dict[int, float] | None = None,
    ) -> None:
        self.port = port
        self.banner = banner
        self.settings = settings if settings is not None else {30: 1000.0, 32: 1.0}
        self.errors: dict[str, int] = {}
        self.unanswered: set[str] = set()
        self.answer_status = True
        self.received = Received()
        self._machine = PeerState()
        self._job: _Job | None = None
        self._door_open = False
        self._reports_since_reset = 0
        self._lock = threading.Condition()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._line = bytearray()
        self._last_tick = time.monotonic()

    # ---------------------------------------------------------------- scripting

    def start(self) -> GrblPeer:
        """Start answering on the current master fd."""
        if self._thread is not None:
            raise DeviceUnavailable("the GRBL peer is already running")
        self._stop.clear()
        self._last_tick = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="grbl peer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering (the port stays plugged)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(2.0)

    def drop(self) -> None:
        """Pull the cable: stop and close the pty pair (the driver reads EIO)."""
        self.stop()
        self.port.unplug()

    def replug(self) -> None:
        """Plug back as a new pty behind the same link, like a replugged USB device."""
        self.port.plug()
        self._line.clear()
        self.start()

    def set_state(
        self,
        state: str,
        sub: int | None = None,
        *,
        feed: float = 0.0,
        power: float = 0.0,
        pins: str = "",
    ) -> None:
        """Report this machine state from the next ``?`` on (any job is forgotten)."""
        with self._lock:
            self._job = None
            self._machine = PeerState(state, sub, feed, power, pins, self._machine.mpos)

    @property
    def state(self) -> PeerState:
        """The machine state reported now."""
        with self._lock:
            return self._machine

    @property
    def cutting(self) -> bool:
        """Whether a job is under way (running, held, or stopped by the door)."""
        with self._lock:
            return self._job is not None

    def start_job(self, seconds: float, *, feed: float = 1500.0, power: float = 800.0) -> None:
        """Cut for ``seconds`` of firing: ``Run`` with ``S`` = ``power``, then ``Idle``.

        Raises:
            DeviceUnavailable: the machine is not ``Idle`` (alarm, door, already running).
        """
        with self._lock:
            if self._machine.state != "Idle":
                raise DeviceUnavailable(f"GRBL is {self._machine.state}: cannot start a job")
            self._job = _Job(max(0.0, seconds), feed, power)
            self._last_tick = time.monotonic()  # the job's time starts now, not at the last tick
            self._machine = replace(self._machine, state="Run", sub=None, feed=feed, power=power)

    def alarm(self, code: int) -> None:
        """Raise ``ALARM:code`` like GRBL: the line at once, then the ``Alarm`` state."""
        with self._lock:
            self._job = None
            self._machine = PeerState("Alarm", mpos=self._machine.mpos)
        self.send(f"ALARM:{code}")

    def open_door(self) -> None:
        """Open the safety door: the beam stops, ``Door:1`` with pin ``D`` until closed."""
        with self._lock:
            self._door_open = True
            if self._machine.state in ("Alarm", "Sleep"):
                self._machine = replace(self._machine, pins="D")
            else:
                self._machine = PeerState("Door", 1, pins="D", mpos=self._machine.mpos)

    def close_door(self) -> None:
        """Close the door: ``Door:0`` (a job waits for ``~`` or a reset), else ``Idle``."""
        with self._lock:
            self._door_open = False
            machine = self._machine
            if machine.state != "Door":
                self._machine = replace(machine, pins="")
            elif self._job is not None:
                self._machine = PeerState("Door", 0, mpos=machine.mpos)
            else:
                self._machine = PeerState("Idle", mpos=machine.mpos)

    def send(self, line: str) -> None:
        """Push one line, as GRBL pushes its messages (``\\r\\n`` appended)."""
        self.send_raw(line.encode("latin-1") + b"\r\n")

    def send_raw(self, data: bytes) -> None:
        """Push raw bytes (noise, partial lines).

        Raises:
            DeviceUnavailable: the pty is unplugged.
        """
        with self._write_lock:
            master = self.port.master
            if master is None:
                raise DeviceUnavailable("the GRBL peer is unplugged")
            os.write(master, data)

    def wait_for(self, condition: Callable[[Received], bool], timeout: float = 3.0) -> bool:
        """Wait until ``condition(received)`` holds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not condition(self.received):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    # ---------------------------------------------------------------- the controller

    def _run(self) -> None:
        master = self.port.master
        if master is None:
            return
        while not self._stop.is_set():
            self._tick()
            # 50 Hz while a job moves the head, otherwise only woken by the driver.
            wait = 0.02 if self._job is not None else 0.2
            try:
                ready, _, _ = select.select([master], [], [], wait)
                if not ready:
                    continue
                data = os.read(master, 1024)
            except OSError:
                return  # the driver closed the slave side, or we were unplugged
            for byte in data:
                self._byte(byte)

    def _tick(self) -> None:
        """Advance a running job: move the head, stop firing when its time is up."""
        now = time.monotonic()
        dt, self._last_tick = now - self._last_tick, now
        with self._lock:
            job, machine = self._job, self._machine
            if job is None or machine.state != "Run":
                return
            job.remaining_s -= dt
            job.elapsed_s += dt
            if job.remaining_s <= 0:
                self._job = None
                self._machine = PeerState("Idle", mpos=machine.mpos)
                return
            # A raster sweep over a 300 x 200 mm bed at the job's feed (mm/min).
            travel = job.elapsed_s * job.feed / 60.0
            x = 150.0 + 140.0 * math.sin(travel / 140.0)
            y = (travel / 20.0) % 200.0
            self._machine = replace(machine, mpos=(round(x, 3), round(y, 3), 0.0))

    def _byte(self, byte: int) -> None:
        char = bytes([byte])
        if char == b"?":
            with self._lock:
                self.received.status_queries += 1
                self._lock.notify_all()
            if self.answer_status:
                self.send(self._report())
        elif char in (b"!", b"~", b"\x18"):
            with self._lock:
                self.received.realtime.append(char)
                self._lock.notify_all()
            self._realtime(char)
        elif char == b"\n":
            line = self._line.decode("ascii", errors="replace").strip()
            self._line.clear()
            with self._lock:
                self.received.lines.append(line)
                self._lock.notify_all()
            self._command(line)
        elif char != b"\r":
            self._line.extend(char)

    def _realtime(self, char: bytes) -> None:
        with self._lock:
            machine, job = self._machine, self._job
            if char == b"!" and machine.state in ("Run", "Jog"):
                self._machine = PeerState("Hold", 0, mpos=machine.mpos)
            elif char == b"~" and (
                machine.state == "Hold" or (machine.state, machine.sub) == ("Door", 0)
            ):
                if job is not None:
                    self._machine = PeerState(
                        "Run", feed=job.feed, power=job.power, mpos=machine.mpos
                    )
                elif machine.state == "Hold":
                    self._machine = PeerState("Run", feed=machine.feed, power=machine.power)
                else:
                    self._machine = PeerState("Idle", mpos=machine.mpos)
        if char == b"\x18":
            self._reset(machine)

    def _reset(self, before: PeerState) -> None:
        self._line.clear()
        moving = before.state in ("Run", "Jog") or (before.state, before.sub) == ("Hold", 1)
        if moving:
            self.send("ALARM:3")
        alarm = moving or before.state == "Alarm"
        with self._lock:
            self._job = None
            pins = "D" if self._door_open else ""
            self._machine = PeerState("Alarm" if alarm else "Idle", pins=pins, mpos=before.mpos)
            self._reports_since_reset = 0
        if self.banner is None:
            return
        self.send(self.banner)
        if alarm:
            self.send("[MSG:'$H'|'$X' to unlock]")

    def _command(self, line: str) -> None:
        if line in self.unanswered:
            return
        if line in self.errors:
            self.send(f"error:{self.errors[line]}")
        elif line == "$$":
            for number, value in sorted(self.settings.items()):
                self.send(f"${number}={value:g}")
            self.send("ok")
        elif line == "$X":
            with self._lock:
                if self._machine.state == "Alarm":
                    pins = "D" if self._door_open else ""
                    self._machine = PeerState("Idle", pins=pins, mpos=self._machine.mpos)
            self.send("[MSG:Caution: Unlocked]")
            self.send("ok")
        elif line == "$H":
            if not self.settings.get(22):
                self.send("error:5")
                return
            with self._lock:
                pins = "D" if self._door_open else ""
                self._machine = PeerState("Idle", pins=pins, mpos=(0.0, 0.0, 0.0))
            self.send("ok")
        elif line == "$G":
            self.send("[GC:G0 G54 G17 G21 G90 G94 M5 M9 T0 F0 S0]")
            self.send("ok")
        else:
            self.send("ok")

    def _report(self) -> str:
        with self._lock:
            machine = self._machine
            self._reports_since_reset += 1
            nth = self._reports_since_reset
        state = machine.state if machine.sub is None else f"{machine.state}:{machine.sub}"
        x, y, z = machine.mpos
        fields = [state, f"MPos:{x:.3f},{y:.3f},{z:.3f}", "Bf:15,128"]
        fields.append(f"FS:{machine.feed:g},{machine.power:g}")
        if machine.pins:
            fields.append(f"Pn:{machine.pins}")
        if nth == 1:
            fields.append("WCO:0.000,0.000,0.000")
        elif nth == 2:
            fields.append("Ov:100,100,100")
            if machine.power > 0:
                fields.append("A:S")
        return "<" + "|".join(fields) + ">"


class SimulatedGrblLaser(GrblLaser):
    """The real GRBL driver on a pty served by its own :class:`GrblPeer`.

    The constructor only assigns; :meth:`open` creates the pty, starts the peer on
    its master side and opens the driver on its slave; :meth:`close` closes the
    driver, then stops the peer and closes the pty. Between the two, :meth:`cut`,
    :meth:`trip_alarm`, :meth:`open_door` and :meth:`close_door` play the machine
    (from any thread); the driver learns of it by its own polls, as with a real laser.

    Args:
        poll_interval: the driver's status poll period (see :class:`GrblLaser`).
        speed: simulated seconds per real second (the demo's time-lapse): cuts last
            ``seconds / speed`` real seconds and, unless a ``clock`` is given, the
            driver's clock runs ``speed`` times faster, so its run-time meter
            counts simulated seconds (polling still uses real time).
        settings: the peer's ``$$`` settings (``$30`` full power, ``$32`` laser mode).
        kwargs: the other :class:`GrblLaser` options (clock, listeners, timeouts…).

    Raises:
        DeviceConfigError: an option is out of range.
    """

    def __init__(
        self,
        poll_interval: float = 0.2,
        *,
        speed: float = 1.0,
        settings: dict[int, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not speed > 0:
            raise DeviceConfigError(f"speed must be > 0, not {speed}")
        if speed != 1.0 and "clock" not in kwargs:
            kwargs["clock"] = lambda: time.monotonic() * speed
        super().__init__("simulated", 115200, poll_interval, **kwargs)
        self.speed = speed
        self._peer_settings = settings
        self._pty: PtyPair | None = None
        self._peer: GrblPeer | None = None

    def __repr__(self) -> str:
        return f"SimulatedGrblLaser({self.port!r})"

    @property
    def peer(self) -> GrblPeer:
        """The simulated controller (while open).

        Raises:
            DeviceUnavailable: the laser is not open.
        """
        if self._peer is None:
            raise DeviceUnavailable(f"{self!r} is not open")
        return self._peer

    def open(self) -> None:
        """Create the pty, start the peer, then open the driver on the pty's slave.

        Raises:
            DeviceUnavailable: already open.
        """
        if self._peer is not None:
            raise DeviceUnavailable(f"{self!r} is already open")
        pty = PtyPair()
        pty.plug()
        peer = GrblPeer(pty, settings=self._peer_settings).start()
        self._pty, self._peer = pty, peer
        self.port = pty.path
        try:
            super().open()
        except BaseException:
            self._release()
            raise

    def close(self) -> None:
        """Close the driver (feed hold first, as always), then the peer and the pty."""
        try:
            super().close()
        finally:
            self._release()

    def _release(self) -> None:
        peer, pty = self._peer, self._pty
        self._peer = self._pty = None
        if peer is not None:
            peer.stop()
        if pty is not None:
            pty.unplug()

    # ---------------------------------------------------------------- the machine

    def cut(self, seconds: float, *, power: float = 800.0, feed: float = 1500.0) -> None:
        """Fire for ``seconds`` (simulated): ``Run`` with ``S`` = ``power``, then ``Idle``.

        Raises:
            DeviceUnavailable: not open, or the machine is not ``Idle``.
        """
        self.peer.start_job(seconds / self.speed, feed=feed, power=power)

    @property
    def cutting(self) -> bool:
        """Whether a cut is under way on the simulated machine."""
        peer = self._peer
        return peer is not None and peer.cutting

    def trip_alarm(self, code: int = 1) -> None:
        """Raise ``ALARM:code`` (1: hard limit); it lasts until ``$X`` (:meth:`unlock`)."""
        self.peer.alarm(code)

    def open_door(self) -> None:
        """Open the safety door (the driver reports it; the edge cuts the power)."""
        self.peer.open_door()

    def close_door(self) -> None:
        """Close the safety door (``Door:0``: GRBL waits for a resume)."""
        self.peer.close_door()
