"""A real OctoPrint 1.11 with its Virtual Printer, for the driver's tests.

OctoPrint is installed from PyPI into its own cached venv (never into the project's:
its pins would clash with the hub's), by default
``~/.cache/fabrique/octoprint-1.11-py311``; ``FABRIQUE_OCTOPRINT_VENV`` overrides the
path. The first run installs it (about a minute from cold PyPI), later runs reuse
it; a marker file written after a successful install makes a half-finished install
start over, and a file lock keeps parallel sessions from installing twice.

One OctoPrint serves the whole test session (research note §5, recipe followed
exactly): a fresh basedir with a ``config.yaml`` written before the first start
(virtual printer enabled and autoconnected, first-run wizard off, online check,
plugin blacklist, tracking, announcements, software update, plugin manager and the
Python-EOL health check off, so nothing phones home), one admin user created with
``octoprint user add`` whose API key is set to a known value in ``users.yaml``,
then ``octoprint serve`` on a free loopback port (``--iknowwhatimdoing`` when root).
Readiness is ``GET /api/version`` == 200, then ``GET /api/printer`` == 200.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

OCTOPRINT_REQUIREMENT = "octoprint>=1.11,<1.12"
USER = "fabhub"
PASSWORD = "fabhub-test-pw"
#: a user API key known to the tests (written into users.yaml before the start)
API_KEY = "FABRIQUE" + secrets.token_hex(12).upper()

CONFIG_YAML = """\
server:
  firstRun: false
  onlineCheck: {enabled: false}
  pluginBlacklist: {enabled: false}
plugins:
  _disabled: [announcements, tracking, errortracking, softwareupdate, discovery,
              achievements, pluginmanager]
  tracking: {enabled: false}
  errortracking: {enabled: false}
  health_check: {disabled: [python_eol]}
  virtual_printer: {enabled: true}
serial:
  port: VIRTUAL
  baudrate: 115200
  autoconnect: true
"""

SET_API_KEY = """\
import sys, yaml
path, user, key = sys.argv[1:]
with open(path) as f:
    data = yaml.safe_load(f)
data[user]["apikey"] = key
with open(path, "w") as f:
    yaml.safe_dump(data, f)
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "octoprint: needs a real OctoPrint 1.11 (installed into a cached venv)"
    )


def octoprint_venv_dir() -> Path:
    """Where the OctoPrint venv lives (cached across runs)."""
    override = os.environ.get("FABRIQUE_OCTOPRINT_VENV")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    return cache / "fabrique" / f"octoprint-1.11-{py}"


def ensure_octoprint(venv: Path) -> Path:
    """The ``octoprint`` executable, installing OctoPrint 1.11 into ``venv`` if needed."""
    exe = venv / "bin" / "octoprint"
    marker = venv / ".fabrique-installed"
    if marker.exists() and exe.exists():
        return exe
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and exe.exists():  # another session installed it meanwhile
            return exe
        if venv.exists():
            shutil.rmtree(venv)
        started = time.monotonic()
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
                OCTOPRINT_REQUIREMENT,
            ],
        ]
        for step in steps:
            result = subprocess.run(step, capture_output=True, text=True, timeout=1200)
            if result.returncode != 0:
                pytest.fail(
                    f"installing OctoPrint failed: {' '.join(step)}\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
                )
        marker.write_text(
            f"{OCTOPRINT_REQUIREMENT} installed in {time.monotonic() - started:.1f} s\n"
        )
    return exe


@dataclass
class OctoPrintServer:
    """One ``octoprint serve`` process on a loopback port, restartable by the tests."""

    exe: Path
    basedir: Path
    port: int
    api_key: str = API_KEY
    process: subprocess.Popen[bytes] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.basedir / "serve.log"

    def prepare(self) -> None:
        """Write the config and create the user with the known API key (before start)."""
        self.basedir.mkdir(parents=True, exist_ok=True)
        (self.basedir / "config.yaml").write_text(CONFIG_YAML)
        started = time.monotonic()
        base = [str(self.exe), "--basedir", str(self.basedir)]
        subprocess.run(
            [*base, "user", "add", USER, "--password", PASSWORD, "--admin"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        python = self.exe.parent / "python"
        subprocess.run(
            [str(python), "-c", SET_API_KEY, str(self.basedir / "users.yaml"), USER, API_KEY],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.timings["user_add_s"] = time.monotonic() - started

    def start(self, timeout: float = 90.0) -> None:
        """Start OctoPrint and wait until the API answers and the printer is connected."""
        assert self.process is None or self.process.poll() is not None, "already running"
        command = [
            str(self.exe),
            "serve",
            "--basedir",
            str(self.basedir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        if os.geteuid() == 0:
            command.append("--iknowwhatimdoing")  # OctoPrint refuses root otherwise
        started = time.monotonic()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(started + timeout)
        self.timings["last_start_s"] = time.monotonic() - started

    def _wait_ready(self, deadline: float) -> None:
        headers = {"X-Api-Key": self.api_key}
        with httpx.Client(base_url=self.url, headers=headers, timeout=2.0) as http:
            for path in ("/api/version", "/api/printer"):
                while True:
                    if self.process is not None and self.process.poll() is not None:
                        pytest.fail(f"OctoPrint exited early:\n{self.tail()}")
                    try:
                        if http.get(path).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        pytest.fail(f"OctoPrint not ready ({path}) in time:\n{self.tail()}")
                    time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (graceful, ~1 s), SIGKILL if it does not exit in ``timeout``."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)  # in case a test left it suspended
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def suspend(self) -> None:
        """Freeze the process (SIGSTOP): sockets stay open, nothing is answered."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a suspended process (SIGCONT)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def astart(self) -> None:
        """:meth:`start` in a thread, so followers keep running meanwhile."""
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        """:meth:`stop` in a thread, so followers see the shutdown as it happens."""
        await asyncio.to_thread(self.stop)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def make_idle(self, timeout: float = 30.0) -> None:
        """Bring the printer back to Operational without a job (after another test)."""
        if not self.running:
            self.start()
        self.resume()
        deadline = time.monotonic() + timeout
        headers = {"X-Api-Key": self.api_key}
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


def dwell_gcode(seconds: float, *, step_ms: int = 100, heat: bool = True) -> bytes:
    """A G-code file that keeps the virtual printer busy for about ``seconds``.

    The Virtual Printer simulates ``G4 P<ms>`` dwells with real sleeps, so many short
    dwells make a print of a predictable length that pauses and cancels promptly.
    Heating is non-blocking (M104/M140) so no time is spent waiting for targets.
    """
    lines = ["; fabrique test print", "G21", "G90", "M82"]
    if heat:
        lines += ["M104 S200", "M140 S60"]
    lines += ["G28", "G1 Z0.3 F3000", "G1 X10 Y10 F3000"]
    lines += [f"G4 P{step_ms}"] * max(1, round(seconds * 1000 / step_ms))
    lines += ["G1 X20 Y20 F3000", "M84"]
    return ("\n".join(lines) + "\n").encode()


async def eventually(condition: Callable[[], bool], within_s: float, what: str) -> None:
    """Poll ``condition`` every 20 ms until true; fail the test after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within_s} s: {what}")
        await asyncio.sleep(0.02)
