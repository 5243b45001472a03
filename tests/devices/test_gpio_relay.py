"""The GPIO relay, on gpiozero's mock pin factory: off at start, on close, on error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPin  # type: ignore[import-untyped]

from devices.actuators import Actuator, GpioRelay
from devices.errors import DeviceConfigError, DeviceUnavailable


class RecordingPin(MockPin):  # type: ignore[misc]
    """A mock pin that remembers the level it was driving when released."""

    level_at_release: bool | None = None

    def close(self) -> None:
        self.level_at_release = bool(self.state)
        super().close()


@pytest.fixture
def factory() -> Iterator[Any]:
    f = MockFactory(pin_class=RecordingPin)
    yield f
    f.close()


def test_relay_is_off_when_opened(factory: Any) -> None:
    relay = GpioRelay(17, pin_factory=factory)
    assert isinstance(relay, Actuator)
    with relay:
        pin = factory.pin(17)
        assert pin.function == "output"
        assert pin.state is False
        assert relay.state() is False
        # It never went high on the way: the only recorded level is low.
        assert [s.state for s in pin.states] == [False]


def test_relay_switches_and_is_off_after_close(factory: Any) -> None:
    with GpioRelay("GPIO17", pin_factory=factory) as relay:
        relay.on()
        assert factory.pin(17).state is True
        assert relay.state() is True
        assert relay.power_w() is None
    pin = factory.pin(17)
    assert pin.level_at_release is False
    assert pin.function == "input"  # released


def test_relay_is_off_after_an_exception_in_the_block(factory: Any) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), GpioRelay(17, pin_factory=factory) as relay:
        relay.on()
        raise Boom
    assert factory.pin(17).level_at_release is False


def test_active_low_relay_is_off_at_high_level(factory: Any) -> None:
    with GpioRelay(27, active_high=False, pin_factory=factory) as relay:
        pin = factory.pin(27)
        assert pin.state is True  # HIGH = de-energised on an active-low board
        relay.on()
        assert pin.state is False
        assert relay.state() is True
    assert factory.pin(27).level_at_release is True


def test_relay_errors_are_translated(factory: Any) -> None:
    with pytest.raises(DeviceConfigError):
        GpioRelay(99, pin_factory=factory).open()
    with GpioRelay(17, pin_factory=factory), pytest.raises(DeviceUnavailable, match="in use"):
        GpioRelay(17, pin_factory=factory).open()
    closed = GpioRelay(17, pin_factory=factory)
    for call in (closed.on, closed.off, closed.state):
        with pytest.raises(DeviceUnavailable, match="not open"):
            call()
