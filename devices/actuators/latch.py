"""A fault latch for machines that must never restart by themselves (lasers).

DESIGN §4: a laser is switched off on any fault and never restarts by itself.
:class:`LatchedActuator` wraps any actuator and *trips* when

* the edge calls :meth:`~LatchedActuator.trip` (lost link, lease expired, GRBL
  alarm, exhaust fault, …), or
* the wrapped actuator raises a :class:`~devices.errors.DeviceError` from any call
  (a laser whose switch cannot be seen or commanded is a fault too).

Tripping switches the actuator off (best effort) and latches it: ``on()`` then raises
:class:`~devices.errors.ActuatorLatched` until :meth:`~LatchedActuator.rearm` is
called, which the edge does only for a new grant (a fresh badge tap). Re-arming
never switches anything on.
"""

from __future__ import annotations

import logging
import threading

from devices.actuators.base import Actuator, ActuatorBase
from devices.errors import ActuatorLatched, DeviceError

__all__ = ["LatchedActuator"]

_LOGGER = logging.getLogger(__name__)


class LatchedActuator(ActuatorBase):
    """An actuator that stays off after a fault until explicitly re-armed.

    Args:
        inner: the actuator that switches the machine.
    """

    def __init__(self, inner: Actuator) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self._reason: str | None = None

    def __repr__(self) -> str:
        return f"LatchedActuator({self.inner!r})"

    @property
    def latched(self) -> bool:
        """Whether a fault latched the actuator off."""
        return self._reason is not None

    @property
    def latch_reason(self) -> str | None:
        """Why it latched (for the edge's fault event), ``None`` when armed."""
        return self._reason

    def open(self) -> None:
        """Open the wrapped actuator (which switches off)."""
        self.inner.open()

    def close(self) -> None:
        """Close the wrapped actuator (which switches off)."""
        self.inner.close()

    def trip(self, reason: str) -> None:
        """Latch off because of ``reason``; switching off is attempted, never raises."""
        with self._lock:
            first = self._reason is None
            if first:
                self._reason = reason
        if first:
            _LOGGER.warning("%r latched off: %s", self, reason)
        try:
            self.inner.off()
        except DeviceError as err:
            _LOGGER.error("%r: off after fault failed: %s", self, err)

    def rearm(self) -> None:
        """Clear the latch for a new grant. Does not switch on."""
        with self._lock:
            reason, self._reason = self._reason, None
        if reason is not None:
            _LOGGER.info("%r re-armed (was latched: %s)", self, reason)

    def on(self) -> None:
        """Switch on, unless latched.

        Raises:
            ActuatorLatched: a fault happened since the last :meth:`rearm`.
            DeviceError: the wrapped actuator failed (the latch is then tripped).
        """
        with self._lock:
            reason = self._reason
        if reason is not None:
            raise ActuatorLatched(f"{self!r} is latched off after a fault: {reason}")
        try:
            self.inner.on()
        except DeviceError as err:
            self.trip(f"on failed: {err}")
            raise

    def off(self) -> None:
        """Switch off; a failure trips the latch and is raised."""
        try:
            self.inner.off()
        except DeviceError as err:
            self.trip(f"off failed: {err}")
            raise

    def state(self) -> bool | None:
        """The wrapped actuator's state; a failure trips the latch and is raised."""
        try:
            return self.inner.state()
        except DeviceError as err:
            self.trip(f"state unreadable: {err}")
            raise

    def power_w(self) -> float | None:
        """The wrapped actuator's power; a failure trips the latch and is raised."""
        try:
            return self.inner.power_w()
        except DeviceError as err:
            self.trip(f"power unreadable: {err}")
            raise
