"""A real OctoPrint 1.11 with its Virtual Printer, for the driver's tests.

OctoPrint is installed from PyPI into its own cached venv (never into the project's:
its pins would clash with the hub's), by default
``~/.cache/fabrique/octoprint-1.11-py311``; ``FABRIQUE_OCTOPRINT_VENV`` overrides the
path. The first run installs it (about a minute from cold PyPI), later runs reuse
it; a marker file written after a successful install makes a half-finished install
start over, and a file lock keeps parallel sessions from installing twice.

One OctoPrint serves the whole test session. The recipe (config written before the
first start, a user with a known API key, ``octoprint serve`` on a free loopback
port, readiness) is the demo's own, :mod:`fabrique.demo.octoprint`; this file adds
what only the tests need (suspend/resume, back to idle between tests).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fabrique.demo import octoprint as product
from fabrique.demo.octoprint import (
    OCTOPRINT_REQUIREMENT,
    USER,
    OctoPrintError,
    OctoPrintInstance,
    dwell_gcode,
    octoprint_venv_dir,
)
from tests.conftest import free_port

__all__ = [
    "API_KEY",
    "OCTOPRINT_REQUIREMENT",
    "USER",
    "OctoPrintServer",
    "dwell_gcode",
    "ensure_octoprint",
    "eventually",
    "octoprint_venv_dir",
]

#: a user API key known to the tests (written into users.yaml before the start)
API_KEY = "FABRIQUE" + secrets.token_hex(12).upper()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "octoprint: needs a real OctoPrint 1.11 (installed into a cached venv)"
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

    def prepare(self) -> None:
        try:
            super().prepare()
        except OctoPrintError as err:
            pytest.fail(str(err))

    def start(self, timeout: float = 90.0, *, pdeathsig: bool = False) -> None:
        """Start OctoPrint and wait until the API answers and the printer is connected."""
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
def octoprint_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OctoPrintServer]:
    """One OctoPrint 1.11 + Virtual Printer for the session (installed on first use)."""
    if sys.version_info >= (3, 14):
        pytest.skip("OctoPrint 1.11 supports Python < 3.14 only")
    started = time.monotonic()
    exe = ensure_octoprint(octoprint_venv_dir())
    server = OctoPrintServer(exe, tmp_path_factory.mktemp("octoprint") / "base", free_port())
    server.timings["install_check_s"] = time.monotonic() - started
    server.prepare()
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


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def eventually(condition: Callable[[], bool], within_s: float, what: str) -> None:
    """Poll ``condition`` every 20 ms until true; fail the test after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within_s} s: {what}")
        await asyncio.sleep(0.02)
