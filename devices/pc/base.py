"""What every gaming-PC session lock offers, with its safe default.

DESIGN §4: a gaming PC is **locked, never powered off** (a game loses its save,
Windows updates get corrupted, the room gets noisy). The pc-agent running on the
PC itself locks the user session when time runs out, on badge-out and whenever
it starts or stops, and unlocks it for a granted session. Warnings ("plus que
2 minutes, pense à sauvegarder") go through the OS's own notifications.

Contract, the same as actuators with "locked" in place of "off":

* ``open()`` locks. If the lock cannot be confirmed it raises, so the agent never
  runs a PC in an unknown state; the agent retries in its reconnect loop.
* ``close()`` locks (best effort: logged, never raises). As a context manager an
  exception in the ``with`` block therefore leaves the PC locked too.
* ``is_locked()`` answers ``None`` when the backend cannot tell (Windows, or a
  command backend without a status command after a failed command).

A session lock is owned by one thread (the agent's machine coordinator).
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from devices.errors import DeviceError
from devices.lifecycle import Managed

__all__ = ["SessionLock", "SessionLockBase"]

_LOGGER = logging.getLogger(__name__)


@runtime_checkable
class SessionLock(Protocol):
    """Locks and unlocks the user session of the PC the agent runs on."""

    def open(self) -> None:
        """Start using the lock and lock the session (safe default).

        Raises:
            DeviceError: the session could not be locked.
        """
        ...

    def close(self) -> None:
        """Lock the session (best effort, never raises) and stop; idempotent."""
        ...

    def lock(self) -> None:
        """Lock the session: the player sees the lock screen, the game keeps running.

        Raises:
            DeviceError: the lock failed; the session state is then unknown.
        """
        ...

    def unlock(self) -> None:
        """Unlock the session for a granted player.

        Raises:
            DeviceError: the unlock failed.
        """
        ...

    def notify(self, title: str, message: str) -> None:
        """Show a desktop notification to the player (time warnings, end of session).

        Raises:
            DeviceError: the notification could not be shown.
        """
        ...

    def is_locked(self) -> bool | None:
        """Whether the session is locked; ``None`` when the backend cannot tell.

        Raises:
            DeviceError: the backend could not be asked.
        """
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class SessionLockBase(Managed):
    """The safe default shared by the backends: lock on open, lock on close."""

    def lock(self) -> None:
        """Lock the session (overridden by each backend)."""
        raise NotImplementedError

    def open(self) -> None:
        """Lock the session.

        Raises:
            DeviceError: the session could not be locked.
        """
        self.lock()

    def close(self) -> None:
        """Lock the session; a failure is logged, never raised."""
        try:
            self.lock()
        except DeviceError as err:
            _LOGGER.error("%r: could not lock the session on close: %s", self, err)
