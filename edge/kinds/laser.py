"""The laser kind: cut on badge-out, end of time, lost link and any fault.

A laser's actuator is latched (it never switches on again by itself after a fault).
With a GRBL controller (``[machines.laser]``), :class:`LaserFollower` connects the
:class:`~devices.grbl.GrblLaser` driver, trips the latch from the driver's own
thread milliseconds after an alarm, a door opening or a lost link
(:class:`~devices.grbl.LaserInterlock`), reports GRBL faults, the controller's
state and beam-on meter as telemetry, and turns a staff pause or cancel into a
feed hold. Its run-time meter gives a session's ``run_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final

from devices.actuators import Actuator, LatchedActuator
from devices.errors import DeviceError
from devices.registry import DeviceContext
from edge.kinds.base import DriverSignal, Kind, Post, Submit
from edge.sessionconfig import SessionConfig
from protocol.kinds import MachineKind
from protocol.messages import MachineAction, Scalar

if TYPE_CHECKING:
    from devices.grbl import GrblEvent, GrblLaser, LaserInterlock
    from edge.settings import MachineSettings

__all__ = ["GRBL_FAULT", "LASER", "LaserFollower", "grbl_listener"]

logger = logging.getLogger(__name__)

GRBL_FAULT: Final = "grbl"


class LaserFollower:
    """Follows a laser's GRBL controller, if it has one (see the module docstring)."""

    fault_sources: frozenset[str] = frozenset({GRBL_FAULT})

    def __init__(
        self, m: MachineSettings, ctx: DeviceContext, actuator: Actuator | None, post: Post
    ) -> None:
        self.machine = m.id
        self.laser: GrblLaser | None = m.laser.build_laser(ctx) if m.laser else None
        if self.laser is not None and isinstance(actuator, LatchedActuator):
            from devices.grbl import LaserInterlock

            self.laser.add_listener(grbl_listener(m.id, LaserInterlock(actuator), post))

    def open(self) -> None:
        """Connect to the controller (it reconnects by itself)."""
        if self.laser is not None:
            self.laser.open()

    def close(self) -> None:
        """Disconnect; never raises."""
        if self.laser is not None:
            try:
                self.laser.close()
            except Exception:
                logger.exception("%s: GRBL driver did not close cleanly", self.machine)

    def async_parts(self) -> Sequence[AbstractAsyncContextManager[Any]]:
        """The GRBL driver runs its own thread."""
        return ()

    def faults(self) -> dict[str, str]:
        """A link down (after the first handshake), an alarm or an open door."""
        if self.laser is None:
            return {}
        snap = self.laser.snapshot()
        # Not connected yet, never tried and failed: the first handshake is under
        # way (about a second after start); a failed attempt sets ``error``.
        connecting = snap.error is None and snap.version is None
        if not snap.connected and not connecting:
            return {GRBL_FAULT: f"GRBL link down: {snap.error or 'not connected'}"}
        if snap.alarm:
            return {GRBL_FAULT: f"GRBL alarm {snap.alarm_code or ''}".strip()}
        if snap.door_open:
            return {GRBL_FAULT: "laser door open"}
        return {}

    def telemetry(self) -> dict[str, Scalar]:
        """The controller's state, whether the beam fires, and the beam-on meter."""
        if self.laser is None:
            return {}
        snap = self.laser.snapshot()
        return {
            "state": snap.state.value if snap.state is not None else "unknown",
            "firing": snap.firing,
            "run_time_s": round(snap.run_time_s, 1),
        }

    def tele_interval_s(self, default: float, in_use: bool) -> float:
        """The edge's telemetry period."""
        return default

    def command(self, action: MachineAction, submit: Submit) -> bool:
        """Pause and cancel are a feed hold (the job stops, the beam goes off)."""
        if self.laser is None or action not in (MachineAction.PAUSE, MachineAction.CANCEL):
            return False
        try:
            self.laser.feed_hold()
        except DeviceError as err:
            logger.warning("%s: feed hold failed: %s", self.machine, err)
        return True

    def run_time_s(self) -> float | None:
        """The controller's cumulative beam-on time."""
        return self.laser.snapshot().run_time_s if self.laser is not None else None


def grbl_listener(
    machine: str, interlock: LaserInterlock, post: Post
) -> Callable[[GrblEvent], None]:
    """A GRBL listener: trip the latch at once (driver thread), then tell the agent.

    GRBL entering ``Run`` is a job running (``job_running``: with no session open, the
    laser runs without one), leaving it a job done."""
    from devices.grbl import (
        AlarmRaised,
        Disconnected,
        DoorOpened,
        GrblState,
        LaserInterlock,
        StateChanged,
    )

    def listen(event: GrblEvent) -> None:
        interlock(event)
        if isinstance(event, AlarmRaised | DoorOpened | Disconnected):
            reason = LaserInterlock.reason(event) or "GRBL fault"
            post(DriverSignal(machine, "fault", GRBL_FAULT, reason))
        if isinstance(event, StateChanged) and (event.previous is GrblState.RUN) != (
            event.current is GrblState.RUN
        ):
            post(
                DriverSignal(
                    machine,
                    "job_running" if event.current is GrblState.RUN else "job_done",
                    GRBL_FAULT,
                )
            )
        elif isinstance(event, Disconnected):
            post(DriverSignal(machine, "job_done", GRBL_FAULT))

    return listen


LASER: Final = Kind(
    name=MachineKind.LASER,
    preset=SessionConfig(cut_on_fault=True, cut_on_link_loss=True),
    needs=("actuator",),
    accepts=("laser",),
    follower=LaserFollower,
    latched=True,
    summary="cut on badge-out, end of time, lost link and any fault; never restarts alone",
)
