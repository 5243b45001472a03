"""``fabrique pc-agent`` as the fabmanager uses it: a short pc.toml, clear refusals, a
clean stop that leaves the PC locked."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from devices.pc import auto_backend
from edge import kinds
from edge.session import FeedbackKind
from fabrique.cli import app
from fabrique.demo.runner import to_toml
from fabrique.pcagent import (
    DEFAULT_OFFLINE_BREAK,
    PcConfigError,
    default_journal_path,
    load_pc_settings,
    pc_defaults,
)
from protocol.messages import EdgeStatus, decode
from protocol.topics import Topics
from tests.conftest import Broker
from tests.edge._pc_recorder import LockRecorder
from tests.edge.conftest import SECRET, spawn_module, wait_until
from tests.hub.hubkit import Probe

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pc.toml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No FABRIQUE_* variable of the developer's shell; the state directory in tmp."""
    import os

    for name in list(os.environ):
        if name.startswith("FABRIQUE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def pc_toml(path: Path, *machines: dict[str, Any], **top: Any) -> Path:
    values: dict[str, Any] = {
        "site": "s-pc",
        "edge_id": "pc-07",
        "site_secret": SECRET,
        "edge_key": "ab" * 32,
        **top,
        "machines": list(machines) or [{"id": "pc-07", "reader": {"kind": "reader.stdin"}}],
    }
    path.write_text(to_toml(values), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- --check


def test_the_example_is_valid_and_summarised(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FABRIQUE_SITE_SECRET", SECRET)
    result = runner.invoke(app, ["pc-agent", "--config", str(EXAMPLE), "--check"])
    assert result.exit_code == 0, result.output
    assert "configuration valide" in result.output
    assert f"Journal : {tmp_path / 'state' / 'journal.db'}" in result.output
    assert f"PC pc-07 : lecteur reader.evdev, verrou pc.auto → {auto_backend()}" in result.output
    assert (
        "Hors-ligne : avertissements 10 et 2 min avant la fin, pause de 10 min après 50 min"
    ) in result.output
    settings = load_pc_settings(EXAMPLE, site_secret=SECRET)
    (machine,) = settings.machines
    assert (machine.kind, machine.pc and machine.pc.kind) == ("gaming_pc", "pc.auto")


def test_a_short_file_gets_the_pc_defaults_and_keeps_its_own_values(tmp_path: Path) -> None:
    short = load_pc_settings(pc_toml(tmp_path / "pc.toml"))
    (machine,) = short.machines
    assert machine.kind == "gaming_pc"
    assert machine.pc is not None
    assert machine.pc.kind == "pc.auto"
    assert machine.offline_break is not None
    assert machine.offline_break.model_dump() == DEFAULT_OFFLINE_BREAK
    assert short.journal.path == tmp_path / "state" / "journal.db"

    own = {
        "id": "pc-07",
        "kind": "gaming_pc",
        "reader": {"kind": "reader.stdin"},
        "pc": {"kind": "pc.sim"},
        "offline_break": {"play_min": 60, "break_min": 15},
    }
    full = load_pc_settings(
        pc_toml(tmp_path / "full.toml", own, journal={"path": "j.db", "resend_s": 3.0})
    )
    (machine,) = full.machines
    assert machine.pc is not None
    assert machine.pc.kind == "pc.sim"
    assert machine.offline_break is not None
    assert (machine.offline_break.play_min, machine.offline_break.break_min) == (60, 15)
    assert (full.journal.path, full.journal.resend_s) == (tmp_path / "j.db", 3.0)


def test_the_default_journal_follows_the_platform(tmp_path: Path) -> None:
    home = Path("/home/gamer")
    assert default_journal_path("linux", {}, home) == home / ".local/state/fabrique/journal.db"
    assert default_journal_path("linux", {"XDG_STATE_HOME": "/xdg"}, home) == Path(
        "/xdg/fabrique/journal.db"
    )
    assert default_journal_path(
        "win32", {"LOCALAPPDATA": "C:/Users/gamer/AppData/Local"}, home
    ) == Path("C:/Users/gamer/AppData/Local/fabrique/journal.db")
    assert default_journal_path("win32", {}, home) == home / "AppData/Local/fabrique/journal.db"
    systemd = {"STATE_DIRECTORY": "/var/lib/fabrique:/var/lib/other", "XDG_STATE_HOME": "/x"}
    assert default_journal_path("linux", systemd, home) == Path("/var/lib/fabrique/journal.db")


def test_a_journal_path_from_the_environment_is_not_overridden() -> None:
    data = {"machines": [{"id": "pc-07"}]}
    assert "journal" in pc_defaults(data, env={})
    assert "journal" not in pc_defaults(data, env={"FABRIQUE_EDGE_JOURNAL__PATH": "/j.db"})
    assert "journal" not in pc_defaults(data, env={"fabrique_edge_journal__path": "/j.db"})
    assert "journal" not in pc_defaults({**data, "journal": {"path": "j.db"}}, env={})


@pytest.mark.parametrize(
    ("machines", "problem"),
    [
        (
            [],
            "exactement une machine, décrite dans un seul bloc [[machines]] ; "
            "ce fichier en décrit 0",
        ),
        (
            [{"id": "pc-07", "reader": {"kind": "reader.sim"}}] * 2,
            "ce fichier en décrit 2",
        ),
        (
            [
                {
                    "id": "laser-1",
                    "kind": "laser",
                    "reader": {"kind": "reader.sim"},
                    "actuator": {"kind": "actuator.sim"},
                }
            ],
            "la machine « laser-1 » est de type « laser » : l'agent du PC ne sert qu'une "
            'machine kind = "gaming_pc"',
        ),
    ],
)
def test_anything_but_one_gaming_pc_is_refused(
    runner: CliRunner, tmp_path: Path, machines: list[dict[str, Any]], problem: str
) -> None:
    values: dict[str, Any] = {
        "site": "s-pc",
        "edge_id": "pc-07",
        "site_secret": SECRET,
        "edge_key": "ab" * 32,
    }
    if machines:
        values["machines"] = machines
    config = tmp_path / "pc.toml"
    config.write_text(to_toml(values), encoding="utf-8")
    for extra in ([], ["--check"]):
        result = runner.invoke(app, ["pc-agent", "-c", str(config), *extra])
        assert result.exit_code == 2, result.output
        assert f"Configuration invalide ({config}) :" in result.output
        assert problem in result.output
    with pytest.raises(PcConfigError):
        load_pc_settings(config)


def test_configuration_errors_are_explained_in_french(runner: CliRunner, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["pc-agent", "-c", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2
    assert "introuvable" in missing.output

    no_reader = pc_toml(tmp_path / "pc.toml", {"id": "pc-07", "colour": "red"})
    invalid = runner.invoke(app, ["pc-agent", "-c", str(no_reader), "--check"])
    assert invalid.exit_code == 2
    assert "machines.0.reader : paramètre obligatoire manquant" in invalid.output
    assert "machines.0.colour : paramètre inconnu" in invalid.output

    broken = tmp_path / "broken.toml"
    broken.write_text("site = \n")
    assert runner.invoke(app, ["pc-agent", "-c", str(broken)]).exit_code == 2
    assert "Traceback" not in invalid.output + missing.output


def test_a_platform_without_a_session_lock_is_refused_before_starting(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = pc_toml(tmp_path / "pc.toml")
    monkeypatch.setattr("sys.platform", "darwin")
    result = runner.invoke(app, ["pc-agent", "-c", str(config)])
    assert result.exit_code == 2, result.output
    assert "verrou de session : pc.auto: no built-in session lock on platform 'darwin'" in (
        result.output
    )
    assert 'kind = "pc.command"' in result.output


def test_an_option_of_the_other_platform_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    other = {"pc.loginctl": {"unlock_cmd": ["cp-helper"]}, "pc.windows": {"session_id": "c2"}}
    machine = {
        "id": "pc-07",
        "reader": {"kind": "reader.stdin"},
        "pc": {"kind": "pc.auto", "options": other[auto_backend()]},
    }
    result = runner.invoke(app, ["pc-agent", "-c", str(pc_toml(tmp_path / "pc.toml", machine))])
    assert result.exit_code == 2, result.output
    assert "applies to" in result.output


# --------------------------------------------------------------------------- notices


def test_the_gaming_pc_kind_notifies_every_message_and_no_other_kind_does() -> None:
    """Notifications are the kind's (``fabrique edge run`` and ``pc-agent`` alike)."""
    assert kinds.get_kind("gaming_pc").notify == frozenset(FeedbackKind)
    assert [name for name, kind in kinds.KINDS.items() if kind.notify] == ["gaming_pc"]


# --------------------------------------------------------------------------- the process


@pytest.mark.broker
def test_run_locks_at_start_and_stays_locked_after_sigterm(
    mosquitto: Broker, tmp_path: Path
) -> None:
    lock = LockRecorder.create(tmp_path / "lock")
    site = "cli-pc"
    machine = {
        "id": "pc-07",
        "reader": {"kind": "reader.sim"},
        "pc": {"kind": "pc.command", "options": lock.options()},
    }
    config = pc_toml(
        tmp_path / "pc.toml",
        machine,
        site=site,
        drain_timeout_s=0.0,
        mqtt={"port": mosquitto.port},
    )
    topic = Topics(site).edge_status("pc-07")
    probe = Probe(mosquitto.host, mosquitto.port, [topic]).start()

    def status() -> EdgeStatus | None:
        found = probe.on(topic)
        return decode(EdgeStatus, found[-1].payload) if found and found[-1].payload else None

    log_file = tmp_path / "pc-agent.log"
    proc = spawn_module(
        "fabrique", ["pc-agent", "-c", str(config), "--log-file", str(log_file)], tmp_path / "out"
    )
    try:
        up = wait_until(lambda: (s := status()) and s.online and s, 30, "online")
        assert up.machines == ("pc-07",)
        assert lock.actions() == ["lock"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        wait_until(lambda: (s := status()) and not s.online, 10, "goodbye")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        probe.publish(topic, b"", retain=True)
        probe.stop()
    actions = lock.actions()
    assert actions[0] == "lock"
    assert "unlock" not in actions  # never unlocked without a grant
    assert actions[-1] == "lock"  # and locked again on the way out
    assert (tmp_path / "state" / "journal.db").exists()  # the default journal
    assert "edge pc-07 started" in log_file.read_text()
    assert "Traceback" not in (tmp_path / "out").read_text()
