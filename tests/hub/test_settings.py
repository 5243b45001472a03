"""Hub settings: placeholders refused outside demo mode, TOML and env sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.settings import HubSettings, load_settings

GOOD = {"site_secret": "a" * 32 + "x", "session_secret": "b" * 32 + "y"}


def test_demo_accepts_builtin_secrets() -> None:
    assert HubSettings(demo=True).site == "demo"


@pytest.mark.parametrize("secret", ["", "changeme", "CHANGEME", "secret", "short-one"])
def test_placeholder_or_short_secrets_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="site_secret"):
        HubSettings(site_secret=secret, session_secret=GOOD["session_secret"])


def test_default_secrets_refused_outside_demo() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        HubSettings()


def test_real_secrets_accepted() -> None:
    s = HubSettings(**GOOD)
    assert s.site_secret_bytes == GOOD["site_secret"].encode()
    assert "aaaa" not in repr(s)  # secrets never printed


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
