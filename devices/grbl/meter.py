"""The laser run-time meter: time spent firing, from polled status reports (pure).

Makerspaces meter laser *beam* time separately from the time someone holds the
machine (anchors-printfarm-octoprint §4.3): tube and optics wear with firing time,
not with badge time. GRBL says nothing when the beam switches; we only see the
status reports we poll for, so the meter integrates *sample and hold*: when a
report arrives at time ``t``, the interval since the previous report counts as
firing if the **previous** report was firing (``Run`` with ``S`` > 0, see
:attr:`~devices.grbl.protocol.StatusReport.firing`).

Exactness: each firing period is counted from its first firing report to its
first non-firing report, so it is off by less than one poll interval (plus the
report latency, 5-20 ms) at its start and at its end: ±1 poll interval per
period. When the link is lost the meter stops at the last report received
(:meth:`RunTimeMeter.interrupt`): time that could not be observed is never counted.

The meter is cumulative from the moment the driver was built; the edge takes the
difference of two readings for a session, so the laser's run time stays separate
from the session time it meters itself.
"""

from __future__ import annotations

__all__ = ["RunTimeMeter"]


class RunTimeMeter:
    """Accumulates firing time from timestamped samples (not thread-safe: one owner)."""

    def __init__(self) -> None:
        self._total_s = 0.0
        self._last_at: float | None = None
        self._firing = False

    @property
    def total_s(self) -> float:
        """Seconds of firing counted so far."""
        return self._total_s

    @property
    def firing(self) -> bool:
        """Whether the last sample was firing."""
        return self._firing

    def observe(self, at: float, firing: bool) -> None:
        """Record a sample taken at monotonic time ``at``.

        A clock that goes backwards adds nothing (a monotonic clock never does;
        a fake one in tests might).
        """
        if self._last_at is not None and self._firing and at > self._last_at:
            self._total_s += at - self._last_at
        self._last_at = at
        self._firing = firing

    def interrupt(self) -> None:
        """Stop integrating at the last sample: the link is lost, nothing is known."""
        self._last_at = None
        self._firing = False
