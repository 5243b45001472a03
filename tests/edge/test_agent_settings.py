"""Edge settings: the example file, every rule that stops a bad ``edge.toml`` at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge.kinds import session_config
from edge.session import Actuation
from edge.settings import EdgeSettings, load_edge_settings
from protocol.signing import demo_edge_key

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "edge.toml"
SECRET = "0123456789abcdef-edge-tests-k7q2x9"


def base(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "site": "s-x",
        "edge_id": "pi-x",
        "site_secret": SECRET,
        "edge_key": "ab" * 32,
        "journal": {"path": "/tmp/j.db"},
        "machines": [
            {
                "id": "m-1",
                "reader": {"kind": "reader.sim"},
                "actuator": {"kind": "actuator.sim"},
            }
        ],
    }
    values.update(overrides)
    return values


def errors(**overrides: Any) -> str:
    with pytest.raises(ValidationError) as err:
        EdgeSettings(**base(**overrides))
    return str(err.value)


def test_the_example_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABRIQUE_EDGE_SITE_SECRET", SECRET)
    monkeypatch.setenv("FABRIQUE_EDGE_MQTT__PASSWORD", "broker-password")
    settings = load_edge_settings(EXAMPLE)
    assert settings.edge_id == "pi-fablab"
    assert [m.kind for m in settings.machines] == ["laser", "printer", "generic"]
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "broker-password"
    assert settings.policy_cache_path == Path("/var/lib/fabrique/policy.json")
    laser = session_config(settings.machines[0], settings)
    assert laser.cut_on_fault
    assert laser.cut_on_link_loss
    printer = session_config(settings.machines[1], settings)
    assert printer.hold_while_job
    assert not printer.cut_on_fault


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "edge.toml"
    config.parent.mkdir()
    config.write_text(
        f'site = "s-x"\nedge_id = "pi-x"\nsite_secret = "{SECRET}"\nedge_key_file = "k.key"\n'
        '[journal]\npath = "data/journal.db"\n'
        '[[machines]]\nid = "m-1"\nreader = { kind = "reader.sim" }\n'
        'actuator = { kind = "actuator.sim" }\n'
    )
    settings = load_edge_settings(config)
    assert settings.journal.path == tmp_path / "conf" / "data" / "journal.db"
    assert settings.edge_key_file == tmp_path / "conf" / "k.key"
    with pytest.raises(FileNotFoundError):
        load_edge_settings(tmp_path / "missing.toml")


def test_placeholder_and_short_secrets_are_refused() -> None:
    assert "valeur d'exemple" in errors(site_secret="demo-site-secret-not-for-production")
    assert "valeur d'exemple" in errors(site_secret="changeme-changeme-changeme-changeme")
    assert "32 au moins" in errors(site_secret="0123456789abcdef0123")
    assert "secrets.token_hex(32)" in errors(site_secret="0123456789abcdef0123")
    assert "au moins 16" in errors(site_secret="short")
    # Accepted in demo mode, where the time-lapse is allowed too.
    demo = EdgeSettings(**base(site_secret="demo-site-secret-not-for-production", demo=True))
    assert demo.demo
    assert "réservé à la démo" in errors(time_scale=30)


@pytest.mark.parametrize(
    ("machine", "message"),
    [
        ({"kind": "laser", "actuator": None}, "demande un appareil [machines.actuator]"),
        (
            {"kind": "gaming_pc"},
            "demande un appareil [machines.pc]",
        ),
        (
            {
                "printer": {
                    "kind": "printer.octoprint",
                    "options": {"url": "http://127.0.0.1:5000", "api_key": "0123456789"},
                }
            },
            "ne prend pas d'appareil printer",
        ),
        ({"reader": {"kind": "actuator.sim"}}, "est un actuator, pas un reader"),
        ({"actuator": {"kind": "actuator.relay"}}, "unknown device kind"),
        ({"actuator": {"kind": "actuator.gpio", "options": {"pin": 99}}}, "pin"),
        ({"idle_timeout_min": 10}, "demande busy_above_w"),
        ({"feedback": {}}, "au moins une broche"),
        ({"feedback": {"green_pin": 5, "red_pin": 5}}, "doivent être différentes"),
        ({"id": "Laser 1"}, "id"),
    ],
)
def test_machine_rules(machine: dict[str, Any], message: str) -> None:
    spec = {"id": "m-1", "reader": {"kind": "reader.sim"}, "actuator": {"kind": "actuator.sim"}}
    spec.update(machine)
    spec = {k: v for k, v in spec.items() if v is not None}
    assert message in errors(machines=[spec])


def test_duplicates_unknown_keys_and_ranges() -> None:
    machine = {"id": "m-1", "reader": {"kind": "reader.sim"}, "actuator": {"kind": "actuator.sim"}}
    assert "identifiants de machine en double : m-1" in errors(machines=[machine, machine])
    assert "Extra inputs" in errors(mqtt={"hostname": "x"})
    assert "decision_timeout_s" in errors(offline={"decision_timeout_s": 60})
    assert "reconnect_max_s" in errors(mqtt={"reconnect_min_s": 5, "reconnect_max_s": 2})
    assert "machines" in errors(machines=[])


def test_gaming_pc_settings_lock_instead_of_power() -> None:
    settings = EdgeSettings(
        **base(
            machines=[{"id": "pc-1", "kind": "gaming_pc", "reader": {"kind": "reader.sim"},
                       "pc": {"kind": "pc.sim"}}]
        )
    )  # fmt: skip
    config = session_config(settings.machines[0], settings)
    assert config.actuation is Actuation.LOCK
    assert config.decision_timeout_s == 0.5


def test_outside_demo_an_edge_needs_its_own_key(tmp_path: Path) -> None:
    assert "fabrique hub edge-key pi-x" in errors(edge_key=None)
    assert "64 hexadecimal" in errors(edge_key="not-a-key")
    # demo mode only: the key derived from the site secret, as the demo hub's fallback
    demo = EdgeSettings(**base(edge_key=None, demo=True))
    assert demo.key_bytes() == demo_edge_key(SECRET.encode(), "pi-x")
    key_file = tmp_path / "conf" / "pi-x.key"
    key_file.parent.mkdir()
    key_file.write_text("cd" * 32 + "\n")
    config = tmp_path / "conf" / "edge.toml"
    config.write_text(
        f'site = "s-x"\nedge_id = "pi-x"\nsite_secret = "{SECRET}"\nedge_key_file = "pi-x.key"\n'
        '[journal]\npath = "j.db"\n[[machines]]\nid = "m-1"\n'
        'reader = { kind = "reader.sim" }\nactuator = { kind = "actuator.sim" }\n'
    )
    settings = load_edge_settings(config)
    assert settings.edge_key_file == key_file
    assert settings.key_bytes() == bytes.fromhex("cd" * 32)
