"""Per-edge keys on the hub: provisioned by ``fabrique hub edge-key``, used to sign."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fabrique.cli import app
from hub import edgekeys
from hub.edgecmd import EdgeCommands
from hub.edgekeys import EdgeKeys
from hub.metrics import Metrics
from protocol.messages import JournalCommand, MachineAction, MachineCommand, Message
from protocol.signing import demo_edge_key, key_from_text, verify
from protocol.topics import Topics

NOW = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)
SECRETS = (
    'site_secret = "0123456789abcdef0123456789abcdef"\n'
    'session_secret = "fedcba9876543210fedcba9876543210"\n'
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FABRIQUE_"):
            monkeypatch.delenv(name)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_provision_creates_a_private_random_key_once(tmp_path: Path) -> None:
    keys = EdgeKeys(tmp_path / "keys")
    key, created = keys.provision("pi-a")
    assert created
    assert mode(keys.path("pi-a")) == 0o600
    assert mode(tmp_path / "keys") == 0o700
    assert keys.provision("pi-a") == (key, False)
    assert keys.key("pi-a") == key
    other, _ = keys.provision("pi-b")
    assert other != key
    rotated, created = keys.provision("pi-a", rotate=True)
    assert created
    assert rotated != key


def test_no_key_no_fallback_outside_demo(tmp_path: Path) -> None:
    assert EdgeKeys(tmp_path).key("pi-a") is None
    demo = EdgeKeys(tmp_path, demo_secret=b"0123456789abcdef-demo")
    assert demo.key("pi-a") == demo_edge_key(b"0123456789abcdef-demo", "pi-a")
    with pytest.raises(ValueError, match="invalid edge id"):
        EdgeKeys(tmp_path).path("../etc/passwd")


def test_a_key_written_later_is_read_after_the_cache_delay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(edgekeys.time, "monotonic", lambda: clock[0])
    keys = EdgeKeys(tmp_path)
    assert keys.key("pi-a") is None
    key, _ = EdgeKeys(tmp_path).provision("pi-a")  # another process: the CLI
    assert keys.key("pi-a") is None  # still cached
    clock[0] += edgekeys.CACHE_S
    assert keys.key("pi-a") == key


def test_a_corrupt_key_file_is_no_key(tmp_path: Path) -> None:
    (tmp_path / "pi-a.key").write_text("not a key\n")
    assert EdgeKeys(tmp_path).key("pi-a") is None


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []

    def publish(self, topic: str, message: Message, *, qos: int = 1, retain: bool = False) -> bool:
        self.sent.append((topic, message))
        return True


def test_commands_are_signed_for_their_edge_and_not_sent_without_a_key(tmp_path: Path) -> None:
    keys = EdgeKeys(tmp_path)
    key, _ = keys.provision("pi-a")
    recorder, metrics = Recorder(), Metrics()
    commands = EdgeCommands(recorder, Topics("s1"), keys, metrics)
    command = MachineCommand(
        cmd_id="c1", machine="m-1", action=MachineAction.MAINTENANCE_ON, not_after=NOW
    )
    assert commands.send("pi-a", command)
    assert commands.send("pi-a", JournalCommand(ack_through=3, not_after=NOW))
    (topic, sent), (topic2, sent2) = recorder.sent
    assert topic == "fabrique/v1/s1/edge/pi-a/cmd/machine"
    assert topic2 == "fabrique/v1/s1/edge/pi-a/cmd/journal"
    assert isinstance(sent, MachineCommand)
    assert verify(sent, key)
    assert isinstance(sent2, JournalCommand)
    assert verify(sent2, key)
    assert not commands.send("pi-b", command)  # no key for pi-b: nothing goes out
    assert len(recorder.sent) == 2
    assert metrics.get("unsigned_dropped") == 1


def hub_toml(tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(SECRETS + f'edge_keys_dir = "{tmp_path / "keys"}"\n', encoding="utf-8")
    return path


def run(*args: Any) -> Any:
    return CliRunner().invoke(app, ["hub", "edge-key", *map(str, args)])


def test_cli_prints_then_writes_the_edge_key(tmp_path: Path) -> None:
    config = hub_toml(tmp_path)
    first = run("pi-a", "--config", config)
    assert first.exit_code == 0, first.output
    key = key_from_text(first.stdout.splitlines()[0])
    stored = tmp_path / "keys" / "pi-a.key"
    assert key_from_text(stored.read_text()) == key
    assert mode(stored) == 0o600
    again = run("pi-a", "--config", config)
    assert key_from_text(again.stdout.splitlines()[0]) == key  # the same, not a new one
    out = tmp_path / "edge" / "pi-a.key"
    written = run("pi-a", "--config", config, "--out", out)
    assert written.exit_code == 0, written.output
    assert key_from_text(out.read_text()) == key
    assert mode(out) == 0o600
    assert key.hex() not in written.stdout  # written, not shown
    rotated = run("pi-a", "--config", config, "--rotate")
    assert key_from_text(rotated.stdout.splitlines()[0]) != key


def test_cli_refuses_a_bad_edge_id(tmp_path: Path) -> None:
    result = run("../x", "--config", hub_toml(tmp_path))
    assert result.exit_code == 2
    assert "Identifiant de borne invalide" in result.output


def test_check_config_counts_the_edge_keys(tmp_path: Path) -> None:
    config = hub_toml(tmp_path)
    before = CliRunner().invoke(app, ["hub", "check-config", "--config", str(config)])
    assert "Clés des bornes : 0" in before.output
    assert "fabrique hub edge-key BORNE" in before.output
    run("pi-a", "--config", config)
    run("pi-b", "--config", config)
    after = CliRunner().invoke(app, ["hub", "check-config", "--config", str(config)])
    assert after.exit_code == 0, after.output
    assert f"Clés des bornes : 2 dans {tmp_path / 'keys'}" in after.output
