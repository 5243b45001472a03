"""Windows: ``LockWorkStation`` from user32.dll, notifications through a command.

``LockWorkStation`` shows the lock screen of the interactive session; the game
keeps running behind it. It must be called from a process in that session (run
the pc-agent as the gaming account at logon, not as a service in session 0).

Windows has no API to *unlock* a session: the player signs back in (with the
room account's password or PIN, or a credential provider). :meth:`unlock` runs
``unlock_cmd`` when one is configured (such a provider's helper) and otherwise
only logs; the time limit is enforced by the lock. Neither is there a cheap way
to ask whether the session is locked, so :meth:`is_locked` answers ``None``.

Notifications default to ``msg.exe`` (a message box on the user's session,
closed after 60 s; present on Pro/Enterprise/Education editions); configure
``notify_cmd`` for a toast helper on Home editions.

The module imports on Linux (ctypes is looked up only when locking), so the
kind is registered everywhere and fails with
:class:`~devices.errors.DeviceConfigError` only when used off Windows.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

from devices.errors import DeviceConfigError, DeviceProtocolError
from devices.pc.base import SessionLockBase
from devices.pc.command import (
    Runner,
    check_argv,
    render_argv,
    run_command,
    subprocess_runner,
)

__all__ = ["WINDOWS_NOTIFY_CMD", "WindowsSessionLock", "load_user32"]

_LOGGER = logging.getLogger(__name__)

#: Default notification: a message box on every session of this PC, for 60 s.
WINDOWS_NOTIFY_CMD: Final = ("msg", "*", "/TIME:60", "{title}: {message}")


def load_user32() -> Any:
    """user32.dll with last-error tracking.

    Raises:
        DeviceConfigError: not on Windows, or user32.dll cannot be loaded.
    """
    win_dll = getattr(ctypes, "WinDLL", None)
    if win_dll is None:
        raise DeviceConfigError("pc.windows needs Windows (LockWorkStation in user32.dll)")
    try:
        return win_dll("user32", use_last_error=True)
    except OSError as err:
        raise DeviceConfigError(f"cannot load user32.dll: {err}") from err


class WindowsSessionLock(SessionLockBase):
    """The interactive Windows session, locked with ``LockWorkStation``.

    Args:
        notify_cmd: argv template of the notification (``{title}``,
            ``{message}``); ``None``: log only.
        unlock_cmd: argv that unlocks (a credential provider's helper);
            ``None``: :meth:`unlock` only logs.
        runner: starts the notify/unlock processes (a recorder in tests).
        timeout_s: longest run of one command.
        user32: loads user32.dll (a fake in tests).

    Raises:
        DeviceConfigError: an argv template cannot work.
    """

    def __init__(
        self,
        notify_cmd: Sequence[str] | None = WINDOWS_NOTIFY_CMD,
        unlock_cmd: Sequence[str] | None = None,
        *,
        runner: Runner = subprocess_runner,
        timeout_s: float = 5.0,
        user32: Callable[[], Any] = load_user32,
    ) -> None:
        check_argv("notify_cmd", notify_cmd, placeholders=True)
        check_argv("unlock_cmd", unlock_cmd)
        self.notify_cmd = tuple(notify_cmd) if notify_cmd is not None else None
        self.unlock_cmd = tuple(unlock_cmd) if unlock_cmd is not None else None
        self.timeout_s = timeout_s
        self._runner = runner
        self._load_user32 = user32
        self._user32: Any = None
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return "WindowsSessionLock()"

    def lock(self) -> None:
        """Call ``LockWorkStation``.

        Raises:
            DeviceConfigError: not on Windows.
            DeviceProtocolError: Windows refused (e.g. not the interactive session).
        """
        with self._mutex:
            if self._user32 is None:
                self._user32 = self._load_user32()
            if not self._user32.LockWorkStation():
                code = getattr(ctypes, "get_last_error", lambda: 0)()
                raise DeviceProtocolError(f"{self!r}: LockWorkStation failed (error {code})")
        _LOGGER.info("%r: session locked", self)

    def unlock(self) -> None:
        """Run ``unlock_cmd`` if configured; otherwise the player signs in (logged).

        Raises:
            DeviceError: the unlock command failed.
        """
        if self.unlock_cmd is None:
            _LOGGER.info("%r: Windows cannot unlock by itself; the player signs in", self)
            return
        with self._mutex:
            run_command(self, "unlock", self.unlock_cmd, self._runner, self.timeout_s)
        _LOGGER.info("%r: session unlocked", self)

    def notify(self, title: str, message: str) -> None:
        """Run ``notify_cmd`` with the title and message filled in (logged only without one).

        Raises:
            DeviceError: the command failed.
        """
        if self.notify_cmd is None:
            _LOGGER.info("%r: no notify command; not shown: %s: %s", self, title, message)
            return
        argv = render_argv(self.notify_cmd, {"title": title, "message": message})
        with self._mutex:
            run_command(self, "notify", argv, self._runner, self.timeout_s)

    def is_locked(self) -> bool | None:
        """Always ``None``: Windows has no cheap, reliable way to tell."""
        return None
