"""systemd's readiness and watchdog protocol (``sd_notify(3)``), for ``Type=notify`` units.

systemd passes a datagram socket in ``NOTIFY_SOCKET`` (a path, or ``@name`` for an
abstract socket) and, when the unit sets ``WatchdogSec=``, the period in
``WATCHDOG_USEC`` (with ``WATCHDOG_PID``: the process that must ping). The service
writes ``READY=1`` once it serves, ``WATCHDOG=1`` at least once per period while it is
healthy, and ``STOPPING=1`` when it shuts down; systemd restarts a unit whose pings
stop. Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op, so the agent runs
the same from a terminal, the demo or a test.

The protocol is a few lines of socket code; no library is needed for it (the
``systemd`` Python bindings need libsystemd headers on the Pi).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)

__all__ = ["SystemdNotifier"]


class SystemdNotifier:
    """Sends state lines to systemd's notify socket; silent when there is none."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self._address = address
        self._watchdog_s = _watchdog_period(env)

    @property
    def enabled(self) -> bool:
        """Whether systemd listens (the unit is ``Type=notify``)."""
        return bool(self._address)

    @property
    def watchdog_s(self) -> float | None:
        """The watchdog period systemd expects pings within; None without a watchdog."""
        return self._watchdog_s

    def ready(self) -> bool:
        return self._send("READY=1")

    def ping(self) -> bool:
        return self._send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self._send("STOPPING=1")

    def _send(self, state: str) -> bool:
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(state.encode("ascii"))
        except OSError as err:
            logger.warning("systemd notify socket refused %s: %s", state, err)
            return False
        return True


def _watchdog_period(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # meant for another process of the unit
    return int(usec) / 1_000_000
