"""The ``printer.octoprint`` row of the device-kind table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from devices.errors import DeviceConfigError
from devices.octoprint import OctoPrintFollower
from devices.registry import KINDS, DeviceSpec, OctoPrintConfig, build_printer, parse_config


def test_builds_an_unstarted_follower_with_its_options() -> None:
    options = {
        "url": "http://octopi.local:5000/",
        "api_key": "0123456789ABCDEF",
        "throttle": 2,
        "poll_interval_s": 15,
        "timeout_s": 3,
    }
    follower = build_printer("printer.octoprint", options)
    assert isinstance(follower, OctoPrintFollower)
    assert (follower.throttle, follower.poll_interval_s) == (2, 15)
    assert follower.client.base_url == "http://octopi.local:5000"
    assert follower.client.timeout == 3
    assert not follower.running
    assert not follower.snapshot.known
    assert KINDS["printer.octoprint"].role == "printer"
    spec = DeviceSpec(kind="printer.octoprint", options=options)
    assert spec.role == "printer"


def test_api_key_stays_out_of_logs_and_defaults_are_sane() -> None:
    config = parse_config(
        "printer.octoprint", {"url": "http://127.0.0.1:5000", "api_key": "S3cret-key"}
    )
    assert isinstance(config, OctoPrintConfig)
    assert "S3cret" not in repr(config)
    assert "S3cret" not in str(config.model_dump())
    assert (config.throttle, config.poll_interval_s, config.timeout_s) == (1, 10.0, 10.0)
    assert "S3cret" not in repr(
        build_printer("printer.octoprint", config.model_dump() | {"api_key": "S3cret-key"})
    )


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"api_key": "0123456789"}, "url"),
        ({"url": "octopi.local:5000", "api_key": "0123456789"}, "url"),
        ({"url": "http://octopi.local", "api_key": "short"}, "api_key"),
        ({"url": "http://octopi.local", "api_key": "0123456789", "throttle": 0}, "throttle"),
        ({"url": "http://o", "api_key": "0123456789", "poll_interval_s": 0.1}, "poll_interval_s"),
        ({"url": "http://o", "api_key": "0123456789", "apikey": "x"}, "apikey"),
    ],
)
def test_invalid_options_are_rejected(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(DeviceConfigError, match=problem) as info:
        parse_config("printer.octoprint", options)
    assert isinstance(info.value.__cause__, ValidationError)


def test_a_printer_is_not_another_role() -> None:
    with pytest.raises(DeviceConfigError, match="has role 'printer', not 'laser'"):
        from devices.registry import build_laser

        build_laser("printer.octoprint", {"url": "http://o", "api_key": "0123456789"})


def test_the_api_key_may_come_from_a_file(tmp_path: Path) -> None:
    key = tmp_path / "octoprint.key"
    key.write_text("F1leKey-0123456789\n")
    options = {"url": "http://octopi.local", "api_key_file": str(key)}
    follower = build_printer("printer.octoprint", options)
    assert follower.client._api_key == "F1leKey-0123456789"  # the key the client sends
    assert "F1leKey" not in repr(parse_config("printer.octoprint", options))
    with pytest.raises(DeviceConfigError, match="not both"):
        parse_config("printer.octoprint", options | {"api_key": "0123456789"})
    with pytest.raises(DeviceConfigError, match="is required"):
        parse_config("printer.octoprint", {"url": "http://octopi.local"})
    with pytest.raises(DeviceConfigError, match="not a readable file"):
        parse_config("printer.octoprint", options | {"api_key_file": str(tmp_path / "none")})
    key.write_text("\n")
    with pytest.raises(DeviceConfigError, match="is empty"):
        build_printer("printer.octoprint", options)
