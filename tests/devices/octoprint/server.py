"""The tests' real OctoPrint 1.11 with its Virtual Printer: a pytest plugin.

Registered once for the whole suite by ``pytest_plugins`` in ``tests/conftest.py``,
so one OctoPrint serves every test of a run that needs it, whichever folders run
(``pytest tests``, ``pytest tests/edge/machines``, ``pytest tests/devices/octoprint``…).
Never import its fixtures into a conftest: a fixture imported there is a fixture
of its own, with its own session-scoped server.

It provides the ``octoprint`` marker and these fixtures:

* ``octoprint_exe``: the ``octoprint`` executable (for tests that start their own,
  such as the demo's);
* ``octoprint_server``: the session's OctoPrint, started on first use;
* ``octoprint``: that server running, with the virtual printer idle and
  Operational (a previous test may have stopped, frozen or disconnected it, or
  left a job running: :meth:`OctoPrintServer.make_idle` undoes all of that).

OctoPrint is installed from PyPI into its own cached venv (never into the project's:
its pins would clash with the hub's), by default
``~/.cache/fabrique/octoprint-1.11-py311``; ``FABRIQUE_OCTOPRINT_VENV`` overrides the
path. The first run installs it (about a minute from cold PyPI), later runs reuse
it; a marker file written after a successful install makes a half-finished install
start over, and a file lock keeps parallel sessions from installing twice.

The recipe (config written before the first start, a user with a known API key,
``octoprint serve`` on a free loopback port, readiness) is the demo's own,
:mod:`fabrique.demo.octoprint`; this module adds what only the tests need
(suspend/resume, back to idle between tests). The terminal summary says how many
servers the run started and how often they were (re)started.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fabrique.demo import octoprint as product
from fabrique.demo.octoprint import (
    USER,
    OctoPrintError,
    OctoPrintInstance,
    dwell_gcode,
    octoprint_venv_dir,
)
from tests.conftest import free_port

__all__ = [
    "API_KEY",
    "USER",
    "OctoPrintServer",
    "dwell_gcode",
    "ensure_octoprint",
    "octoprint_venv_dir",
]

#: a user API key known to the tests (written into users.yaml before the start)
API_KEY = "FABRIQUE" + secrets.token_hex(12).upper()

#: the servers this run started (for the terminal summary)
_SERVERS: list[OctoPrintServer] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "octoprint: needs a real OctoPrint 1.11 (installed into a cached venv)"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SERVERS:
        starts = sum(s.starts for s in _SERVERS)
        first = ", ".join(f"{s.timings.get('first_start_s', 0):.1f} s" for s in _SERVERS)
        terminalreporter.write_line(
            f"octoprint: {len(_SERVERS)} server(s) for the session, "
            f"{starts} start(s) in all, first start {first}"
        )


def ensure_octoprint(venv: Path | None = None) -> Path:
    """The ``octoprint`` executable, installed into the cached venv if needed."""
    try:
        return product.ensure_octoprint(venv or octoprint_venv_dir())
    except OctoPrintError as err:
        pytest.fail(str(err))


@dataclass
class OctoPrintServer(OctoPrintInstance):
    """The product's OctoPrint runner, restartable and freezable by the tests."""

    api_key: str | None = API_KEY
    #: how many times :meth:`start` ran (the first start and every restart)
    starts: int = 0

    def prepare(self) -> None:
        try:
            super().prepare()
        except OctoPrintError as err:
            pytest.fail(str(err))

    def start(self, timeout: float = 90.0, *, pdeathsig: bool = False) -> None:
        """Start OctoPrint and wait until the API answers and the printer is connected."""
        self.starts += 1
        try:
            super().start(timeout, pdeathsig=pdeathsig)
        except OctoPrintError as err:
            pytest.fail(str(err))

    def suspend(self) -> None:
        """Freeze the process (SIGSTOP): sockets stay open, nothing is answered."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a suspended process (SIGCONT)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    async def astart(self) -> None:
        """:meth:`start` in a thread, so followers keep running meanwhile."""
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        """:meth:`stop` in a thread, so followers see the shutdown as it happens."""
        await asyncio.to_thread(self.stop)

    def make_idle(self, timeout: float = 30.0) -> None:
        """Bring the printer back to Operational without a job (after another test)."""
        if not self.running:
            self.start()
        self.resume()
        deadline = time.monotonic() + timeout
        headers = {"X-Api-Key": self.key}
        with httpx.Client(base_url=self.url, headers=headers, timeout=5.0) as http:
            while True:
                response = http.get("/api/printer")
                if response.status_code == 409:
                    http.post("/api/connection", json={"command": "connect"})
                elif response.status_code == 200:
                    flags = response.json()["state"]["flags"]
                    if flags["printing"] or flags["paused"]:
                        if not flags["cancelling"]:
                            http.post("/api/job", json={"command": "cancel"})
                    elif flags["operational"] and flags["ready"]:
                        return
                if time.monotonic() > deadline:
                    pytest.fail(f"printer not idle in time: {response.text}\n{self.tail()}")
                time.sleep(0.1)


@pytest.fixture(scope="session")
def octoprint_exe() -> Path:
    """The ``octoprint`` executable (installed into the tests' cached venv if needed)."""
    if sys.version_info >= (3, 14):
        pytest.skip("OctoPrint 1.11 supports Python < 3.14 only")
    return ensure_octoprint()


@pytest.fixture(scope="session")
def octoprint_server(
    octoprint_exe: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OctoPrintServer]:
    """One OctoPrint 1.11 + Virtual Printer for the session (installed on first use)."""
    basedir = tmp_path_factory.mktemp("octoprint") / "base"
    server = OctoPrintServer(octoprint_exe, basedir, free_port())
    server.prepare()
    _SERVERS.append(server)
    server.start()
    server.timings["first_start_s"] = server.timings["last_start_s"]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def octoprint(octoprint_server: OctoPrintServer) -> OctoPrintServer:
    """The session's OctoPrint, running, with the virtual printer idle and Operational."""
    octoprint_server.make_idle()
    return octoprint_server
