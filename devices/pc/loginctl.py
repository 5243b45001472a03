"""Linux desktops: ``loginctl lock-session`` / ``unlock-session`` and ``notify-send``.

systemd-logind relays the request to the session's screen locker (GNOME, KDE,
light-locker, xss-lock…), which works on X11 and Wayland alike. Run the agent
either as the gaming account inside its graphical session (no ``session_id``
needed: loginctl acts on the caller's session) or as a system service with the
session's id (``loginctl list-sessions``) and a polkit rule allowing it to lock
other sessions. ``notify-send`` needs the session's D-Bus: as a system service,
configure ``notify_cmd`` to reach it (e.g. ``runuser -u gamer -- env
DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus notify-send …``).

``unlock-session`` is honoured by most lockers; GNOME Shell historically ignores
it (the player then types the room account's password), which is why the lock,
not the unlock, is what enforces time. The state is read from logind's
``LockedHint`` property, which the lockers set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from devices.errors import DeviceConfigError
from devices.pc.command import CommandSessionLock, Runner, subprocess_runner

__all__ = ["LINUX_NOTIFY_CMD", "SESSION_ID_PATTERN", "LoginctlSessionLock"]

#: A logind session id (``2``, ``c1``, ``self``, ``auto``); never an option.
SESSION_ID_PATTERN: Final = r"^[A-Za-z0-9_.][A-Za-z0-9_.\-]{0,63}$"
_SESSION_ID_RE = re.compile(SESSION_ID_PATTERN)

#: Default notification: critical urgency so it shows over a full-screen game
#: and through "do not disturb"; ``--`` so a message starting with ``-`` stays text.
LINUX_NOTIFY_CMD: Final = (
    "notify-send",
    "--app-name=fabrique",
    "--urgency=critical",
    "--",
    "{title}",
    "{message}",
)


class LoginctlSessionLock(CommandSessionLock):
    """The session lock of a Linux desktop through systemd-logind.

    Args:
        session_id: the logind session to act on; ``None``: the caller's own.
        notify_cmd: argv template of the notification (``None``: log only).
        runner: starts the processes (a recorder in tests).
        timeout_s: longest run of one command.
        loginctl: the loginctl program (a path, when not on ``PATH``).

    Raises:
        DeviceConfigError: ``session_id`` is not a logind session id.
    """

    def __init__(
        self,
        session_id: str | None = None,
        *,
        notify_cmd: Sequence[str] | None = LINUX_NOTIFY_CMD,
        runner: Runner = subprocess_runner,
        timeout_s: float = 5.0,
        loginctl: str = "loginctl",
    ) -> None:
        if session_id is not None and not _SESSION_ID_RE.match(session_id):
            raise DeviceConfigError(f"invalid logind session id {session_id!r}")
        target = [session_id] if session_id is not None else []
        super().__init__(
            lock_cmd=[loginctl, "lock-session", *target],
            unlock_cmd=[loginctl, "unlock-session", *target],
            notify_cmd=notify_cmd,
            # "auto": the caller's session, or else the user's graphical session.
            status_cmd=[
                loginctl,
                "show-session",
                session_id or "auto",
                "--property=LockedHint",
                "--value",
            ],
            runner=runner,
            timeout_s=timeout_s,
            name=f"loginctl {session_id or 'own session'}",
        )
        self.session_id = session_id
