"""A Tasmota smart plug, spoken to over MQTT through an injected publisher.

``devices`` contains no MQTT client (DESIGN §5.4: one module per process owns the
connection). :class:`TasmotaPlug` only builds and parses Tasmota's messages; the
edge's link does the I/O:

* commands go out through the ``publish(topic, payload)`` callable given to the
  constructor: ``cmnd/<topic>/POWER`` with ``ON`` or ``OFF`` (an empty payload asks
  for the state);
* the link subscribes to :attr:`TasmotaPlug.subscriptions` and hands every message
  on them to :meth:`TasmotaPlug.handle_message`, which updates the reported state:

  ========================  =========================================
  ``stat/<topic>/POWER``    ``ON`` / ``OFF``: answer to a command
  ``stat/<topic>/RESULT``   JSON ``{"POWER": "ON"}``
  ``tele/<topic>/STATE``    JSON periodic state, ``"POWER": "ON"``
  ``tele/<topic>/SENSOR``   JSON ``{"ENERGY": {"Power": 12.5, …}}`` (W)
  ``tele/<topic>/LWT``      ``Online`` / ``Offline`` (retained last will)
  ========================  =========================================

Relay ``n`` > 1 of a multi-relay device uses ``POWERn``; ``POWER`` and ``POWER1``
are the same relay. Default Tasmota FullTopic ``%prefix%/%topic%/`` is assumed.

``on()`` and ``off()`` only *send*: :meth:`state` is what the plug last reported,
``None`` until it reports or while its LWT says ``Offline``. Fail-safe: set the
plug's ``PowerOnState 0`` so it stays off after a power cut.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from devices.actuators.base import ActuatorBase
from devices.errors import DeviceConfigError, DeviceError, DeviceProtocolError, DeviceUnavailable

__all__ = ["TASMOTA_TOPIC_PATTERN", "Publish", "TasmotaPlug"]

_LOGGER = logging.getLogger(__name__)

#: A Tasmota device topic: one MQTT level, no wildcards.
TASMOTA_TOPIC_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
_TOPIC_RE = re.compile(TASMOTA_TOPIC_PATTERN)

#: ``publish(topic, payload)``: sends one MQTT message; raises on failure.
Publish = Callable[[str, bytes], None]


class TasmotaPlug(ActuatorBase):
    """A Tasmota relay channel as an actuator.

    Args:
        topic: the device's Tasmota ``Topic`` (e.g. ``tasmota_4E2F1A``).
        publish: sends one MQTT message (provided by the edge's link).
        relay: relay number on multi-relay devices (1 on plugs).
    """

    def __init__(self, topic: str, publish: Publish, *, relay: int = 1) -> None:
        if not _TOPIC_RE.match(topic):
            raise DeviceConfigError(f"invalid Tasmota topic {topic!r}")
        if not 1 <= relay <= 32:
            raise DeviceConfigError(f"invalid Tasmota relay number {relay}")
        self.topic = topic
        self.relay = relay
        self._publish = publish
        self._power_key = "POWER" if relay == 1 else f"POWER{relay}"
        # Relay 1 answers as POWER on single-relay devices, POWER1 on multi-relay ones.
        self._power_names = ("POWER", "POWER1") if relay == 1 else (self._power_key,)
        self._lock = threading.Lock()
        self._reported: bool | None = None
        self._power_w: float | None = None
        self._online: bool | None = None

    def __repr__(self) -> str:
        return f"TasmotaPlug({self.topic!r}, relay={self.relay})"

    @property
    def command_topic(self) -> str:
        """Where ``ON``/``OFF`` are published."""
        return f"cmnd/{self.topic}/{self._power_key}"

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """Topics the link must subscribe to and pass to :meth:`handle_message`."""
        return (
            *(f"stat/{self.topic}/{name}" for name in self._power_names),
            f"stat/{self.topic}/RESULT",
            f"tele/{self.topic}/STATE",
            f"tele/{self.topic}/SENSOR",
            f"tele/{self.topic}/LWT",
        )

    @property
    def online(self) -> bool | None:
        """The plug's last will state: ``None`` until its ``LWT`` was seen."""
        with self._lock:
            return self._online

    def open(self) -> None:
        """Send ``OFF`` (the plug's state is known once it answers).

        Raises:
            DeviceUnavailable: the message could not be published.
        """
        self.off()

    def close(self) -> None:
        """Send ``OFF`` (best effort, logged, never raises)."""
        try:
            self.off()
        except DeviceError as err:
            _LOGGER.error("%r: could not switch off on close: %s", self, err)

    def on(self) -> None:
        """Publish ``ON``.

        Raises:
            DeviceUnavailable: the message could not be published.
        """
        self._send(b"ON")
        _LOGGER.info("%r on requested", self)

    def off(self) -> None:
        """Publish ``OFF``.

        Raises:
            DeviceUnavailable: the message could not be published.
        """
        self._send(b"OFF")
        _LOGGER.info("%r off requested", self)

    def request_state(self) -> None:
        """Ask the plug to report its state (empty ``POWER`` command)."""
        self._send(b"")

    def state(self) -> bool | None:
        """The last reported output state; ``None`` if unknown or the plug is offline."""
        with self._lock:
            return None if self._online is False else self._reported

    def power_w(self) -> float | None:
        """The last reported active power in watts; ``None`` if unknown or offline."""
        with self._lock:
            return None if self._online is False else self._power_w

    def handle_message(self, topic: str, payload: bytes) -> bool:
        """Apply one incoming MQTT message; tell whether it was addressed to this plug.

        Called by the link's thread. Messages on other topics are ignored (False).

        Raises:
            DeviceProtocolError: the message is ours but its payload is malformed.
        """
        parts = topic.split("/")
        if len(parts) != 3 or parts[1] != self.topic:
            return False
        prefix, _, name = parts
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError as err:
            raise DeviceProtocolError(f"{self!r}: {topic} payload is not UTF-8") from err
        if prefix == "stat" and name in self._power_names:
            self._set_reported(self._parse_power(topic, text))
        elif (prefix, name) in (("stat", "RESULT"), ("tele", "STATE")):
            body = self._json(topic, text)
            values = [body[key] for key in self._power_names if key in body]
            if values:  # RESULT also answers unrelated commands
                self._set_reported(self._parse_power(topic, values[0]))
        elif prefix == "tele" and name == "SENSOR":
            power = self._parse_energy(topic, self._json(topic, text))
            if power is not None:
                with self._lock:
                    self._power_w = power
        elif prefix == "tele" and name == "LWT":
            self._set_online(topic, text)
        else:
            return False
        return True

    def _send(self, payload: bytes) -> None:
        try:
            self._publish(self.command_topic, payload)
        except Exception as err:  # whatever the link raises: the plug was not told
            raise DeviceUnavailable(f"{self!r}: publish failed: {err}") from err

    def _set_reported(self, value: bool) -> None:
        with self._lock:
            changed = value != self._reported
            self._reported = value
        if changed:
            _LOGGER.info("%r reports %s", self, "ON" if value else "OFF")

    def _set_online(self, topic: str, text: str) -> None:
        if text not in ("Online", "Offline"):
            raise DeviceProtocolError(f"{self!r}: {topic} = {text!r}, not Online/Offline")
        online = text == "Online"
        with self._lock:
            self._online = online
        if online:
            _LOGGER.info("%r is online", self)
        else:
            _LOGGER.warning("%r is offline (last will)", self)

    def _parse_power(self, topic: str, value: Any) -> bool:
        if isinstance(value, str) and value.upper() in ("ON", "OFF"):
            return value.upper() == "ON"
        raise DeviceProtocolError(f"{self!r}: {topic}: power state {value!r} is not ON/OFF")

    def _parse_energy(self, topic: str, body: dict[str, Any]) -> float | None:
        energy = body.get("ENERGY")
        if energy is None:
            return None  # a SENSOR message from another sensor (temperature…)
        power = energy.get("Power") if isinstance(energy, dict) else None
        # Multi-channel meters report a list, one value per relay.
        if isinstance(power, list) and len(power) >= self.relay:
            power = power[self.relay - 1]
        if isinstance(power, bool) or not isinstance(power, int | float):
            raise DeviceProtocolError(f"{self!r}: {topic}: ENERGY.Power {power!r} is not a number")
        return float(power)

    def _json(self, topic: str, text: str) -> dict[str, Any]:
        try:
            body = json.loads(text)
        except json.JSONDecodeError as err:
            raise DeviceProtocolError(f"{self!r}: {topic} payload is not JSON") from err
        if not isinstance(body, dict):
            raise DeviceProtocolError(f"{self!r}: {topic} payload is not a JSON object")
        return body
