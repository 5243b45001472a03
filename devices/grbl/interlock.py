"""Cut a laser's power the moment its GRBL controller reports trouble.

DESIGN §4: a laser is switched off on any fault and never restarts by itself.
:class:`LaserInterlock` is a :data:`~devices.grbl.driver.GrblListener` that trips a
:class:`~devices.actuators.LatchedActuator` on

* :class:`~devices.grbl.driver.AlarmRaised` (any ``ALARM:N`` or the ``Alarm`` state),
* :class:`~devices.grbl.driver.DoorOpened` (the lid of the laser was opened),
* :class:`~devices.grbl.driver.Disconnected` (port vanished, GRBL silent, driver fault).

The latch then refuses ``on()`` until the edge re-arms it for a new grant (a fresh
badge tap). The other reasons to cut (badge-out, end of time, lost hub link) are
the edge's: it calls :meth:`~devices.actuators.LatchedActuator.trip` itself.

Tripping runs on the driver's reader thread, milliseconds after the line arrives,
rather than waiting for the edge's loop: ``trip`` takes the latch's lock, switches
off best effort and never raises, so the actuator must accept an ``off()`` from
another thread (GPIO relays, HTTP plugs and the simulation do).
"""

from __future__ import annotations

import logging

from devices.actuators import LatchedActuator
from devices.grbl.driver import AlarmRaised, Disconnected, DoorOpened, GrblEvent

__all__ = ["LaserInterlock"]

_LOGGER = logging.getLogger(__name__)


class LaserInterlock:
    """Trips ``actuator`` on GRBL alarm, door open and link loss.

    Args:
        actuator: the laser's latched power switch.
    """

    def __init__(self, actuator: LatchedActuator) -> None:
        self.actuator = actuator

    def __repr__(self) -> str:
        return f"LaserInterlock({self.actuator!r})"

    def __call__(self, event: GrblEvent) -> None:
        """Trip the latch if ``event`` is a fault; ignore the others."""
        reason = self.reason(event)
        if reason is not None:
            self.actuator.trip(reason)

    @staticmethod
    def reason(event: GrblEvent) -> str | None:
        """Why ``event`` must cut the laser, or ``None`` if it must not."""
        if isinstance(event, AlarmRaised):
            code = "" if event.code is None else f" {event.code}"
            return f"GRBL alarm{code}: {event.meaning}"
        if isinstance(event, DoorOpened):
            return "laser door opened"
        if isinstance(event, Disconnected):
            return f"GRBL link lost: {event.error}"
        return None
