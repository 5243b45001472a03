"""A scripted GRBL 1.1 controller on the master side of a pseudo-terminal.

It follows gnea/grbl ``doc/markdown/interface.md`` and ``realtime_cmds.md`` closely
enough to exercise the driver over a real serial line (pyserial on the pty slave):

* real-time bytes act at once and never enter the line buffer: ``?`` answers a
  status report (unless :attr:`GrblPeer.answer_status` is off, as during homing
  or after a critical alarm), ``!`` holds a running job, ``~`` resumes it,
  ``0x18`` resets: ``ALARM:3`` first if it was moving, then the banner, then
  ``[MSG:'$H'|'$X' to unlock]`` if it is in alarm;
* lines end with ``\\n``: ``$$`` prints the settings, ``$X`` unlocks an alarm,
  ``$G`` prints the parser state, a line in :attr:`GrblPeer.errors` gets
  ``error:N``, one in :attr:`GrblPeer.unanswered` nothing, anything else ``ok``;
* the first report after a reset carries ``WCO:``, the second ``Ov:`` (and
  ``A:S`` while the laser is on), as GRBL does.

The test scripts the machine with :meth:`~GrblPeer.set_state`,
:meth:`~GrblPeer.alarm`, :meth:`~GrblPeer.send` (any line, noise included) and
pulls the cable with :meth:`~GrblPeer.drop` / :meth:`~GrblPeer.replug`.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.devices.conftest import PtyPort

BANNER = "Grbl 1.1h ['$' for help]"


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


class GrblPeer:
    """A GRBL 1.1 controller answering on ``port.master`` from its own thread.

    Args:
        port: the pty pair; the driver opens ``port.path``.
        banner: what to print on reset (``None``: a device that never answers).
        settings: the ``$$`` print-out (``$32=1`` laser mode, ``$30`` full power).
    """

    def __init__(
        self,
        port: PtyPort,
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
        self._reports_since_reset = 0
        self._lock = threading.Condition()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._line = bytearray()

    # ---------------------------------------------------------------- scripting

    def start(self) -> GrblPeer:
        """Start answering on the current master fd."""
        assert self._thread is None
        self._stop.clear()
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
        """Report this machine state from the next ``?`` on."""
        with self._lock:
            self._machine = PeerState(state, sub, feed, power, pins, self._machine.mpos)

    @property
    def state(self) -> PeerState:
        """The machine state reported now."""
        with self._lock:
            return self._machine

    def alarm(self, code: int) -> None:
        """Raise ``ALARM:code`` like GRBL: the line at once, then the ``Alarm`` state."""
        with self._lock:
            self._machine = PeerState("Alarm", mpos=self._machine.mpos)
        self.send(f"ALARM:{code}")

    def send(self, line: str) -> None:
        """Push one line, as GRBL pushes its messages (``\\r\\n`` appended)."""
        self.send_raw(line.encode("latin-1") + b"\r\n")

    def send_raw(self, data: bytes) -> None:
        """Push raw bytes (noise, partial lines)."""
        with self._write_lock:
            assert self.port.master is not None, "unplugged"
            os.write(self.port.master, data)

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
        assert master is not None
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([master], [], [], 0.02)
                if not ready:
                    continue
                data = os.read(master, 1024)
            except OSError:
                return  # the driver closed the slave side, or we were unplugged
            for byte in data:
                self._byte(byte)

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
            machine = self._machine
            if char == b"!" and machine.state in ("Run", "Jog"):
                self._machine = PeerState("Hold", 0, mpos=machine.mpos)
            elif char == b"~" and machine.state == "Hold":
                self._machine = PeerState("Run", feed=machine.feed, power=machine.power)
        if char == b"\x18":
            self._reset(machine)

    def _reset(self, before: PeerState) -> None:
        self._line.clear()
        moving = before.state in ("Run", "Jog") or (before.state, before.sub) == ("Hold", 1)
        if moving:
            self.send("ALARM:3")
        alarm = moving or before.state == "Alarm"
        with self._lock:
            self._machine = PeerState("Alarm" if alarm else "Idle", mpos=before.mpos)
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
                    self._machine = PeerState("Idle", mpos=self._machine.mpos)
            self.send("[MSG:Caution: Unlocked]")
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
