"""``fabrique edge check-config`` and ``fabrique edge run`` as the operator uses them."""

from __future__ import annotations

import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edge.agent import run_agents
from edge.sdnotify import SystemdNotifier
from fabrique.cli import app
from fabrique.demo.runner import to_toml
from protocol.messages import EdgeStatus, decode
from protocol.topics import Topics
from tests.conftest import Broker
from tests.edge.conftest import SECRET, spawn_module, wait_until
from tests.hub.hubkit import Probe

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "edge.toml"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_check_config_summarises_a_valid_file(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FABRIQUE_SITE_SECRET", SECRET)
    result = runner.invoke(app, ["edge", "check-config", "--config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "configuration valide" in result.output
    assert "laser-1 (laser) : lecteur reader.rdm6300, sortie actuator.gpio" in result.output
    # The example's key file is not on this machine: said, as the agent would refuse it.
    assert "Attention : clé propre illisible (/etc/fabrique/edge.key)" in result.output


def test_check_config_explains_errors_in_french(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FABRIQUE_SITE_SECRET", raising=False)
    missing = runner.invoke(app, ["edge", "check-config", "-c", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2
    assert "introuvable" in missing.output

    bad = tmp_path / "edge.toml"
    bad.write_text(
        'site = "s-x"\nedge_id = "pi-x"\nsite_secret = "0123456789abcdef"\ncolour = 3\n'
        '[journal]\npath = "j.db"\n'
        '[[machines]]\nid = "laser-1"\nkind = "laser"\nreader = { kind = "reader.sim" }\n'
    )
    invalid = runner.invoke(app, ["edge", "run", "-c", str(bad)])
    assert invalid.exit_code == 2
    assert "Configuration invalide" in invalid.output
    assert "colour : paramètre inconnu" in invalid.output
    assert "une machine laser demande un appareil [machines.actuator]" in invalid.output

    broken = tmp_path / "broken.toml"
    broken.write_text("site = \n")
    assert runner.invoke(app, ["edge", "check-config", "-c", str(broken)]).exit_code == 2


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.broker
def test_run_announces_itself_with_a_persisted_epoch_and_says_goodbye(
    mosquitto: Broker, tmp_path: Path, procs: list[Any]
) -> None:
    site = "cli-edge"
    config = tmp_path / "edge.toml"
    config.write_text(
        to_toml(
            {
                "site": site,
                "edge_id": "pi-x",
                "site_secret": SECRET,
                "edge_key": "ab" * 32,
                "drain_timeout_s": 0.0,
                "mqtt": {"port": mosquitto.port},
                "journal": {"path": "journal.db"},
                "machines": [
                    {
                        "id": "m-1",
                        "reader": {"kind": "reader.sim"},
                        "actuator": {"kind": "actuator.sim"},
                    }
                ],
            }
        )
    )
    topic = Topics(site).edge_status("pi-x")
    probe = Probe(mosquitto.host, mosquitto.port, [topic]).start()

    def status() -> EdgeStatus | None:
        found = probe.on(topic)
        return decode(EdgeStatus, found[-1].payload) if found and found[-1].payload else None

    try:
        for expected_epoch in (1, 2):
            proc = spawn_module("fabrique", ["edge", "run", "-c", str(config)], tmp_path / "log")
            procs.append(proc)
            up = wait_until(
                lambda e=expected_epoch: (s := status()) and s.online and s.epoch == e and s,
                30,
                "online",
            )
            assert up.machines == ("m-1",)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            bye = wait_until(lambda: (s := status()) and not s.online and s, 10, "goodbye")
            assert bye.epoch == expected_epoch
            assert bye.goodbye  # a planned stop, not a lost edge
        assert (tmp_path / "journal.db").exists()  # relative to the configuration file
    finally:
        probe.publish(topic, b"", retain=True)
        probe.stop()
    assert "Traceback" not in (tmp_path / "log").read_text()


def _edge_config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "edge.toml"
    config.write_text(
        to_toml(
            {
                "site": "cli-edge",
                "edge_id": "pi-w",
                "site_secret": SECRET,
                "edge_key": "ab" * 32,
                "drain_timeout_s": 0.0,
                "mqtt": {"port": port},
                "journal": {"path": "journal.db"},
                "machines": [
                    {
                        "id": "m-1",
                        "reader": {"kind": "reader.sim"},
                        "actuator": {"kind": "actuator.sim"},
                    }
                ],
            }
        )
    )
    return config


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing where systemd's NOTIFY_SOCKET would be."""
    folder = tempfile.mkdtemp(prefix="sdn-")  # short: AF_UNIX paths are 108 bytes at most
    path = str(Path(folder) / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    yield path, sock
    sock.close()
    Path(path).unlink(missing_ok=True)
    Path(folder).rmdir()


@pytest.mark.broker
def test_run_tells_systemd_it_is_ready_pings_the_watchdog_and_says_stopping(
    mosquitto: Broker,
    tmp_path: Path,
    procs: list[Any],
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    config = _edge_config(tmp_path, mosquitto.port)
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}  # WatchdogSec=2
    proc = spawn_module("fabrique", ["edge", "run", "-c", str(config)], tmp_path / "log", env)
    procs.append(proc)
    assert sock.recv(64) == b"READY=1"
    assert [sock.recv(64) for _ in range(3)] == [b"WATCHDOG=1"] * 3
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    lines = []
    while (line := sock.recv(64)) != b"STOPPING=1":
        lines.append(line)
    assert set(lines) <= {b"WATCHDOG=1"}


class _WedgedAgent:
    """An agent whose thread went round its loop once, long ago, then hung."""

    edge_id = "pi-wedged"
    failed = None
    stopped = False
    heartbeat = -1e9

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def test_a_wedged_agent_thread_gets_no_watchdog_pings(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    sock.settimeout(1.0)
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    stop = threading.Event()
    runner = threading.Thread(target=run_agents, args=([_WedgedAgent()], stop, (), notifier))
    runner.start()
    try:
        assert sock.recv(64) == b"READY=1"
        with pytest.raises(TimeoutError):  # four periods of silence: systemd restarts it
            sock.recv(64)
    finally:
        stop.set()
        runner.join(10)
    assert sock.recv(64) == b"STOPPING=1"


def test_without_systemd_the_notifier_is_silent() -> None:
    quiet = SystemdNotifier({})
    assert not quiet.enabled
    assert quiet.watchdog_s is None
    assert not quiet.ready()
    other = SystemdNotifier(
        {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"}
    )
    assert other.watchdog_s is None  # the period is for another process of the unit
