"""The ``fabrique`` command: clear errors for users, working subcommands."""

from __future__ import annotations

import logging
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fabrique.cli import app

GOOD_SECRETS = (
    'site_secret = "0123456789abcdef0123456789abcdef"\n'
    'session_secret = "fedcba9876543210fedcba9876543210"\n'
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FABRIQUE_* variable of the developer's shell leaks into the settings."""
    import os

    for name in list(os.environ):
        if name.startswith("FABRIQUE_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """The commands configure the root logger; give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for added in set(root.handlers) - set(handlers):
        added.close()  # the demo's log file: closed, not left to the collector
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_placeholder_secrets_outside_demo_are_refused(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path, 'site = "marseille"\nsite_secret = "changeme"\n')
    result = runner.invoke(app, ["hub", "check-config", "--config", str(config)])
    assert result.exit_code == 2
    assert "Configuration invalide" in result.output
    assert "site_secret est une valeur d'exemple" in result.output
    assert "FABRIQUE_SITE_SECRET" in result.output
    assert "secrets.token_hex(32)" in result.output  # the command that makes a good one
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_check_config_refuses_a_repeated_placeholder(runner: CliRunner, tmp_path: Path) -> None:
    config = write(
        tmp_path,
        'site_secret = "changeme-changeme-changeme"\n'
        'session_secret = "fedcba9876543210fedcba9876543210"\n',
    )
    result = runner.invoke(app, ["hub", "check-config", "--config", str(config)])
    assert result.exit_code == 2
    assert "site_secret est une valeur d'exemple" in result.output
    assert "secrets.token_hex(32)" in result.output


def test_every_hub_command_refuses_a_bad_config(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path, 'site_secret = "changeme"\n')
    for command in (["run"], ["migrate"], ["create-admin", "root"]):
        result = runner.invoke(app, ["hub", *command, "--config", str(config)])
        assert result.exit_code == 2, (command, result.output)
        assert "Configuration invalide" in result.output


def test_the_environment_is_checked_too(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FABRIQUE_SITE_SECRET", "short-secret")
    monkeypatch.setenv("FABRIQUE_SESSION_SECRET", "fedcba9876543210fedcba9876543210")
    result = runner.invoke(app, ["hub", "check-config"])
    assert result.exit_code == 2
    assert "site_secret est trop court (12 caractères, 32 au moins)" in result.output


def test_config_file_errors_are_plain(runner: CliRunner, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["hub", "check-config", "-c", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2
    assert "introuvable" in missing.output

    broken = runner.invoke(app, ["hub", "check-config", "-c", str(write(tmp_path, "site = ["))])
    assert broken.exit_code == 2
    assert "Configuration invalide" in broken.output

    unknown = runner.invoke(
        app, ["hub", "check-config", "-c", str(write(tmp_path, GOOD_SECRETS + "colour = 1\n"))]
    )
    assert unknown.exit_code == 2
    assert "colour : paramètre inconnu" in unknown.output

    bad_type = runner.invoke(
        app,
        ["hub", "check-config", "-c", str(write(tmp_path, GOOD_SECRETS + 'mqtt_port = "x"\n'))],
    )
    assert bad_type.exit_code == 2
    assert "mqtt_port" in bad_type.output


def test_check_config_summarises_a_good_config(runner: CliRunner, tmp_path: Path) -> None:
    config = write(
        tmp_path,
        GOOD_SECRETS
        + 'site = "marseille"\ndatabase_url = "postgresql://fab:hunter2hunter2@db/fab"\n',
    )
    result = runner.invoke(app, ["hub", "check-config", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "Configuration valide." in result.output
    assert "marseille" in result.output
    assert "hunter2" not in result.output  # the database password is never printed
    assert "mode démo" not in result.output


def test_migrate_and_create_admin(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "hub.db"
    config = write(tmp_path, GOOD_SECRETS + f'database_url = "sqlite:///{db}"\n')
    migrated = runner.invoke(app, ["hub", "migrate", "-c", str(config)])
    assert migrated.exit_code == 0, migrated.output
    assert "Base à jour" in migrated.output

    monkeypatch.setenv("FABRIQUE_ADMIN_PASSWORD", "un mot de passe solide")
    created = runner.invoke(app, ["hub", "create-admin", "chef", "-c", str(config)])
    assert created.exit_code == 0, created.output
    assert "« chef » créé" in created.output
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT username, role, password_hash FROM account").fetchall()
    assert [(u, r) for u, r, _h in rows] == [("chef", "admin")]
    assert rows[0][2].startswith("$argon2")

    again = runner.invoke(app, ["hub", "create-admin", "chef", "-c", str(config)])
    assert again.exit_code == 1
    assert "déjà utilisé" in again.output

    monkeypatch.setenv("FABRIQUE_ADMIN_PASSWORD", "court")
    weak = runner.invoke(app, ["hub", "create-admin", "autre", "-c", str(config)])
    assert weak.exit_code == 1
    assert "trop faible" in weak.output


def test_create_admin_prompts_for_the_password(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    config = write(tmp_path, GOOD_SECRETS + f'database_url = "sqlite:///{db}"\n')
    result = runner.invoke(
        app,
        ["hub", "create-admin", "chef", "-c", str(config)],
        input="un mot de passe solide\nun mot de passe solide\n",
    )
    assert result.exit_code == 0, result.output
    assert "solide" not in result.output  # hidden input


def test_demo_refuses_a_taken_port(runner: CliRunner, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["demo", "--port", str(port), "--dir", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert f"le port {port} est déjà utilisé" in result.output


def test_demo_refuses_a_bad_broker_choice(runner: CliRunner) -> None:
    result = runner.invoke(app, ["demo", "--broker", "rabbit"])
    assert result.exit_code == 2


def test_version_and_module_entry_point(runner: CliRunner) -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.startswith("fabrique ")
    help_text = subprocess.run(
        [sys.executable, "-m", "fabrique", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert help_text.returncode == 0, help_text.stderr
    for command in ("hub", "edge", "demo", "version"):
        assert command in help_text.stdout


def test_hub_run_refuses_a_taken_port(runner: CliRunner, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write(tmp_path, GOOD_SECRETS + f"http_port = {port}\n")
        result = runner.invoke(app, ["hub", "run", "-c", str(config)])
    assert result.exit_code == 1
    assert "Le hub n'a pas pu démarrer" in result.output
    assert "Address already in use" in result.output or "utilis" in result.output


def test_config_errors_are_french_and_say_how_to_fix(runner: CliRunner, tmp_path: Path) -> None:
    broken = runner.invoke(
        app, ["hub", "check-config", "-c", str(write(tmp_path, 'site = "x"\nport = abc\n'))]
    )
    assert broken.exit_code == 2
    assert "fichier TOML illisible (ligne 2, colonne 8) : valeur invalide" in broken.output
    assert "Invalid" not in broken.output

    wrong_type = runner.invoke(
        app,
        ["hub", "check-config", "-c", str(write(tmp_path, GOOD_SECRETS + 'mqtt_port = "x"\n'))],
    )
    assert wrong_type.exit_code == 2, wrong_type.output
    assert "mqtt_port : nombre entier attendu" in wrong_type.output
    assert "Input should" not in wrong_type.output


def test_the_example_edge_config_names_the_variable_it_needs(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "edge.toml"
    monkeypatch.delenv("FABRIQUE_EDGE_SITE_SECRET", raising=False)
    result = runner.invoke(app, ["edge", "check-config", "-c", str(example)])
    assert result.exit_code == 2
    assert "FABRIQUE_EDGE_SITE_SECRET" in result.output
    monkeypatch.setenv("FABRIQUE_EDGE_SITE_SECRET", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("FABRIQUE_EDGE_MQTT__PASSWORD", "broker-password")
    ok = runner.invoke(app, ["edge", "check-config", "-c", str(example)])
    assert ok.exit_code == 0, ok.output
    assert "marseille-14" in ok.output
