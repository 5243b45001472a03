"""What the member sees and hears at the machine: pluggable feedback sinks.

The session machine says *what* to tell the member (a :class:`~edge.session.Feedback`
effect: a kind and a plain-French message, often the hub's own text). The agent
wraps it in a :class:`FeedbackEvent` and hands it to :class:`FeedbackHub`, which
fans it out to every sink:

* :class:`ConsoleFeedback`: one log line per message (and an optional writer, the
  demo's narration);
* :class:`GpioFeedback`: a green and a red LED and a buzzer at one machine's
  reader, with one pattern per kind (:data:`PATTERNS`), through gpiozero (mock pins
  in tests and in the demo);
* :class:`FeedbackStream`: an in-process event stream (callbacks and a bounded
  history) for the kiosk screen of the web UI and for the demo's visitors.

Sinks run on the agent's thread and must be quick: gpiozero's ``blink`` and
``beep`` run their patterns on background threads. A sink that fails is logged and
never stops the agent, and never delays the actuator (effects before it already ran).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from edge.session import FeedbackKind

__all__ = [
    "PATTERNS",
    "ConsoleFeedback",
    "FeedbackEvent",
    "FeedbackHub",
    "FeedbackSink",
    "FeedbackStream",
    "GpioFeedback",
    "Pattern",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    """One message shown to a member at a machine.

    ``seq`` numbers the events of one agent (the kiosk asks "what since n?").
    """

    seq: int
    machine: str
    kind: FeedbackKind
    message: str
    at: datetime
    session_id: str | None = None


class FeedbackSink(Protocol):
    """Shows feedback events; opened before the first and closed after the last."""

    def open(self) -> None:
        """Acquire what the sink needs (pins, …)."""
        ...

    def close(self) -> None:
        """Release it; idempotent, never raises."""
        ...

    def show(self, event: FeedbackEvent) -> None:
        """Show one event; quick (patterns run in the background)."""
        ...


# --------------------------------------------------------------------------- console


class ConsoleFeedback:
    """Logs every event (INFO) without its message unless ``log_messages`` (messages greet
    members by first name, and logs escape retention and erasure; on a gaming PC the
    player's account can read them), and passes a line to ``writer`` if given (narration
    on a local screen)."""

    def __init__(
        self, writer: Callable[[str], None] | None = None, *, log_messages: bool = False
    ) -> None:
        self._writer = writer
        self._log_messages = log_messages

    def open(self) -> None:
        """Nothing to acquire."""

    def close(self) -> None:
        """Nothing to release."""

    def show(self, event: FeedbackEvent) -> None:
        """Log the machine and kind (and the message only when opted in)."""
        if self._log_messages:
            logger.info("[%s] %s: %s", event.machine, event.kind.value, event.message)
        else:
            logger.info("[%s] %s", event.machine, event.kind.value)
        if self._writer is not None:
            self._writer(f"{event.at:%H:%M:%S}  {event.machine:<10} {event.message}")


# --------------------------------------------------------------------------- kiosk stream


class FeedbackStream:
    """Feedback as an in-process stream: subscribers and a bounded history.

    Thread-safe: the agent shows events on its thread; any thread may
    :meth:`subscribe` or read :meth:`recent`. Callbacks run on the agent's thread and
    must be quick (put the event on your own queue).
    """

    def __init__(self, history: int = 50) -> None:
        self._history: deque[FeedbackEvent] = deque(maxlen=max(1, history))
        self._subscribers: list[Callable[[FeedbackEvent], None]] = []
        self._lock = threading.Lock()

    def open(self) -> None:
        """Nothing to acquire."""

    def close(self) -> None:
        """Drop the subscribers."""
        with self._lock:
            self._subscribers.clear()

    def subscribe(self, callback: Callable[[FeedbackEvent], None]) -> Callable[[], None]:
        """Call ``callback`` with every future event; return the unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def recent(self, since: int = 0, machine: str | None = None) -> list[FeedbackEvent]:
        """Kept events with ``seq > since`` (optionally of one machine), oldest first."""
        with self._lock:
            return [
                e
                for e in self._history
                if e.seq > since and (machine is None or e.machine == machine)
            ]

    def show(self, event: FeedbackEvent) -> None:
        """Keep the event and pass it to every subscriber."""
        with self._lock:
            self._history.append(event)
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:
                logger.exception("feedback subscriber failed")


# --------------------------------------------------------------------------- GPIO


@dataclass(frozen=True, slots=True)
class Pattern:
    """One kind's light and sound: which LEDs blink how, and how the buzzer beeps.

    ``leds`` names ``green``, ``red`` or both; ``n`` is the number of blinks or
    beeps (gpiozero's ``blink``/``beep`` arguments, in seconds).
    """

    leds: tuple[str, ...]
    led_on_s: float
    led_off_s: float
    led_n: int
    beep_on_s: float = 0.0
    beep_off_s: float = 0.0
    beep_n: int = 0


#: Grant: green for two seconds, one short beep. Deny: red blinks three times, one
#: long beep. Warning: both blink four times, two beeps. Info: green blinks twice.
PATTERNS: Final[dict[FeedbackKind, Pattern]] = {
    FeedbackKind.GRANT: Pattern(("green",), 2.0, 0.0, 1, 0.1, 0.0, 1),
    FeedbackKind.DENY: Pattern(("red",), 0.2, 0.2, 3, 0.6, 0.0, 1),
    FeedbackKind.WARN: Pattern(("green", "red"), 0.3, 0.3, 4, 0.15, 0.15, 2),
    FeedbackKind.INFO: Pattern(("green",), 0.2, 0.2, 2),
}


class GpioFeedback:
    """LEDs and a buzzer at one machine's reader, driven through gpiozero.

    Only events of ``machine`` are shown. Pins are BCM numbers or gpiozero names;
    ``pin_factory`` is a gpiozero pin factory (``MockFactory`` in tests and the
    demo; ``None`` uses gpiozero's default, the real header).

    Raises (from :meth:`open`):
        RuntimeError: gpiozero cannot drive the pins (not a Pi, pin in use).
    """

    def __init__(
        self,
        machine: str,
        *,
        green_pin: int | str | None = None,
        red_pin: int | str | None = None,
        buzzer_pin: int | str | None = None,
        active_high: bool = True,
        pin_factory: object | None = None,
        patterns: dict[FeedbackKind, Pattern] | None = None,
    ) -> None:
        self.machine = machine
        self._pins = {"green": green_pin, "red": red_pin}
        self._buzzer_pin = buzzer_pin
        self._active_high = active_high
        self._factory = pin_factory
        self._patterns = patterns or PATTERNS
        self._leds: dict[str, Any] = {}
        self._buzzer: Any = None

    def __repr__(self) -> str:
        return f"GpioFeedback({self.machine!r})"

    def open(self) -> None:
        """Claim the pins (all off)."""
        try:
            from gpiozero import LED, Buzzer
            from gpiozero.exc import GPIOZeroError
        except ImportError as err:  # pragma: no cover - gpiozero is in the [edge] extra
            raise RuntimeError("gpiozero is not installed (pip install fabrique[edge])") from err
        try:
            for name, pin in self._pins.items():
                if pin is not None:
                    self._leds[name] = LED(
                        pin, active_high=self._active_high, pin_factory=self._factory
                    )
            if self._buzzer_pin is not None:
                self._buzzer = Buzzer(
                    self._buzzer_pin, active_high=self._active_high, pin_factory=self._factory
                )
        except (GPIOZeroError, OSError, ValueError) as err:
            self.close()
            raise RuntimeError(f"{self!r}: cannot claim the feedback pins: {err}") from err

    def close(self) -> None:
        """Switch everything off and release the pins."""
        devices = [*self._leds.values(), self._buzzer]
        self._leds, self._buzzer = {}, None
        for device in devices:
            if device is None:
                continue
            try:
                device.close()
            except Exception:
                logger.exception("%r: could not release a pin", self)

    def show(self, event: FeedbackEvent) -> None:
        """Play the pattern of ``event.kind`` (in the background) if it is our machine."""
        if event.machine != self.machine:
            return
        pattern = self._patterns.get(event.kind)
        if pattern is None:
            return
        for name, led in self._leds.items():
            if name in pattern.leds:
                led.blink(pattern.led_on_s, pattern.led_off_s, n=pattern.led_n, background=True)
            else:
                led.off()
        if self._buzzer is not None and pattern.beep_n:
            self._buzzer.beep(pattern.beep_on_s, pattern.beep_off_s, n=pattern.beep_n)


# --------------------------------------------------------------------------- fan-out


class FeedbackHub:
    """Numbers events and hands each to every sink; a failing sink is logged and skipped."""

    def __init__(self, sinks: Sequence[FeedbackSink], stream: FeedbackStream) -> None:
        self.stream = stream
        self._sinks: list[FeedbackSink] = [*sinks, stream]
        self._seq = itertools.count(1)
        self._opened: list[FeedbackSink] = []

    def open(self) -> None:
        """Open every sink; one that cannot open is logged and left out."""
        for sink in self._sinks:
            try:
                sink.open()
            except Exception as err:
                logger.error("feedback %r unavailable: %s", sink, err)
                continue
            self._opened.append(sink)

    def close(self) -> None:
        """Close every opened sink."""
        opened, self._opened = self._opened, []
        for sink in opened:
            try:
                sink.close()
            except Exception:
                logger.exception("feedback %r did not close cleanly", sink)

    def show(
        self,
        machine: str,
        kind: FeedbackKind,
        message: str,
        at: datetime,
        session_id: str | None = None,
    ) -> FeedbackEvent:
        """Build the event and show it on every opened sink; return it."""
        event = FeedbackEvent(next(self._seq), machine, kind, message, at, session_id)
        for sink in self._opened:
            try:
                sink.show(event)
            except Exception:
                logger.exception("feedback %r failed", sink)
        return event
