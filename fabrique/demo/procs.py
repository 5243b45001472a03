"""Child processes of the demo that never outlive it.

The demo starts a broker and the simulated edges as child processes. They are put
in their own session (a terminal's Ctrl-C reaches only the demo, which then stops
them in order: edges first so their journals drain, the broker last) and are asked
by the kernel to die with their parent (``PR_SET_PDEATHSIG``) in case the demo itself
is killed without a chance to clean up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel to send SIGTERM to this process when its parent exits (Linux).

    Call it first thing in a child. If ``parent_pid`` is given and the parent is
    already gone (the race before ``prctl``), exit at once.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        raise SystemExit(0)


def _preexec() -> None:  # pragma: no cover - runs in the forked child
    # Only an async-signal-safe syscall through an already loaded libc.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(
    argv: Sequence[str],
    *,
    stdout: IO[bytes] | int | None = None,
    stderr: IO[bytes] | int | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    pdeathsig: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a child in its own session.

    Args:
        pdeathsig: have the kernel SIGTERM the child when we die, set between fork
            and exec. Only for children spawned while this process has a single
            thread (``preexec_fn`` is unsafe with threads); our own Python children
            call :func:`die_with_parent` themselves instead.
    """
    logger.debug("spawning %s", " ".join(argv))
    return subprocess.Popen(
        list(argv),
        stdout=stdout,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
        start_new_session=True,
        preexec_fn=_preexec if pdeathsig else None,
    )


def terminate(proc: subprocess.Popen[bytes], name: str, timeout: float = 10.0) -> int | None:
    """SIGTERM, wait ``timeout`` seconds, then SIGKILL; return the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop within %.0f s: killing it", name, timeout)
            proc.kill()
            proc.wait(5)
    return proc.returncode
