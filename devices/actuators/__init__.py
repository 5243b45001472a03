"""Actuators: machine power switches that default to off (see :mod:`devices.actuators.base`).

The GPIO relay (gpiozero) and the Shelly plug (httpx) are imported on first use, so
an edge that uses neither does not pay for their libraries' memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devices.actuators.base import Actuator, ActuatorBase
from devices.actuators.latch import LatchedActuator
from devices.actuators.simulated import SimulatedActuator
from devices.actuators.tasmota import Publish, TasmotaPlug

if TYPE_CHECKING:
    from devices.actuators.gpio import GpioRelay
    from devices.actuators.shelly import ShellyEnergy, ShellyPlug, ShellySwitchStatus

_LAZY = {
    "GpioRelay": "devices.actuators.gpio",
    "ShellyEnergy": "devices.actuators.shelly",
    "ShellyPlug": "devices.actuators.shelly",
    "ShellySwitchStatus": "devices.actuators.shelly",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "Actuator",
    "ActuatorBase",
    "GpioRelay",
    "LatchedActuator",
    "Publish",
    "ShellyEnergy",
    "ShellyPlug",
    "ShellySwitchStatus",
    "SimulatedActuator",
    "TasmotaPlug",
]
