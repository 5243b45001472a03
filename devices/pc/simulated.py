"""A session lock that only remembers: the demo's gaming PCs and the edge's tests.

Same contract as the real backends (locked on open and close); every action is
recorded so tests can assert the PC was never left unlocked, and :meth:`fail`
makes the next calls raise to exercise the agent's fault handling.
"""

from __future__ import annotations

import logging
import threading

from devices.errors import DeviceError, DeviceUnavailable
from devices.pc.base import SessionLockBase

__all__ = ["SimulatedSessionLock"]

_LOGGER = logging.getLogger(__name__)


class SimulatedSessionLock(SessionLockBase):
    """A session lock in memory.

    Attributes:
        history: ``"lock"`` / ``"unlock"`` in order.
        notifications: ``(title, message)`` in order.
    """

    def __init__(self, name: str = "sim") -> None:
        self.name = name
        self.history: list[str] = []
        self.notifications: list[tuple[str, str]] = []
        self._locked: bool | None = None
        self._opened = False
        self._failure: DeviceError | None = None
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"SimulatedSessionLock({self.name!r})"

    @property
    def is_open(self) -> bool:
        """Whether ``open`` was called without a ``close`` since."""
        return self._opened

    def fail(self, error: DeviceError | None = None) -> None:
        """Make every following call raise ``error`` (default DeviceUnavailable)."""
        self._failure = error if error is not None else DeviceUnavailable(f"{self!r} unreachable")

    def recover(self) -> None:
        """Stop failing."""
        self._failure = None

    def open(self) -> None:
        """Start accepting calls and lock."""
        self._opened = True
        self.lock()

    def close(self) -> None:
        """Lock (even while "failing": a simulation cannot lose its session) and stop."""
        with self._mutex:
            self._set(True)
        self._opened = False

    def lock(self) -> None:
        """Lock the simulated session."""
        self._check()
        with self._mutex:
            self._set(True)

    def unlock(self) -> None:
        """Unlock the simulated session."""
        self._check()
        with self._mutex:
            self._set(False)

    def notify(self, title: str, message: str) -> None:
        """Record the notification."""
        self._check()
        with self._mutex:
            self.notifications.append((title, message))
        _LOGGER.info("%r notifies: %s: %s", self, title, message)

    def is_locked(self) -> bool | None:
        """Whether the simulated session is locked (``None`` before the first lock)."""
        self._check()
        with self._mutex:
            return self._locked

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure
        if not self._opened:
            raise DeviceUnavailable(f"{self!r} is not open")

    def _set(self, locked: bool) -> None:
        self._locked = locked
        self.history.append("lock" if locked else "unlock")
        _LOGGER.info("%r %s", self, "locked" if locked else "unlocked")
