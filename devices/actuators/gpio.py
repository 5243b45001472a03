"""A relay on a Raspberry Pi GPIO pin, through gpiozero.

Wiring (fail-safe, research §3.4): put the machine on the relay's **normally-open**
(NO) contact. The relay is energised only while the agent holds the pin at its
active level, so a de-energised relay means the machine is off, and a crashed
agent, a rebooting or unplugged Pi, or a cut ribbon cable all leave the machine
off. Never use the normally-closed (NC) contact for a machine: it would run
whenever the Pi is down.

Polarity: ``active_high=True`` suits relay boards driven through a transistor
(HIGH = energised). Many cheap opto-isolated boards are *active low*
(``active_high=False``): LOW energises them. On those, a pin the Pi pulls down at
boot (GPIO 9-27 by default) energises the relay until the agent starts; wire
active-low boards to GPIO 0-8 (pulled up at boot) or add an external pull-up.

The output is created with ``initial_value=False`` (inactive), so opening never
switches the machine on, even for an instant.
"""

from __future__ import annotations

import logging
from typing import Any

import gpiozero

from devices.actuators.base import ActuatorBase
from devices.errors import DeviceConfigError, DeviceUnavailable

__all__ = ["GpioRelay"]

_LOGGER = logging.getLogger(__name__)


class GpioRelay(ActuatorBase):
    """A GPIO-driven relay; off on open, close and error.

    Args:
        pin: BCM number (``17``) or gpiozero pin name (``"GPIO17"``, ``"BOARD11"``).
        active_high: whether HIGH energises the relay (see the module docstring).
        pin_factory: a gpiozero pin factory; ``None`` uses gpiozero's default
            (lgpio on a Pi). Tests pass ``gpiozero.pins.mock.MockFactory()``.
    """

    def __init__(
        self, pin: int | str, active_high: bool = True, pin_factory: object | None = None
    ) -> None:
        self.pin = pin
        self.active_high = active_high
        self.pin_factory = pin_factory
        self._device: Any = None  # gpiozero.OutputDevice while open

    def __repr__(self) -> str:
        return f"GpioRelay({self.pin!r}, active_high={self.active_high})"

    def open(self) -> None:
        """Claim the pin as an output, inactive (relay de-energised, machine off).

        Raises:
            DeviceConfigError: no such pin, or no GPIO library on this machine.
            DeviceUnavailable: the pin is already used by another device.
        """
        if self._device is not None:
            return
        try:
            self._device = gpiozero.OutputDevice(
                self.pin,
                active_high=self.active_high,
                initial_value=False,
                pin_factory=self.pin_factory,
            )
        except (gpiozero.PinInvalidPin, gpiozero.BadPinFactory) as err:
            raise DeviceConfigError(f"{self!r}: {err}") from err
        except gpiozero.GPIOZeroError as err:
            raise DeviceUnavailable(f"{self!r}: {err}") from err
        _LOGGER.info("%r opened, relay off", self)

    def close(self) -> None:
        """Drive the relay off, then release the pin; never raises."""
        device, self._device = self._device, None
        if device is None:
            return
        try:
            device.off()
        except gpiozero.GPIOZeroError as err:
            _LOGGER.error("%r: could not switch off on close: %s", self, err)
        finally:
            device.close()
        _LOGGER.info("%r closed, relay off", self)

    def on(self) -> None:
        """Energise the relay (machine on).

        Raises:
            DeviceUnavailable: the relay is not open.
        """
        try:
            self._require().on()
        except gpiozero.GPIOZeroError as err:
            raise DeviceUnavailable(f"{self!r}: {err}") from err
        _LOGGER.info("%r on", self)

    def off(self) -> None:
        """De-energise the relay (machine off).

        Raises:
            DeviceUnavailable: the relay is not open.
        """
        try:
            self._require().off()
        except gpiozero.GPIOZeroError as err:
            raise DeviceUnavailable(f"{self!r}: {err}") from err
        _LOGGER.info("%r off", self)

    def state(self) -> bool:
        """Whether the relay is energised (read back from the pin).

        Raises:
            DeviceUnavailable: the relay is not open.
        """
        try:
            return bool(self._require().value)
        except gpiozero.GPIOZeroError as err:
            raise DeviceUnavailable(f"{self!r}: {err}") from err

    def power_w(self) -> float | None:
        """A bare relay has no power meter."""
        return None

    def _require(self) -> Any:
        if self._device is None:
            raise DeviceUnavailable(f"{self!r} is not open")
        return self._device
