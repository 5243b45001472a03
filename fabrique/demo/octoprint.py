"""A real OctoPrint 1.11 with its Virtual Printer, for the demo and the tests.

OctoPrint is never installed into the project's venv (its pins would clash with
the hub's): it lives in its own venv, by default the one the test suite caches in
``~/.cache/fabrique/octoprint-1.11-py311`` (:func:`ensure_octoprint` installs it
there from PyPI; ``FABRIQUE_OCTOPRINT_VENV`` overrides the path). The demo looks
for an ``octoprint`` executable with :func:`find_octoprint` and, when none is
found, uses a simulated printer instead.

:class:`OctoPrintInstance` runs one ``octoprint serve`` (research note §5, recipe
followed exactly): a basedir with a ``config.yaml`` written before the first start
(virtual printer enabled and autoconnected, first-run wizard off, online check,
plugin blacklist, tracking, announcements, software update, plugin manager and the
Python-EOL health check off, so nothing phones home), one admin user created with
``octoprint user add`` whose API key is set to a known value in ``users.yaml``,
then ``octoprint serve`` on a loopback port (``--iknowwhatimdoing`` when root).
Ready means ``GET /api/version`` == 200, then ``GET /api/printer`` == 200 (the
virtual printer is connected).
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fabrique.demo.procs import spawn

__all__ = [
    "OCTOPRINT_REQUIREMENT",
    "OctoPrintError",
    "OctoPrintInstance",
    "dwell_gcode",
    "ensure_octoprint",
    "find_octoprint",
    "octoprint_venv_dir",
]

logger = logging.getLogger(__name__)

OCTOPRINT_REQUIREMENT = "octoprint>=1.11,<1.12"
#: The environment variable naming the demo's ``octoprint`` executable.
DEMO_OCTOPRINT_ENV = "FABRIQUE_DEMO_OCTOPRINT"
USER = "fabhub"
#: Written in the basedir once the user exists with its key (the key, one line).
_PREPARED = ".fabrique-api-key"

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


class OctoPrintError(RuntimeError):
    """OctoPrint could not be installed, prepared or started (the message says why)."""


def octoprint_venv_dir() -> Path:
    """Where the OctoPrint venv lives (cached across runs)."""
    override = os.environ.get("FABRIQUE_OCTOPRINT_VENV")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    return cache / "fabrique" / f"octoprint-1.11-{py}"


def find_octoprint() -> Path | None:
    """The ``octoprint`` executable the demo should use, or ``None``.

    In order: ``$FABRIQUE_DEMO_OCTOPRINT`` (empty or ``none`` disables OctoPrint),
    ``octoprint`` on ``PATH``, the cached venv the tests install.
    """
    if DEMO_OCTOPRINT_ENV in os.environ:
        named = os.environ[DEMO_OCTOPRINT_ENV].strip()
        if named.lower() in ("", "none", "0", "off"):
            return None
        path = Path(named)
        return path if os.access(path, os.X_OK) else None
    found = shutil.which("octoprint")
    if found:
        return Path(found)
    cached = octoprint_venv_dir() / "bin" / "octoprint"
    return cached if os.access(cached, os.X_OK) else None


def ensure_octoprint(venv: Path) -> Path:
    """The ``octoprint`` executable, installing OctoPrint 1.11 into ``venv`` if needed.

    A marker file written after a successful install makes a half-finished install
    start over, and a file lock keeps parallel sessions from installing twice.

    Raises:
        OctoPrintError: the install failed (pip's output is quoted).
    """
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
                raise OctoPrintError(
                    f"installing OctoPrint failed: {' '.join(step)}\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
                )
        marker.write_text(
            f"{OCTOPRINT_REQUIREMENT} installed in {time.monotonic() - started:.1f} s\n"
        )
    return exe


@dataclass
class OctoPrintInstance:
    """One ``octoprint serve`` process on a loopback port.

    Attributes:
        exe: the ``octoprint`` executable (its venv's ``python`` sits beside it).
        basedir: OctoPrint's configuration and data folder.
        port: the loopback port it serves on.
        api_key: the API key of :data:`USER`; ``None``: the key of a basedir
            prepared before, else a new random one (see :meth:`prepare`).
    """

    exe: Path
    basedir: Path
    port: int
    api_key: str | None = None
    process: subprocess.Popen[bytes] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.basedir / "serve.log"

    @property
    def key(self) -> str:
        """The API key (after :meth:`prepare`)."""
        if self.api_key is None:
            raise OctoPrintError("OctoPrint is not prepared: no API key yet")
        return self.api_key

    def prepare(self) -> None:
        """Write the config and create the user with its API key (before :meth:`start`).

        A basedir prepared before with the same key (or with any key when
        ``api_key`` is ``None``) is reused as it is.

        Raises:
            OctoPrintError: OctoPrint's command line failed.
        """
        self.basedir.mkdir(parents=True, exist_ok=True)
        prepared = self.basedir / _PREPARED
        if prepared.exists():
            known = prepared.read_text(encoding="utf-8").strip()
            if self.api_key in (None, known):
                self.api_key = known
                return
        if self.api_key is None:
            self.api_key = "FABRIQUE" + secrets.token_hex(12).upper()
        (self.basedir / "config.yaml").write_text(CONFIG_YAML, encoding="utf-8")
        started = time.monotonic()
        base = [str(self.exe), "--basedir", str(self.basedir)]
        users = self.basedir / "users.yaml"
        if not (users.exists() and USER in users.read_text(encoding="utf-8")):
            password = secrets.token_urlsafe(12)  # only the API key is ever used
            self._run([*base, "user", "add", USER, "--password", password, "--admin"], 120)
        python = self.exe.parent / "python"
        self._run([str(python), "-c", SET_API_KEY, str(users), USER, self.api_key], 60)
        prepared.write_text(self.api_key + "\n", encoding="utf-8")
        self.timings["user_add_s"] = time.monotonic() - started

    @staticmethod
    def _run(argv: list[str], timeout: float) -> None:
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise OctoPrintError(f"{argv[0]} failed: {err}") from err
        if result.returncode != 0:
            raise OctoPrintError(f"{' '.join(argv[:4])}… failed:\n{result.stderr[-2000:]}")

    def launch(self, *, pdeathsig: bool = False) -> None:
        """Start ``octoprint serve`` without waiting (see :meth:`wait_ready`).

        The process runs in its own session; ``pdeathsig`` asks the kernel to
        SIGTERM it when this process dies (only from a single-threaded process,
        see :func:`fabrique.demo.procs.spawn`).
        """
        if self.running:
            raise OctoPrintError("OctoPrint is already running")
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
        self.timings["launched_at"] = time.monotonic()
        with open(self.log, "ab") as log:
            self.process = spawn(command, stdout=log, stderr=subprocess.STDOUT, pdeathsig=pdeathsig)
        logger.info("OctoPrint starting on %s (pid %d)", self.url, self.process.pid)

    def wait_ready(self, timeout: float = 90.0, *, stop: threading.Event | None = None) -> None:
        """Wait until the API answers and the virtual printer is connected.

        Raises:
            OctoPrintError: OctoPrint exited, was not ready within ``timeout`` s, or
                ``stop`` was set meanwhile.
        """
        deadline = time.monotonic() + timeout
        headers = {"X-Api-Key": self.key}
        with httpx.Client(base_url=self.url, headers=headers, timeout=2.0) as http:
            for path in ("/api/version", "/api/printer"):
                while True:
                    if self.process is not None and self.process.poll() is not None:
                        raise OctoPrintError(f"OctoPrint exited early:\n{self.tail()}")
                    if stop is not None and stop.is_set():
                        raise OctoPrintError("interrupted while waiting for OctoPrint")
                    try:
                        if http.get(path).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise OctoPrintError(
                            f"OctoPrint not ready ({path}) in {timeout:g} s:\n{self.tail()}"
                        )
                    time.sleep(0.1)
        launched = self.timings.get("launched_at")
        if launched is not None:
            self.timings["last_start_s"] = time.monotonic() - launched

    def start(self, timeout: float = 90.0, *, pdeathsig: bool = False) -> None:
        """:meth:`launch`, then :meth:`wait_ready` (same errors)."""
        self.launch(pdeathsig=pdeathsig)
        self.wait_ready(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (graceful, ~1 s), SIGKILL if it does not exit in ``timeout``."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)  # in case it was left suspended
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 60) -> str:
        """The end of OctoPrint's log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def dwell_gcode(
    seconds: float,
    *,
    step_ms: int = 100,
    heat: bool = True,
    cool_down: bool = False,
    filament_mm: float = 0.0,
) -> bytes:
    """A G-code file that keeps the virtual printer busy for about ``seconds``.

    The Virtual Printer simulates ``G4 P<ms>`` dwells with real sleeps, so many short
    dwells make a print of a predictable length that pauses and cancels promptly.
    Heating is non-blocking (M104/M140) so no time is spent waiting for targets;
    with ``cool_down`` the file ends by switching the heaters off, as slicers' end
    code does. ``filament_mm`` of extrusion is spread over ten moves, so OctoPrint's
    analysis reports the filament the file needs.
    """
    lines = ["; fabrique test print", "G21", "G90", "M82"]
    if heat:
        lines += ["M104 S200", "M140 S60"]
    lines += ["G28", "G1 Z0.3 F3000", "G1 X10 Y10 F3000", "G92 E0"]
    dwells = [f"G4 P{step_ms}"] * max(1, round(seconds * 1000 / step_ms))
    if filament_mm > 0:
        per_move = max(1, len(dwells) // 10)
        extruded = 0.0
        for i in range(0, len(dwells), per_move):
            extruded = min(filament_mm, extruded + filament_mm / 10)
            lines += [*dwells[i : i + per_move], f"G1 X{10 + i % 50} Y20 E{extruded:.2f} F3000"]
    else:
        lines += dwells
    lines += ["G1 X20 Y20 F3000"]
    if cool_down:
        lines += ["M104 S0", "M140 S0"]
    lines += ["M84"]
    return ("\n".join(lines) + "\n").encode()
