"""The table of device kinds: validation of options and construction of each kind."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory  # type: ignore[import-untyped]
from pydantic import ValidationError

from devices.actuators import (
    Actuator,
    GpioRelay,
    LatchedActuator,
    ShellyPlug,
    SimulatedActuator,
    TasmotaPlug,
)
from devices.errors import DeviceConfigError
from devices.readers import (
    BadgeReader,
    DebouncedReader,
    EvdevReader,
    LineReader,
    Rdm6300Reader,
    SimulatedReader,
    StdinReader,
    rdm6300_frame,
)
from devices.registry import (
    KINDS,
    DeviceContext,
    DeviceSpec,
    ShellyConfig,
    build_actuator,
    build_reader,
    parse_config,
)
from tests.devices.conftest import PtyPort, read_all


def publish(topic: str, payload: bytes) -> None:
    pass


@pytest.fixture
def ctx() -> Any:
    factory = MockFactory()
    yield DeviceContext(mqtt_publish=publish, gpio_pin_factory=factory)
    factory.close()


READERS: list[tuple[str, dict[str, Any], type]] = [
    ("reader.rdm6300", {"port": "/dev/ttyAMA0"}, Rdm6300Reader),
    ("reader.line", {"port": "/dev/ttyUSB0", "baudrate": 115200}, LineReader),
    ("reader.stdin", {}, StdinReader),
    ("reader.evdev", {"device": "/dev/input/event3"}, EvdevReader),
    ("reader.sim", {}, SimulatedReader),
]
ACTUATORS: list[tuple[str, dict[str, Any], type]] = [
    ("actuator.gpio", {"pin": 17}, GpioRelay),
    ("actuator.shelly", {"host": "192.168.1.40"}, ShellyPlug),
    ("actuator.tasmota", {"topic": "tasmota_4E2F1A"}, TasmotaPlug),
    ("actuator.sim", {}, SimulatedActuator),
]


def test_table_lists_every_kind_once_with_a_dotted_name() -> None:
    assert {name for name, _, _ in READERS + ACTUATORS} <= set(KINDS)
    for name, kind in KINDS.items():
        assert kind.name == name
        assert re.fullmatch(r"(reader|actuator|laser|pc|printer)\.[a-z0-9]+", name)
        assert name.startswith(kind.role + ".")
        assert kind.config_model.model_config.get("frozen") is True


@pytest.mark.parametrize(("name", "options", "cls"), READERS, ids=[r[0] for r in READERS])
def test_builds_each_reader_kind(name: str, options: dict[str, Any], cls: type) -> None:
    reader = build_reader(name, options)
    assert isinstance(reader, BadgeReader)
    assert isinstance(reader, DebouncedReader)  # debounce_s defaults to 1 s
    assert isinstance(reader.reader, cls)
    assert reader.debouncer.window_s == 1.0
    raw = build_reader(name, {**options, "debounce_s": 0})
    assert isinstance(raw, cls)


@pytest.mark.parametrize(("name", "options", "cls"), ACTUATORS, ids=[a[0] for a in ACTUATORS])
def test_builds_each_actuator_kind(
    name: str, options: dict[str, Any], cls: type, ctx: DeviceContext
) -> None:
    actuator = build_actuator(name, options, ctx)
    assert isinstance(actuator, Actuator)
    assert isinstance(actuator, cls)
    laser = build_actuator(name, {**options, "latch_on_fault": True}, ctx)
    assert isinstance(laser, LatchedActuator)
    assert isinstance(laser.inner, cls)


def test_built_gpio_relay_uses_the_context_pin_factory(ctx: DeviceContext) -> None:
    with build_actuator("actuator.gpio", {"pin": "GPIO22"}, ctx) as relay:
        relay.on()
        assert ctx.gpio_pin_factory.pin(22).state is True  # type: ignore[attr-defined]
    assert ctx.gpio_pin_factory.pin(22).state is False  # type: ignore[attr-defined]


def test_built_shelly_carries_its_options() -> None:
    options = {"host": "plug-laser.local:8080", "switch_id": 1, "timeout_s": 0.5}
    plug = build_actuator("actuator.shelly", {**options, "auto_off_s": 20, "password": "pw"})
    assert isinstance(plug, ShellyPlug)
    assert (plug.host, plug.switch_id, plug.timeout, plug.auto_off_s) == (
        "plug-laser.local:8080",
        1,
        0.5,
        20,
    )
    config = parse_config("actuator.shelly", {"host": "h", "password": "secret"})
    assert isinstance(config, ShellyConfig)
    assert "secret" not in repr(config)  # SecretStr keeps it out of logs


def test_built_rdm6300_reads_a_real_pty(pty_port: PtyPort) -> None:
    with build_reader("reader.rdm6300", {"port": pty_port.path}) as reader:
        pty_port.write(rdm6300_frame("62E3086CED") * 3 + rdm6300_frame("0F00ABCDEF"))
        assert read_all(reader, 2) == ["62E3086CED", "0F00ABCDEF"]


@pytest.mark.parametrize(
    ("name", "options", "problem"),
    [
        ("reader.rdm6300", {}, "port"),
        ("reader.rdm6300", {"port": "/dev/ttyAMA0", "baud": 9600}, "baud"),
        ("reader.rdm6300", {"port": "/dev/ttyAMA0", "baudrate": 0}, "baudrate"),
        ("reader.line", {"port": "/dev/ttyUSB0", "debounce_s": -1}, "debounce_s"),
        ("reader.evdev", {"device": "/tmp/x"}, "device"),
        ("actuator.gpio", {"pin": 40}, "pin"),
        ("actuator.gpio", {"pin": "PIN17"}, "pin"),
        ("actuator.shelly", {"host": "http://192.168.1.40/"}, "host"),
        ("actuator.shelly", {"host": "h", "timeout_s": 0}, "timeout_s"),
        ("actuator.tasmota", {"topic": "plugs/+"}, "topic"),
        ("actuator.tasmota", {"topic": "p", "relay": 0}, "relay"),
        ("actuator.sim", {"load_w": -5}, "load_w"),
    ],
)
def test_invalid_options_are_rejected(name: str, options: dict[str, Any], problem: str) -> None:
    with pytest.raises(DeviceConfigError, match=problem) as info:
        parse_config(name, options)
    assert isinstance(info.value.__cause__, ValidationError)


def test_configs_are_frozen() -> None:
    config = parse_config("reader.rdm6300", {"port": "/dev/ttyAMA0"})
    with pytest.raises(ValidationError):
        config.port = "/dev/other"  # type: ignore[attr-defined]


def test_unknown_kind_and_wrong_role() -> None:
    with pytest.raises(DeviceConfigError, match=r"known kinds: actuator\.gpio"):
        build_reader("reader.pn532", {})
    with pytest.raises(DeviceConfigError, match="has role 'actuator', not 'reader'"):
        build_reader("actuator.sim", {})
    with pytest.raises(DeviceConfigError, match="has role 'reader', not 'actuator'"):
        build_actuator("reader.sim", {})


def test_tasmota_needs_the_publisher() -> None:
    with pytest.raises(DeviceConfigError, match="MQTT publisher"):
        build_actuator("actuator.tasmota", {"topic": "plug1"})


def test_device_spec_validates_its_options() -> None:
    spec = DeviceSpec.model_validate({"kind": "reader.sim", "options": {"debounce_s": 0.5}})
    assert spec.role == "reader"
    reader = spec.build_reader()
    assert isinstance(reader, DebouncedReader)
    assert reader.debouncer.window_s == 0.5
    assert isinstance(DeviceSpec(kind="actuator.sim").build_actuator(), SimulatedActuator)
    with pytest.raises(ValidationError, match="unknown device kind"):
        DeviceSpec(kind="reader.nfc")
    with pytest.raises(ValidationError, match="port"):
        DeviceSpec.model_validate({"kind": "reader.rdm6300", "options": {"port": ""}})


def test_a_shelly_password_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "shelly.pass"
    secret.write_text("pl4g-pass\n")
    options = {"host": "192.168.1.40", "password_file": str(secret)}
    plug = build_actuator("actuator.shelly", options)
    assert plug._password == "pl4g-pass"  # type: ignore[attr-defined]  # what digest auth uses
    with pytest.raises(DeviceConfigError, match="not both"):
        parse_config("actuator.shelly", options | {"password": "other"})
    with pytest.raises(DeviceConfigError, match="not a readable file"):
        parse_config("actuator.shelly", options | {"password_file": str(tmp_path / "none")})
