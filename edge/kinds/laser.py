"""The laser kind: cut on badge-out, end of time, lost link and any fault.

A laser's actuator is latched (it never switches on again by itself after a fault).
With a GRBL controller (``[machines.laser]``), :class:`LaserFollower` connects the
:class:`~devices.grbl.GrblLaser` driver, trips the latch from the driver's own
thread milliseconds after an alarm, a door opening or a lost link
(:class:`~devices.grbl.LaserInterlock`), reports GRBL faults, the controller's
state and beam-on meter as telemetry, and turns a staff pause or cancel into a
feed hold. Its run-time meter gives a session's ``run_s``.

Re-arming: after a hard limit (``ALARM:1``) or an abort (``ALARM:3``, a reset while
the head moved) the laser must be re-armed by staff before any new session: the
follower reports the ``rearm`` fault source (the machine is faulted, badges are
refused, the hub shows it) until the staff command ``rearm`` ran GRBL's unlock
``$X``, then the homing cycle ``$H`` when the controller has homing enabled
(``$22=1``). Power-cycling the controller clears GRBL's alarm, not this, and
neither does restarting the edge (a mark file ``rearm-{machine}`` in the journal's
directory keeps it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from devices.actuators import Actuator, LatchedActuator
from devices.errors import DeviceError
from devices.registry import DeviceContext
from edge.kinds.base import CommandVerdict, DriverSignal, Kind, Post, Run
from edge.outcomes import Refusal
from edge.sessionconfig import SessionConfig
from protocol.kinds import MachineKind
from protocol.messages import MachineAction, Scalar

if TYPE_CHECKING:
    from devices.grbl import GrblEvent, GrblLaser, LaserInterlock
    from edge.settings import MachineSettings

__all__ = ["GRBL_FAULT", "LASER", "REARM_ALARMS", "REARM_FAULT", "LaserFollower", "grbl_listener"]

logger = logging.getLogger(__name__)

GRBL_FAULT: Final = "grbl"
#: The laser waits for a staff re-arm (see the module docstring).
REARM_FAULT: Final = "rearm"
#: GRBL alarms after which only a staff re-arm lets a new session start:
#: 1 hard limit, 3 abort during a cycle (position lost).
REARM_ALARMS: Final = frozenset({1, 3})

_NO_CUT: Final = "Aucune découpe en cours : rien à arrêter."
_NO_RESUME: Final = (
    "Un laser ne reprend pas à distance : relance le travail depuis son poste, "
    "une fois la machine vérifiée."
)
_UNREACHABLE: Final = "Le contrôleur GRBL ne répond pas : rien n'a été fait."


class LaserFollower:
    """Follows a laser's GRBL controller, if it has one (see the module docstring)."""

    fault_sources: frozenset[str] = frozenset({GRBL_FAULT, REARM_FAULT})

    def __init__(
        self, m: MachineSettings, ctx: DeviceContext, actuator: Actuator | None, post: Post
    ) -> None:
        self.machine = m.id
        self.laser: GrblLaser | None = m.laser.build_laser(ctx) if m.laser else None
        #: Kept across restarts (a power cut takes the edge and the laser down together).
        self._mark: Path | None = (
            ctx.state_dir / f"rearm-{m.id}" if ctx.state_dir is not None else None
        )
        #: Why the laser waits for a re-arm (set on the driver's thread), ``None``: armed.
        self.must_rearm: str | None = self._read_mark()
        if self.laser is not None:
            self.laser.add_listener(self._watch_alarms)
            if isinstance(actuator, LatchedActuator):
                from devices.grbl import LaserInterlock

                self.laser.add_listener(grbl_listener(m.id, LaserInterlock(actuator), post))

    def _watch_alarms(self, event: GrblEvent) -> None:
        from devices.grbl import AlarmRaised

        if isinstance(event, AlarmRaised) and event.code in REARM_ALARMS:
            if self.must_rearm is None:
                logger.warning(
                    "%s: GRBL alarm %s: waits for a staff re-arm", self.machine, event.code
                )
            self.must_rearm = f"alarm {event.code}: {event.meaning}"
            self._write_mark(self.must_rearm)

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
        faults = (
            {} if self.must_rearm is None else {REARM_FAULT: f"re-arm needed ({self.must_rearm})"}
        )
        return faults | self._grbl_faults()

    def _grbl_faults(self) -> dict[str, str]:
        assert self.laser is not None
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

    def command(self, action: MachineAction, run: Run) -> CommandVerdict:
        """Pause and cancel are a feed hold (the job stops, the beam goes off); resume is
        refused (a laser restarts at its own desk); re-arm unlocks, then homes."""
        from devices.grbl import GrblState

        if self.laser is None:
            return Refusal("no_driver")
        snap = self.laser.snapshot()
        if action is MachineAction.RESUME:
            return Refusal("unsupported", _NO_RESUME)
        if not snap.connected:
            return Refusal("driver_unreachable", _UNREACHABLE)
        if action is MachineAction.REARM:
            return run.blocking(self._rearm, f"{self.machine}: re-arm")
        if action not in (MachineAction.PAUSE, MachineAction.CANCEL):
            return Refusal("unsupported")
        if snap.state not in (GrblState.RUN, GrblState.JOG, GrblState.HOLD):
            return Refusal("no_job", _NO_CUT)
        try:
            self.laser.feed_hold()
        except DeviceError as err:
            logger.warning("%s: feed hold failed: %s", self.machine, err)
            return Refusal("driver_unreachable", _UNREACHABLE)
        return None

    def _rearm(self) -> None:
        """Unlock ``$X``, home ``$H`` when ``$22=1``; then a session may start again
        (runs on a :class:`Run` thread: the homing cycle takes seconds)."""
        from devices.errors import DeviceProtocolError

        laser = self.laser
        assert laser is not None
        try:
            laser.unlock()
            if laser.snapshot().homing:
                laser.home()
        except DeviceProtocolError as err:
            raise Refusal(
                "driver_refused", f"Le contrôleur GRBL refuse le réarmement : {err}"[:300]
            ) from err
        except DeviceError as err:
            raise Refusal("driver_unreachable", _UNREACHABLE) from err
        logger.warning("%s: re-armed (was: %s)", self.machine, self.must_rearm or "armed")
        self.must_rearm = None
        self._write_mark(None)

    def _read_mark(self) -> str | None:
        if self._mark is None:
            return None
        try:
            reason = self._mark.read_text(encoding="utf-8").strip()[:200]
        except FileNotFoundError:
            return None
        except OSError as err:  # unreadable: safer to wait for a re-arm
            logger.error("%s: re-arm mark unreadable (%s): waits for a re-arm", self.machine, err)
            return "re-arm mark unreadable"
        logger.warning("%s: still waits for a staff re-arm (%s)", self.machine, reason)
        return reason or "waits for a re-arm"

    def _write_mark(self, reason: str | None) -> None:
        """Best effort: the fault holds in memory whatever the disk says."""
        if self._mark is None:
            return
        try:
            if reason is None:
                self._mark.unlink(missing_ok=True)
            else:
                self._mark.parent.mkdir(parents=True, exist_ok=True)
                self._mark.write_text(reason + "\n", encoding="utf-8")
        except OSError as err:
            logger.error("%s: re-arm mark not saved: %s", self.machine, err)

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
