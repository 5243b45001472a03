"""``pc.auto``: the session lock of the platform the agent runs on.

A gaming PC's configuration should not have to say which operating system it runs:
``pc.auto`` picks :class:`~devices.pc.loginctl.LoginctlSessionLock` on Linux and
:class:`~devices.pc.windows.WindowsSessionLock` on Windows, each with its platform's
default notification command. Anywhere else there is no built-in lock, and the
choice fails with :class:`~devices.errors.DeviceConfigError` naming ``pc.command``,
the backend that works everywhere a lock and an unlock command exist.

On Linux the session defaults to logind's ``auto``: the agent's own session when
it runs inside one, otherwise the user's graphical session, which is what a
``systemd --user`` unit needs (user services run outside any session, where a bare
``loginctl lock-session`` finds nothing to lock).

The platform is read when the lock is built, not when the configuration is
validated, so a Windows PC's file can be checked on a Linux workstation.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Final, Literal

from devices.errors import DeviceConfigError
from devices.pc.command import Runner, subprocess_runner
from devices.pc.loginctl import LINUX_NOTIFY_CMD, LoginctlSessionLock
from devices.pc.windows import WINDOWS_NOTIFY_CMD, WindowsSessionLock

__all__ = ["LINUX_AUTO_SESSION", "AutoBackend", "auto_backend", "auto_session_lock"]

#: The logind session ``pc.auto`` locks on Linux unless told otherwise.
LINUX_AUTO_SESSION: Final = "auto"

#: The kinds ``pc.auto`` resolves to.
AutoBackend = Literal["pc.loginctl", "pc.windows"]


def auto_backend(platform: str | None = None) -> AutoBackend:
    """The session-lock kind ``pc.auto`` uses on ``platform`` (default: this one).

    Raises:
        DeviceConfigError: no built-in session lock for this platform.
    """
    name = sys.platform if platform is None else platform
    if name.startswith("linux"):
        return "pc.loginctl"
    if name == "win32":
        return "pc.windows"
    raise DeviceConfigError(
        f"pc.auto: no built-in session lock on platform {name!r} (Linux uses loginctl, "
        'Windows LockWorkStation); configure kind = "pc.command" with your own '
        "lock_cmd and unlock_cmd"
    )


def auto_session_lock(
    *,
    session_id: str | None = None,
    notify_cmd: Sequence[str] | None = None,
    unlock_cmd: Sequence[str] | None = None,
    timeout_s: float = 5.0,
    platform: str | None = None,
    runner: Runner = subprocess_runner,
) -> LoginctlSessionLock | WindowsSessionLock:
    """Build the session lock of ``platform`` (default: this one), unopened.

    Args:
        session_id: Linux only: the logind session (default ``auto``: the agent's
            own, or else the user's graphical session).
        notify_cmd: notification argv template; ``None``: the platform's default
            (``notify-send`` on Linux, ``msg`` on Windows).
        unlock_cmd: Windows only: a credential provider's unlock helper.
        timeout_s: longest run of one command.
        platform: a ``sys.platform`` value (tests); ``None``: this machine's.
        runner: starts the processes (a recorder in tests).

    Raises:
        DeviceConfigError: unsupported platform, or an option of the other platform.
    """
    backend = auto_backend(platform)
    if backend == "pc.loginctl":
        if unlock_cmd is not None:
            raise DeviceConfigError(
                "pc.auto: unlock_cmd applies to Windows only (Linux unlocks with loginctl)"
            )
        return LoginctlSessionLock(
            session_id or LINUX_AUTO_SESSION,
            notify_cmd=LINUX_NOTIFY_CMD if notify_cmd is None else notify_cmd,
            runner=runner,
            timeout_s=timeout_s,
        )
    if session_id is not None:
        raise DeviceConfigError("pc.auto: session_id applies to Linux (loginctl) only")
    return WindowsSessionLock(
        WINDOWS_NOTIFY_CMD if notify_cmd is None else notify_cmd,
        unlock_cmd,
        runner=runner,
        timeout_s=timeout_s,
    )
