"""The edge's two clocks: monotonic for durations, wall for estimates.

A Raspberry Pi has no real-time clock: at boot its wall time may be restored from a
file, jump when NTP syncs, or read 1970. Durations and deadlines are therefore
measured with the monotonic clock only; wall times are estimates that the hub
corrects (DESIGN §3, research "Time on Pis without an RTC").

The session machine converts a grant's ``ends_at`` into a monotonic deadline once,
at grant time (:func:`mono_deadline`), so neither a wall-clock jump nor a lost
network ever extends a session.

:class:`FakeClock` drives every time-dependent test: no test sleeps.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock", "mono_deadline", "wall_estimate"]


class Clock(Protocol):
    """Where the edge reads time from; injected so tests can use :class:`FakeClock`."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (arbitrary origin, per boot)."""
        ...

    def now(self) -> datetime:
        """The current wall time, timezone-aware UTC (an estimate on a Pi)."""
        ...


class SystemClock:
    """The real clocks of the machine the agent runs on."""

    def monotonic(self) -> float:
        """``time.monotonic()``: CLOCK_MONOTONIC, unaffected by NTP or manual changes."""
        return time.monotonic()

    def now(self) -> datetime:
        """``datetime.now(UTC)``."""
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told to.

    :meth:`advance` moves both clocks together, as real time passing would;
    :meth:`jump_wall` moves only the wall clock, as NTP or a wrong RTC restore would.
    """

    def __init__(
        self,
        wall: datetime = datetime(2026, 3, 11, 14, 0, tzinfo=UTC),
        mono: float = 1000.0,
    ) -> None:
        if wall.tzinfo is None:
            raise ValueError("FakeClock needs an aware wall time")
        self._wall = wall.astimezone(UTC)
        self._mono = mono

    def monotonic(self) -> float:
        """The fake monotonic time in seconds."""
        return self._mono

    def now(self) -> datetime:
        """The fake wall time (aware, UTC)."""
        return self._wall

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on both clocks (never backwards)."""
        if seconds < 0:
            raise ValueError("time does not run backwards on a monotonic clock")
        self._mono += seconds
        self._wall += timedelta(seconds=seconds)

    def jump_wall(self, seconds: float) -> None:
        """Move the wall clock alone by ``seconds`` (either way), like an NTP step."""
        self._wall += timedelta(seconds=seconds)


def mono_deadline(at: datetime, mono_now: float, wall_now: datetime) -> float:
    """The monotonic instant corresponding to wall time ``at``, as estimated now.

    Computed once (at grant time) and kept: later wall-clock jumps do not move it.
    """
    return mono_now + (at - wall_now).total_seconds()


def wall_estimate(mono: float, anchor_mono: float, anchor_wall: datetime) -> datetime:
    """The wall time at monotonic instant ``mono``, from one (mono, wall) anchor pair.

    Used for end times, so that ``ended_at - started_at`` equals the monotonic
    duration even if the wall clock jumped in between.
    """
    return anchor_wall + timedelta(seconds=mono - anchor_mono)
