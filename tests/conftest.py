"""Shared fixtures: real Mosquitto brokers, real PostgreSQL databases, SQL stores.

* ``mosquitto`` starts a private broker (``set_tcp_nodelay true``) on a free loopback
  port for the whole test session; ``mosquitto_factory`` starts more, e.g. with an ACL.
* ``pg_url`` creates a throwaway PostgreSQL database on ``FABRIQUE_TEST_PG_URL``
  (default: the local server, ``postgresql://postgres@127.0.0.1:5432/postgres``).
  When PostgreSQL cannot be reached the tests are skipped, except under CI where
  they fail: CI must prove both backends.
* ``db_url`` is parametrised over ``sqlite`` and ``postgresql``.
* ``octoprint_server``/``octoprint`` (one real OctoPrint for the whole run),
  ``octoprint_exe`` and the ``octoprint`` marker come from the plugin
  :mod:`tests.devices.octoprint.server`, registered here so that every folder
  shares them, run alone or together.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["tests.devices.octoprint.server"]

PG_ADMIN_URL = os.environ.get(
    "FABRIQUE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Each test gets back the root logger as it found it.

    The CLI under test configures logging like a real process does (it replaces the
    root handlers with one on its stderr, which CliRunner closes afterwards): left
    alone, every later log record of the session would hit a closed stream (a
    "--- Logging error ---" traceback each) and pytest's capture handlers would be
    gone for the following tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


@dataclass
class Broker:
    """A Mosquitto process started by the tests."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    config: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)

    def restart(self) -> None:
        """Start the same broker again (same port and configuration)."""
        self.stop()
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.host, self.port)


def mosquitto_binary() -> str:
    path = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if path is None:
        pytest.fail("mosquitto is not installed: run scripts/test (it installs it)")
    return path


@pytest.fixture(scope="session")
def mosquitto_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Broker]]:
    """Start Mosquitto brokers with extra configuration lines; all stopped at the end."""
    started: list[Broker] = []

    def start(extra: str = "", *, anonymous: bool = True) -> Broker:
        port = free_port()
        d = tmp_path_factory.mktemp("mosquitto")
        conf = d / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            "set_tcp_nodelay true\n"
            "persistence false\n"
            "max_queued_messages 100000\n"
            # As root, Mosquitto would drop to user "mosquitto", who cannot read
            # password/ACL files in pytest's private temporary directories.
            f"{'user root' if os.geteuid() == 0 else ''}\n"
            f"{extra}\n"
        )
        proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        broker = Broker("127.0.0.1", port, proc, conf)
        started.append(broker)
        wait_port("127.0.0.1", port)
        return broker

    yield start
    for b in started:
        b.stop()


@pytest.fixture(scope="session")
def mosquitto(mosquitto_factory: Callable[..., Broker]) -> Broker:
    """One private broker shared by the session's tests (use unique site ids per test)."""
    return mosquitto_factory()


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for the session, dropped afterwards."""
    import psycopg

    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    name = f"fabrique_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL on each backend; the PostgreSQL schema is emptied after each test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    url: str = request.getfixturevalue("pg_url")
    yield url
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
