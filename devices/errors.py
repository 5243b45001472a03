"""Errors raised by the device drivers.

Every driver translates the errors of the library it sits on (pyserial, gpiozero,
httpx, JSON decoding, …) into this small tree at its boundary, chained with
``raise … from err``, so the edge handles one vocabulary whatever the hardware::

    DeviceError                 anything a driver reports
    ├── DeviceUnavailable       cannot reach the device: port missing, unplugged,
    │   │                       connection refused, device not open
    │   └── DeviceTimeout       the device did not answer in time
    ├── DeviceProtocolError     the device answered, but not as its protocol says:
    │                           HTTP error status, invalid JSON, unknown payload
    ├── DeviceAuthError         the device refused our credentials
    ├── DeviceConfigError       the configuration cannot work: unknown kind, invalid
    │                           option, optional library (evdev) not installed
    └── ActuatorLatched         a latched actuator (a laser) refused ``on()`` after a
                                fault, until it is explicitly re-armed

``DeviceTimeout`` is a kind of ``DeviceUnavailable`` because the edge reacts the same
way to both (machine offline, retry with backoff); catch it separately only when a
timeout deserves a different message.

Badge readers raise few of these: a reader that is unplugged, sends noise or bad
checksums logs it and keeps trying, because a reader must never crash the agent.
"""

from __future__ import annotations

__all__ = [
    "ActuatorLatched",
    "DeviceAuthError",
    "DeviceConfigError",
    "DeviceError",
    "DeviceProtocolError",
    "DeviceTimeout",
    "DeviceUnavailable",
]


class DeviceError(Exception):
    """Base class of every error a driver raises."""


class DeviceUnavailable(DeviceError):
    """The device cannot be reached (missing, unplugged, refused, not open)."""


class DeviceTimeout(DeviceUnavailable):
    """The device did not answer within the configured timeout."""


class DeviceProtocolError(DeviceError):
    """The device answered something its protocol does not allow."""


class DeviceAuthError(DeviceError):
    """The device refused our credentials (HTTP 401 and the like)."""


class DeviceConfigError(DeviceError):
    """The configuration cannot work (unknown kind, bad option, missing library)."""


class ActuatorLatched(DeviceError):
    """A latched actuator refused to switch on: a fault happened and no re-arm since."""
