"""Gaming-PC session locks: lock, unlock and notify the player (see :mod:`devices.pc.base`)."""

from devices.pc.auto import auto_backend, auto_session_lock
from devices.pc.base import SessionLock, SessionLockBase
from devices.pc.command import (
    CommandResult,
    CommandSessionLock,
    Runner,
    render_argv,
    subprocess_runner,
)
from devices.pc.loginctl import LINUX_NOTIFY_CMD, LoginctlSessionLock
from devices.pc.simulated import SimulatedSessionLock
from devices.pc.windows import WINDOWS_NOTIFY_CMD, WindowsSessionLock

__all__ = [
    "LINUX_NOTIFY_CMD",
    "WINDOWS_NOTIFY_CMD",
    "CommandResult",
    "CommandSessionLock",
    "LoginctlSessionLock",
    "Runner",
    "SessionLock",
    "SessionLockBase",
    "SimulatedSessionLock",
    "WindowsSessionLock",
    "auto_backend",
    "auto_session_lock",
    "render_argv",
    "subprocess_runner",
]
