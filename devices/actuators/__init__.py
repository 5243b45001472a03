"""Actuators: machine power switches that default to off (see :mod:`devices.actuators.base`)."""

from devices.actuators.base import Actuator, ActuatorBase
from devices.actuators.gpio import GpioRelay
from devices.actuators.latch import LatchedActuator
from devices.actuators.shelly import ShellyEnergy, ShellyPlug, ShellySwitchStatus
from devices.actuators.simulated import SimulatedActuator
from devices.actuators.tasmota import Publish, TasmotaPlug

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
