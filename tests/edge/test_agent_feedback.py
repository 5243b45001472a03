"""Feedback sinks: the kiosk stream, the console, GPIO LEDs and buzzer on gpiozero mock pins."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.feedback import (
    PATTERNS,
    ConsoleFeedback,
    FeedbackEvent,
    FeedbackHub,
    FeedbackStream,
    GpioFeedback,
)
from edge.session import FeedbackKind

AT = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    factory = MockFactory(pin_class=MockPWMPin)
    yield factory
    factory.reset()
    Device.pin_factory = None


def wait_for(predicate: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.005)


def test_stream_keeps_history_and_feeds_subscribers() -> None:
    stream = FeedbackStream(history=3)
    hub = FeedbackHub([], stream)
    hub.open()
    seen: list[FeedbackEvent] = []
    unsubscribe = stream.subscribe(seen.append)
    for i in range(5):
        hub.show(f"m-{i % 2}", FeedbackKind.INFO, f"message {i}", AT)
    assert [e.seq for e in seen] == [1, 2, 3, 4, 5]
    assert [e.seq for e in stream.recent()] == [3, 4, 5]  # bounded history
    assert [e.message for e in stream.recent(since=3, machine="m-0")] == ["message 4"]
    unsubscribe()
    hub.show("m-0", FeedbackKind.GRANT, "encore", AT)
    assert len(seen) == 5


def test_a_failing_sink_or_subscriber_never_stops_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def open(self) -> None:
            pass

        def close(self) -> None:
            pass

        def show(self, event: FeedbackEvent) -> None:
            raise RuntimeError("LED driver exploded")

    class Unopenable(Broken):
        def open(self) -> None:
            raise RuntimeError("no such pin")

    lines: list[str] = []
    stream = FeedbackStream()
    stream.subscribe(lambda e: (_ for _ in ()).throw(ValueError("bad kiosk")))
    hub = FeedbackHub([Unopenable(), Broken(), ConsoleFeedback(lines.append)], stream)
    with caplog.at_level(logging.INFO):
        hub.open()
        event = hub.show("laser-1", FeedbackKind.DENY, "Il te faut la formation laser.", AT)
    assert lines == ["14:00:00  laser-1    Il te faut la formation laser."]
    assert stream.recent() == [event]
    assert "unavailable" in caplog.text
    assert "LED driver exploded" in caplog.text
    hub.close()


def history(pin: Any) -> list[bool]:
    return [bool(p.state) for p in pin.states]


def test_gpio_patterns_per_kind(pins: MockFactory) -> None:
    gpio = GpioFeedback("laser-1", green_pin=5, red_pin=6, buzzer_pin=13, pin_factory=pins)
    gpio.open()
    green, red, buzzer = (pins.pin(n) for n in (5, 6, 13))
    try:
        gpio.show(FeedbackEvent(1, "other", FeedbackKind.GRANT, "pas pour nous", AT))
        assert history(green) == [False]
        assert history(red) == [False]

        gpio.show(FeedbackEvent(2, "laser-1", FeedbackKind.GRANT, "C'est parti", AT))
        wait_for(lambda: history(buzzer) == [False, True, False])  # one short beep
        assert history(green) == [False, True]  # lit for two seconds
        assert history(red) == [False]

        gpio.show(FeedbackEvent(3, "laser-1", FeedbackKind.DENY, "Refusé", AT))
        deny = PATTERNS[FeedbackKind.DENY]
        wait_for(lambda: history(red) == [False] + [True, False] * deny.led_n, 3)
        assert history(green) == [False, True, False]  # switched off at once
        wait_for(lambda: history(buzzer) == [False, True, False, True, False])  # a long beep
    finally:
        gpio.close()
    assert not green.state
    assert not red.state
    assert not buzzer.state


def test_gpio_open_failure_is_reported(pins: MockFactory) -> None:
    first = GpioFeedback("m-1", green_pin=5, pin_factory=pins)
    first.open()
    try:
        second = GpioFeedback("m-2", green_pin=5, pin_factory=pins)  # the same pin
        with pytest.raises(RuntimeError, match="cannot claim"):
            second.open()
    finally:
        first.close()


def test_console_logs_carry_no_name_unless_opted_in(caplog: pytest.LogCaptureFixture) -> None:
    message = "Bonjour Léa, session jusqu'à 16:00"
    event = FeedbackEvent(1, "laser-1", FeedbackKind.GRANT, message, AT)
    with caplog.at_level(logging.INFO, logger="edge.feedback"):
        ConsoleFeedback().show(event)
    assert "laser-1" in caplog.text
    assert "Léa" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge.feedback"):
        ConsoleFeedback(log_messages=True).show(event)
    assert "Léa" in caplog.text
