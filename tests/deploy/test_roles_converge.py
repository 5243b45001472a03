"""The fabrique_hub and fabrique_edge roles converge on this machine, and a second run
changes nothing.

Applied locally (``-c local``) to the example site's hub and laser Pi, with every path
in a temporary folder and ``*_service_manage`` / ``*_user_manage`` off (no systemd, no
new system users here). The run is real: the wheel of this checkout is installed into
a venv, ``fabrique hub check-config`` and ``fabrique hub migrate`` run against an
SQLite database, ``fabrique edge check-config`` validates the rendered edge.toml, and
``systemd-analyze verify`` reads the rendered units when it is installed.
"""

from __future__ import annotations

import getpass
import grp
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.ansible_run import PLAYBOOKS, ROOT, playbook

pytestmark = pytest.mark.deploy


def build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("fabrique-*.whl")
    return wheel


def test_hub_and_edge_roles_converge_then_change_nothing(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    venv = tmp_path / "venv"  # one venv for both roles keeps the test short
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot-checked-here\n-----END CERTIFICATE-----\n")
    hub = tmp_path / "hub"
    edge = tmp_path / "edge"
    extra: dict[str, object] = {
        "fabrique_wheel": str(wheel),
        # Real-looking secrets (the example vault's placeholders are refused by the hub).
        "vault_site_secret": secrets.token_hex(32),
        "vault_session_secret": secrets.token_hex(32),
        "vault_mqtt_hub_password": secrets.token_hex(16),
        "fabrique_hub_user": user,
        "fabrique_hub_group": group,
        "fabrique_hub_user_manage": False,
        "fabrique_hub_service_manage": False,
        "fabrique_hub_venv": str(venv),
        "fabrique_hub_config_dir": str(hub / "etc"),
        "fabrique_hub_data_dir": str(hub / "data"),
        "fabrique_hub_backup_dir": str(hub / "backups"),
        "fabrique_hub_bin_dir": str(hub / "bin"),
        "fabrique_hub_systemd_dir": str(hub / "systemd"),
        "fabrique_hub_database_url": f"sqlite:///{hub / 'data' / 'fabrique.db'}",
        "fabrique_edge_user": user,
        "fabrique_edge_group": group,
        "fabrique_edge_user_manage": False,
        "fabrique_edge_service_manage": False,
        "fabrique_edge_venv": str(venv),
        "fabrique_edge_config_dir": str(edge / "etc"),
        "fabrique_edge_data_dir": str(edge / "data"),
        "fabrique_edge_systemd_dir": str(edge / "systemd"),
        "fabrique_edge_udev_dir": str(edge / "udev"),
        "fabrique_edge_journald_dir": str(edge / "journald"),
        "fabrique_edge_chrony_dir": str(edge / "chrony"),
        "fabrique_edge_mqtt_ca_cert": ca.read_text(),
    }
    limit = "hub-marseille-14,pi-laser"
    first = playbook(PLAYBOOKS / "converge.yml", extra, limit=limit, tmp=tmp_path)
    assert first.changed > 0
    second = playbook(PLAYBOOKS / "converge.yml", extra, limit=limit, tmp=tmp_path)
    assert second.changed == 0, second.output[-4000:]

    # The hub: settings as the inventory says, schema migrated, units hardened.
    settings = tomllib.loads((hub / "etc" / "hub.toml").read_text())
    assert settings["site"] == "marseille-14"
    assert settings["mqtt_host"] == "127.0.0.1"
    assert settings["mqtt_tls"] is False
    assert (hub / "etc" / "hub.toml").stat().st_mode & 0o007 == 0
    with sqlite3.connect(hub / "data" / "fabrique.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()
    unit = (hub / "systemd" / "fabrique-hub.service").read_text()
    for line in ("ProtectSystem=strict", "NoNewPrivileges=true", "Restart=on-failure"):
        assert line in unit.splitlines()
    assert f"User={user}" in unit.splitlines()

    # The edge: its own credential, TLS with the site CA, the inventory's machines.
    conf = tomllib.loads((edge / "etc" / "edge.toml").read_text())
    assert conf["edge_id"] == "pi-laser"
    assert conf["mqtt"]["username"] == "pi-laser"
    assert conf["mqtt"]["tls"] is True
    assert conf["mqtt"]["port"] == 8883
    assert [m["id"] for m in conf["machines"]] == ["laser-1"]
    # Its own key, provisioned by the hub (0600 on both), never derived from the site secret.
    assert conf["edge_key_file"] == str(edge / "etc" / "edge.key")
    assert settings["edge_keys_dir"] == str(hub / "data" / "edge-keys")
    hub_key = hub / "data" / "edge-keys" / "pi-laser.key"
    edge_key = edge / "etc" / "edge.key"
    assert edge_key.read_text().strip() == hub_key.read_text().strip()
    assert len(bytes.fromhex(edge_key.read_text().strip())) == 32
    assert hub_key.stat().st_mode & 0o077 == 0
    assert edge_key.stat().st_mode & 0o077 == 0
    assert (hub / "data" / "edge-keys" / "pi-printers.key").is_file()  # every edge's
    rules = (edge / "udev" / "70-fabrique-readers.rules").read_text()
    assert 'SYMLINK+="fabrique/reader-laser"' in rules
    kiosk = (edge / "systemd" / "fabrique-kiosk.service").read_text()
    assert "/kiosk/laser-1?token=" in kiosk
    assert (edge / "systemd" / "fabrique-kiosk.service").stat().st_mode & 0o077 == 0
    assert "SystemMaxUse=50M" in (edge / "journald" / "fabrique.conf").read_text()

    # The backup and restore commands really round-trip the hub's database.
    env = {**os.environ, "FABRIQUE_BACKUP_DIR": str(hub / "backups")}
    out = subprocess.run(
        [str(hub / "bin" / "fabrique-backup")], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    with sqlite3.connect(hub / "data" / "fabrique.db") as db:
        version = db.execute("SELECT version_num FROM alembic_version").fetchone()
        db.execute("DELETE FROM alembic_version")
    subprocess.run([str(hub / "bin" / "fabrique-restore"), out], env=env, check=True)
    with sqlite3.connect(hub / "data" / "fabrique.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == version

    analyze = shutil.which("systemd-analyze")
    if analyze:
        units = [
            hub / "systemd" / "fabrique-hub.service",
            edge / "systemd" / "fabrique-edge.service",
        ]
        proc = subprocess.run(
            [analyze, "verify", "--man=no", *map(str, units)],
            capture_output=True,
            text=True,
            check=False,
        )
        # Unknown or misspelled directives are reported; missing users/binaries of a
        # machine without them are not what this checks.
        bad = [
            line
            for line in proc.stderr.splitlines()
            if "Unknown key" in line or "Unknown section" in line
        ]
        assert not bad, proc.stderr
