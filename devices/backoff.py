"""Exponential reconnect delays, shared by every driver that reconnects by itself.

Badge readers on hot-pluggable hardware (:class:`~devices.readers.base.ReconnectingReader`)
and the GRBL laser driver retry a lost device with :class:`Backoff`: a first short
delay, doubled at each failure up to a ceiling, back to the first after a success.
No thread and no sleep here: the caller asks :meth:`Backoff.ready` or
:meth:`Backoff.wait_s` on its own loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Exponential reconnect delays: ``initial_s``, doubled up to ``max_s``; reset on success.

    Args:
        initial_s: first delay after a failure.
        max_s: ceiling, so a replugged reader is found within ``max_s``.
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        initial_s: float = 0.5,
        max_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._clock = clock
        self._delay = initial_s
        self._next_at = 0.0

    def ready(self) -> bool:
        """Whether the next attempt may be made now."""
        return self._clock() >= self._next_at

    def wait_s(self) -> float:
        """Seconds until the next attempt (0 when ready)."""
        return max(0.0, self._next_at - self._clock())

    def failed(self) -> float:
        """Record a failed attempt; return the delay before the next one."""
        delay = self._delay
        self._next_at = self._clock() + delay
        self._delay = min(self._delay * 2, self.max_s)
        return delay

    def succeeded(self) -> None:
        """Record a success: the next failure starts from ``initial_s`` again."""
        self._delay = self.initial_s
        self._next_at = 0.0
