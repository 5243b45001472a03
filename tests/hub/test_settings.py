"""Hub settings: placeholders refused outside demo mode, TOML and env sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.settings import HubSettings, load_settings

GOOD = {
    "site_secret": "3f9c1e7a52b8d04e6a1f9c3b7d2e8a05",
    "session_secret": "c81d4f0a9e3b7265d1f08c4a3e9b7d26aa",
}


def test_demo_accepts_builtin_secrets() -> None:
    assert HubSettings(demo=True).site == "demo"


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "changeme",
        "CHANGEME",
        "secret",
        "short-one",
        "changeme-changeme-changeme",
        "0123456789abcdef01234",  # 16 to 31 characters: the README promises 32+
        "abcabcabcabcabcabcabcabcabcabcabcabc",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "example-site-value-0123456789abcdefgh",
    ],
)
def test_placeholder_short_or_patterned_secrets_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="site_secret") as err:
        HubSettings(site_secret=secret, session_secret=GOOD["session_secret"])
    assert "secrets.token_hex(32)" in str(err.value)  # the command that makes a good one


def test_default_secrets_refused_outside_demo() -> None:
    with pytest.raises(ValidationError, match="valeur d'exemple"):
        HubSettings()


def test_real_secrets_accepted() -> None:
    s = HubSettings(**GOOD)
    assert s.site_secret_bytes == GOOD["site_secret"].encode()
    assert "3f9c1e" not in repr(s)  # secrets never printed


@pytest.mark.parametrize(("field", "value"), [("site", "Bad/Site"), ("timezone", "Mars/Base")])
def test_invalid_values_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        HubSettings(demo=True, **{field: value})


def test_toml_file_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text('site = "marseille-14"\ndemo = true\nhttp_port = 9000\n')
    s = load_settings(cfg)
    assert (s.site, s.http_port) == ("marseille-14", 9000)
    monkeypatch.setenv("FABRIQUE_HTTP_PORT", "9100")
    assert load_settings(cfg).http_port == 9100
    monkeypatch.setenv("FABRIQUE_CONFIG", str(cfg))
    assert load_settings().site == "marseille-14"


def test_missing_or_unknown_keys_in_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "nope.toml")
    cfg = tmp_path / "hub.toml"
    cfg.write_text('demo = true\nsitee = "typo"\n')
    with pytest.raises(ValidationError, match="sitee"):
        load_settings(cfg)


def test_healthy_gaming_and_filament_defaults() -> None:
    s = HubSettings(demo=True)
    assert {k: v.model_dump() for k, v in s.gaming_defaults.items()} == {
        "9-15": {"daily_min": 90, "break_after_min": 50, "break_min": 10},
        "16-25": {"daily_min": 180, "break_after_min": 120, "break_min": 10},
    }
    assert (s.filament_diameter_mm, s.filament_density_g_cm3) == (1.75, 1.24)
    assert s.filament_grams(1000) == pytest.approx(2.98, abs=0.005)  # PLA: ~3 g per metre
    assert s.filament_grams(0) == 0


def test_gaming_defaults_from_a_toml_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(
        "demo = true\n"
        "filament_density_g_cm3 = 1.27\n"
        '[gaming_defaults."9-15"]\n'
        "daily_min = 60\n"
        "break_after_min = 45\n"
        "break_min = 15\n"
    )
    s = load_settings(cfg)
    assert list(s.gaming_defaults) == ["9-15"]  # the file's table replaces the defaults
    assert s.gaming_defaults["9-15"].break_min == 15
    assert s.filament_density_g_cm3 == 1.27
    monkeypatch.setenv("FABRIQUE_GAMING_DEFAULTS", '{"16-25": {"daily_min": 240}}')
    assert load_settings(cfg).gaming_defaults["16-25"].daily_min == 240


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"9-14": {"daily_min": 60}}, "d'âge inconnue"),
        ({"9-15": {"break_after_min": 50}}, "break_after_min et break_min ensemble"),
        ({"9-15": {"daily_min": 0}}, "greater than or equal to 1"),
        ({"9-15": {"dayly_min": 60}}, "dayly_min"),
    ],
)
def test_bad_gaming_defaults_refused(table: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HubSettings(demo=True, gaming_defaults=table)


@pytest.mark.parametrize("field", ["filament_diameter_mm", "filament_density_g_cm3"])
def test_filament_settings_must_be_positive(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        HubSettings(demo=True, **{field: 0})


def test_api_docs_are_public_in_demo_and_admin_only_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert HubSettings(demo=True).docs_access == "public"
    assert HubSettings(**GOOD).docs_access == "admin"
    assert HubSettings(demo=True, api_docs="off").docs_access == "off"
    monkeypatch.setenv("FABRIQUE_API_DOCS", "public")
    assert HubSettings(**GOOD).docs_access == "public"
    with pytest.raises(ValidationError, match="api_docs"):
        HubSettings(demo=True, api_docs="everyone")


def test_the_demo_time_scale_is_refused_on_a_real_site() -> None:
    assert HubSettings(demo=True, demo_time_scale=60).demo_time_scale == 60
    with pytest.raises(ValidationError, match="ne vaut que pour la démo"):
        HubSettings(**GOOD, demo_time_scale=60)
