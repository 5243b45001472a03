"""Lock, unlock and notify by running commands: the backend the others are built on.

Each action is an argv template run **without a shell** (no quoting bugs, no
injection: a player's first name in a message is one argument, whatever it
contains). ``notify_cmd`` may contain the placeholders ``{title}`` and
``{message}``, replaced inside each argument; other braces are left as they are.
Put ``--`` before them when the program takes options, so that a message starting
with ``-`` is not read as one (``notify-send -- {title} {message}``).

Every run is bounded by ``timeout_s``; failures become
:class:`~devices.errors.DeviceError` subclasses at this boundary:

====================================  ===============================================
program not found / not executable    :class:`~devices.errors.DeviceConfigError`
any other OS error starting it        :class:`~devices.errors.DeviceUnavailable`
still running after ``timeout_s``     :class:`~devices.errors.DeviceTimeout` (killed)
non-zero exit status                  :class:`~devices.errors.DeviceProtocolError`
unparseable ``status_cmd`` output     :class:`~devices.errors.DeviceProtocolError`
====================================  ===============================================

The process is started by a :data:`Runner`; the default,
:func:`subprocess_runner`, uses :func:`subprocess.run`. Tests pass a recorder.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from devices.errors import (
    DeviceConfigError,
    DeviceProtocolError,
    DeviceTimeout,
    DeviceUnavailable,
)
from devices.pc.base import SessionLockBase

__all__ = [
    "MAX_TEXT_LENGTH",
    "CommandResult",
    "CommandSessionLock",
    "Runner",
    "check_argv",
    "render_argv",
    "run_command",
    "subprocess_runner",
]

_LOGGER = logging.getLogger(__name__)

#: Longest title or message passed to a notification (longer text is cut).
MAX_TEXT_LENGTH: Final = 500
#: Characters of stderr quoted in an error message.
_STDERR_TAIL: Final = 300
_PLACEHOLDER_RE = re.compile(r"\{(title|message)\}")
_TRUE: Final = frozenset({"yes", "true", "1", "locked"})
_FALSE: Final = frozenset({"no", "false", "0", "unlocked"})


@dataclass(frozen=True)
class CommandResult:
    """How a command ended: exit status and its decoded output."""

    returncode: int
    stdout: str = ""
    stderr: str = ""


#: ``runner(argv, timeout_s)`` runs ``argv`` without a shell. It raises
#: :class:`subprocess.TimeoutExpired` when ``timeout_s`` passes (after killing the
#: process) and :class:`OSError` when the program cannot be started.
Runner = Callable[[Sequence[str], float], CommandResult]


def subprocess_runner(argv: Sequence[str], timeout_s: float) -> CommandResult:
    """The default :data:`Runner`: :func:`subprocess.run`, no shell, no stdin, output captured."""
    completed = subprocess.run(  # noqa: S603 - argv from the edge's settings, never a shell
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout_s,
        check=False,
    )
    return CommandResult(completed.returncode, completed.stdout or "", completed.stderr or "")


def render_argv(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Fill ``{title}`` / ``{message}`` in each argument of ``template``.

    Values lose NUL characters (an argv cannot carry them) and are cut to
    :data:`MAX_TEXT_LENGTH`.
    """
    clean = {key: value.replace("\x00", "")[:MAX_TEXT_LENGTH] for key, value in values.items()}
    return [_PLACEHOLDER_RE.sub(lambda match: clean.get(match[1], ""), arg) for arg in template]


def check_argv(name: str, argv: Sequence[str] | None, *, placeholders: bool = False) -> None:
    """Reject an argv template that cannot work.

    Raises:
        DeviceConfigError: empty, empty program name, or placeholders where none apply.
    """
    if argv is None:
        return
    if isinstance(argv, str) or not argv or not argv[0]:
        raise DeviceConfigError(f"{name} must be a non-empty list of arguments, not {argv!r}")
    if not placeholders and any(_PLACEHOLDER_RE.search(arg) for arg in argv):
        raise DeviceConfigError(f"{name} cannot use {{title}}/{{message}}: {list(argv)!r}")


def run_command(
    owner: object, action: str, argv: Sequence[str], runner: Runner, timeout_s: float
) -> CommandResult:
    """Run ``argv`` with ``runner`` and translate every failure into a DeviceError.

    ``owner`` and ``action`` only word the error messages.

    Raises:
        DeviceConfigError: the program is missing or not executable.
        DeviceUnavailable: the program could not be started for another reason.
        DeviceTimeout: it did not finish within ``timeout_s``.
        DeviceProtocolError: it exited with a non-zero status.
    """
    program = argv[0]
    try:
        result = runner(argv, timeout_s)
    except subprocess.TimeoutExpired as err:
        raise DeviceTimeout(
            f"{owner!r}: {action}: {program} timed out after {timeout_s} s"
        ) from err
    except (FileNotFoundError, PermissionError) as err:
        raise DeviceConfigError(f"{owner!r}: {action}: cannot run {program!r}: {err}") from err
    except OSError as err:
        raise DeviceUnavailable(f"{owner!r}: {action}: cannot start {program!r}: {err}") from err
    if result.returncode != 0:
        detail = result.stderr.strip()[-_STDERR_TAIL:] or "no error output"
        raise DeviceProtocolError(
            f"{owner!r}: {action}: {program} exited with status {result.returncode}: {detail}"
        )
    return result


class CommandSessionLock(SessionLockBase):
    """A session lock driven by configurable commands.

    Args:
        lock_cmd: argv that locks the session.
        unlock_cmd: argv that unlocks it.
        notify_cmd: argv template showing a notification (``{title}``,
            ``{message}``); ``None``: notifications are only logged.
        status_cmd: argv printing whether the session is locked
            (``yes``/``no``, ``true``/``false``, ``1``/``0``); ``None``:
            :meth:`is_locked` answers the last state commanded successfully.
        runner: starts the processes (a recorder in tests).
        timeout_s: longest run of one command.
        name: shown in logs.

    Raises:
        DeviceConfigError: an argv template cannot work.
    """

    def __init__(
        self,
        lock_cmd: Sequence[str],
        unlock_cmd: Sequence[str],
        notify_cmd: Sequence[str] | None = None,
        *,
        status_cmd: Sequence[str] | None = None,
        runner: Runner = subprocess_runner,
        timeout_s: float = 5.0,
        name: str = "command",
    ) -> None:
        check_argv("lock_cmd", lock_cmd)
        check_argv("unlock_cmd", unlock_cmd)
        check_argv("notify_cmd", notify_cmd, placeholders=True)
        check_argv("status_cmd", status_cmd)
        if not timeout_s > 0:
            raise DeviceConfigError(f"timeout_s must be > 0, not {timeout_s}")
        self.lock_cmd = tuple(lock_cmd)
        self.unlock_cmd = tuple(unlock_cmd)
        self.notify_cmd = tuple(notify_cmd) if notify_cmd is not None else None
        self.status_cmd = tuple(status_cmd) if status_cmd is not None else None
        self.timeout_s = timeout_s
        self.name = name
        self._runner = runner
        self._mutex = threading.Lock()
        self._locked: bool | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def lock(self) -> None:
        """Run ``lock_cmd``.

        Raises:
            DeviceError: the command failed (see the module table); state unknown.
        """
        self._switch("lock", self.lock_cmd, locked=True)

    def unlock(self) -> None:
        """Run ``unlock_cmd``.

        Raises:
            DeviceError: the command failed (see the module table); state unknown.
        """
        self._switch("unlock", self.unlock_cmd, locked=False)

    def notify(self, title: str, message: str) -> None:
        """Run ``notify_cmd`` with the title and message filled in (logged only without one).

        Raises:
            DeviceError: the command failed (see the module table).
        """
        if self.notify_cmd is None:
            _LOGGER.info("%r: no notify command; not shown: %s: %s", self, title, message)
            return
        argv = render_argv(self.notify_cmd, {"title": title, "message": message})
        with self._mutex:
            self._run("notify", argv)

    def is_locked(self) -> bool | None:
        """Ask ``status_cmd``; without one, the last state commanded successfully.

        Raises:
            DeviceError: the status command failed or printed something unexpected.
        """
        if self.status_cmd is None:
            with self._mutex:
                return self._locked
        with self._mutex:
            result = self._run("status", self.status_cmd)
        answer = result.stdout.strip().lower()
        if answer in _TRUE:
            return True
        if answer in _FALSE:
            return False
        raise DeviceProtocolError(f"{self!r}: status printed {answer[:80]!r}, not yes/no")

    def _switch(self, action: str, argv: Sequence[str], *, locked: bool) -> None:
        with self._mutex:
            self._locked = None  # unknown until the command succeeds
            self._run(action, argv)
            self._locked = locked
        _LOGGER.info("%r: session %sed", self, action)

    def _run(self, action: str, argv: Sequence[str]) -> CommandResult:
        return run_command(self, action, argv, self._runner, self.timeout_s)
