"""Busy and idle from a plug's power reading: the power watcher of one machine.

A machine on a metering plug with ``busy_above_w`` (generic machines: a soldering
station, a sewing machine) is followed by its power, sampled at every telemetry
(``tele_interval_s``). :class:`PowerWatch` turns each reading into the agent's
signals, as :class:`~edge.kinds.printer.PrinterWatch` does for OctoPrint's pushes:

* at or above the threshold the machine is busy (``job_running``), below it idle
  again (``job_done``): the floor view shows a job, and an idle timeout never ends
  a session while busy;
* ``idle_timeout_min`` below the threshold during a session → ``idle`` (the session
  ends). The timeout counts from the first reading below the threshold (or the
  session start), so a gap in the readings (plug unreachable, a clock that jumped)
  never ends a session on a single reading.

Pure: no I/O, the agent passes the reading and its monotonic time.
"""

from __future__ import annotations

from edge.kinds.base import DriverSignal
from protocol.messages import Scalar

__all__ = ["PowerWatch"]


class PowerWatch:
    """Busy/idle by power for one machine (see the module docstring).

    Args:
        machine: the machine id.
        busy_above_w: at or above this power the machine is busy.
        idle_timeout_min: a session idle this long ends; ``None``: never.
    """

    def __init__(self, machine: str, busy_above_w: float, idle_timeout_min: float | None) -> None:
        self.machine = machine
        self.busy_above_w = busy_above_w
        self.idle_timeout_min = idle_timeout_min
        #: Since when the readings say "not busy" (first such reading, or the session
        #: start); ``None`` while busy.
        self.idle_since: float | None = 0.0

    def session_started(self, mono: float) -> None:
        """A session started: the idle timeout counts from now at the earliest."""
        self.idle_since = mono

    def sample(self, power: Scalar, mono: float, *, job: bool, active: bool) -> list[DriverSignal]:
        """The signals one reading gives.

        Args:
            power: the plug's reading in watts (anything else is no reading).
            mono: monotonic time of the reading.
            job: whether the agent holds the machine busy now.
            active: whether a session is active (not ending, not idle).
        """
        if not isinstance(power, int | float) or isinstance(power, bool):
            return []
        busy = power >= self.busy_above_w
        if busy:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = mono
        signals: list[DriverSignal] = []
        if busy != job:
            signals.append(DriverSignal(self.machine, "job_running" if busy else "job_done"))
        idle_min = self.idle_timeout_min
        if (
            idle_min is not None
            and self.idle_since is not None
            and active
            and mono - self.idle_since >= idle_min * 60
        ):
            signals.append(DriverSignal(self.machine, "idle"))
        return signals
