"""The 3D printer kind: never cut while printing nor hot; a finished print ends the session.

A printer (``[machines.printer]``: OctoPrint, or its simulation) is followed by an
:class:`~devices.octoprint.OctoPrintFollower` on the drivers' asyncio loop.
:class:`PrinterFollower` builds it, reports OctoPrint's errors as faults (which
hold: a printer is not cut on a fault), publishes temperatures, progress and time
left every second while the printer is in use, and forwards pause, resume and
cancel. Its :class:`PrinterWatch` turns OctoPrint's pushes into the agent's signals.

A printer's signals (:class:`PrinterWatch`, on the driver loop's thread) reach the
agent as soon as OctoPrint pushes them:

* ``PrintStarted`` → ``job_started`` (the job belongs to the session open now);
  OctoPrint's ``user`` on its job events goes into the job's report (the
  staff-only job record), never into telemetry or logs;
  a snapshot that shows a job nobody announced (the agent started mid-print, the
  start happened while OctoPrint was unreachable) → ``job_running``;
* ``PrintDone``/``PrintFailed``/``PrintCancelled``/``JobLost`` → ``job_ended`` with a
  :class:`~edge.session.JobReport` (OctoPrint's ``PrintFailed(reason=cancelled)``
  after a ``PrintCancelled`` is the same job: dropped here); the power is held
  until the snapshot shows no job any more (``job_done``: the printer may still be
  *Finishing* its end script when the event arrives);
* only new data releases the power: never the last known values republished when
  OctoPrint becomes unreachable, nor a snapshot within ``START_GRACE_S`` of a
  ``PrintStarted`` whose end was not announced (it may predate the start), nor a
  REST poll while the push link is down for a job whose end was not announced (the
  follower's ``JobLost`` comes first once the link is back);
* OctoPrint unreachable for ``UNREACHABLE_AFTER_S`` is the fault
  ``printer_unreachable`` (badges refused; the power holds for the machine's
  ``unreachable_hold_max_min`` at most, then the session machine cuts it);
* the nozzle crossing ``cooldown_below_c`` → ``hot`` / ``cooled`` (last known
  while OctoPrint is unreachable: a hot printer stays hot).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from devices.actuators import Actuator
from devices.registry import DeviceContext
from edge.effects import JobReport
from edge.kinds.base import CommandVerdict, DriverSignal, Kind, Post, Run, SignalKind
from edge.outcomes import Refusal
from edge.sessionconfig import SessionConfig
from protocol.kinds import MachineKind
from protocol.messages import JobResult, MachineAction, Scalar

if TYPE_CHECKING:
    from devices.octoprint import JobEvent, OctoPrintFollower, PrinterSnapshot
    from edge.settings import MachineSettings

__all__ = [
    "PRINTER",
    "PRINTER_FAULT",
    "PRINTER_TELE_S",
    "PRINTER_UNREACHABLE",
    "START_GRACE_S",
    "UNREACHABLE_AFTER_S",
    "PrinterFollower",
    "PrinterWatch",
    "printer_telemetry",
]

logger = logging.getLogger(__name__)

#: Telemetry period of a printer while OctoPrint is followed and the printer in use (s).
PRINTER_TELE_S: Final = 1.0
PRINTER_FAULT: Final = "printer"
#: Fault source of a printer whose OctoPrint does not answer (killed, unplugged).
PRINTER_UNREACHABLE: Final = "printer_unreachable"
#: OctoPrint unreachable this long (s) is a fault: a reconnect is not, the floor
#: and the hub know well within 15 s.
UNREACHABLE_AFTER_S: Final = 5.0

#: A snapshot showing no job this soon after a ``PrintStarted`` (and before the job's
#: end event) does not release the power: it may have been built before the start
#: (a printer is never cut on a guess).
START_GRACE_S: Final = 2.0


class PrinterWatch:
    """Turns one OctoPrint follower's events and snapshots into agent signals.

    Runs on the driver loop's thread (it is the follower's listener, see
    :meth:`attach`) and only *posts* :class:`DriverSignal` values: the agent thread
    stays the one owner of the machine. Posts happen when something changes, so a
    printer costs the agent's queue a few items per job, not one per push message.

    Args:
        machine: the machine id.
        post: the agent's queue.
        hot_from_c: the nozzle at or above this is ``hot`` (``cooldown_below_c``).
        clock: monotonic time (the start grace).
    """

    def __init__(
        self,
        machine: str,
        post: Callable[[DriverSignal], None],
        *,
        hot_from_c: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.machine = machine
        self.hot_from_c = hot_from_c
        self._post = post
        self._clock = clock
        self._snapshot: PrinterSnapshot | None = None
        #: The last snapshot that showed the running job (its progress and filament
        #: estimate a job that fails or is lost, after which the snapshot is empty).
        self._job_snapshot: PrinterSnapshot | None = None
        #: What the agent was told last: a job holds the printer.
        self._job = False
        self._hot = False
        #: File and ``monotonic_s`` of the ``PrintStarted`` of the running job.
        self._started: tuple[str | None, float] | None = None
        self._last_start = -math.inf
        #: OctoPrint said the last job ended (the next snapshot without one is trusted).
        self._ended = True
        #: OctoPrint's user who started the running job (for the job record only).
        self._user: str | None = None

    def attach(self, follower: OctoPrintFollower) -> None:
        """Listen to ``follower`` (before it is entered)."""
        follower.add_listener(on_event=self.on_event, on_snapshot=self.on_snapshot)

    def on_event(self, event: JobEvent) -> None:
        """A job event from OctoPrint (or the follower's own ``JobLost``)."""
        from devices.octoprint import JobEventKind

        kind = event.kind
        if kind is JobEventKind.PRINT_STARTED:
            if self._started is not None:
                logger.warning("%s: a job started while another was running", self.machine)
            self._started = (event.file_name, event.monotonic_s)
            self._user = event.user
            self._last_start = self._clock()
            self._ended = False
            self._job = True
            self._signal("job_started", detail=event.file_name or "")
        elif kind in (JobEventKind.PRINT_PAUSED, JobEventKind.PRINT_RESUMED):
            self._hold()
        elif event.ends_job:
            if kind is JobEventKind.PRINT_FAILED and event.reason == "cancelled":
                return  # OctoPrint's echo of the PrintCancelled just before: same job
            self._signal("job_ended", job=self._report(event))
            self._started = None
            self._user = None
            self._ended = True
            self._job_snapshot = None

    def on_snapshot(self, snapshot: PrinterSnapshot) -> None:
        """A new snapshot (push ``current``, safety poll, link change).

        Only new data releases the power: a link change republishes the last
        known values (``last_update`` unchanged), which prove nothing.
        """
        previous, self._snapshot = self._snapshot, snapshot
        fresh = previous is None or snapshot.last_update != previous.last_update
        # A job whose end OctoPrint did not announce is released only by the live
        # push link: a REST poll while the push link is down may come from an
        # OctoPrint that restarted without the job, whose loss the follower reports
        # (``JobLost``) once the link is back, just before that snapshot.
        settled = self._ended or (
            snapshot.connected and self._clock() - self._last_start >= START_GRACE_S
        )
        if snapshot.job_active:
            self._job_snapshot = snapshot
            self._hold()
        elif self._job and fresh and settled:
            self._job = False
            self._signal("job_done")
        tool = snapshot.tool0
        if tool is not None and tool.actual is not None:
            hot = tool.actual >= self.hot_from_c
            if hot != self._hot:
                self._hot = hot
                self._signal("hot" if hot else "cooled", detail=f"{tool.actual:.0f} °C")

    def _hold(self) -> None:
        if not self._job:
            self._job = True
            self._signal("job_running")

    def _report(self, event: JobEvent) -> JobReport:
        """What the agent journals for an ended job (see :class:`JobReport`)."""
        from devices.octoprint import JobEventKind

        result = {
            JobEventKind.PRINT_DONE: JobResult.DONE,
            JobEventKind.PRINT_FAILED: JobResult.FAILED,
            JobEventKind.PRINT_CANCELLED: JobResult.CANCELLED,
        }.get(event.kind, JobResult.LOST)
        snap = self._snapshot
        if snap is None or not snap.job_active or snap.progress_pct is None:
            snap = self._job_snapshot or snap  # the job's last figures
        started = self._started
        name = event.file_name or (snap.file_name if snap else None) or ""
        same_file = snap is not None and snap.file_name in (None, name)
        if event.print_time_s is not None:
            duration = event.print_time_s
        elif started is not None:
            duration = event.monotonic_s - started[1]
        elif same_file and snap is not None and snap.print_time_s is not None:
            duration = snap.print_time_s
        else:
            duration = 0.0
        filament = None
        estimated = False
        if same_file and snap is not None and snap.filament_mm is not None:
            if result is JobResult.DONE:
                filament = snap.filament_mm
            elif snap.progress_pct is not None:
                filament = round(snap.filament_mm * min(100.0, snap.progress_pct) / 100, 1)
                estimated = True
        return JobReport(
            name=name,
            result=result,
            duration_s=duration,
            filament_mm=filament,
            filament_estimated=estimated,
            user=event.user or self._user,
        )

    def _signal(self, kind: SignalKind, *, detail: str = "", job: JobReport | None = None) -> None:
        self._post(DriverSignal(self.machine, kind, "printer", detail, job))


class PrinterFollower:
    """Follows a printer through OctoPrint, if it has one (see the module docstring)."""

    fault_sources: frozenset[str] = frozenset({PRINTER_FAULT, PRINTER_UNREACHABLE})

    def __init__(
        self,
        m: MachineSettings,
        ctx: DeviceContext,
        actuator: Actuator | None,
        post: Post,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.machine = m.id
        self._clock = clock
        #: Since when OctoPrint has been unreachable (``None``: it answers).
        self._down_since: float | None = None
        self.printer: OctoPrintFollower | None = None
        if m.printer is not None:
            from devices.registry import build_printer

            self.printer = build_printer(m.printer.kind, m.printer.options, ctx)
            PrinterWatch(m.id, post, hot_from_c=m.cooldown_below_c).attach(self.printer)

    def open(self) -> None:
        """OctoPrint is followed on the drivers' loop (:meth:`async_parts`)."""

    def close(self) -> None:
        """Left with the drivers' loop."""

    def async_parts(self) -> Sequence[AbstractAsyncContextManager[Any]]:
        """The OctoPrint follower."""
        return (self.printer,) if self.printer is not None else ()

    def faults(self) -> dict[str, str]:
        """OctoPrint unreachable for ``UNREACHABLE_AFTER_S``, its error, or a printer
        state ``Error…``."""
        if self.printer is None:
            return {}
        if not self.printer.link_up:
            now = self._clock()
            if self._down_since is None:
                self._down_since = now
            if now - self._down_since >= UNREACHABLE_AFTER_S:
                error = self.printer.last_error
                why = f": {type(error).__name__}" if error is not None else ""
                return {PRINTER_UNREACHABLE: f"OctoPrint unreachable{why}"[:200]}
            return {}
        self._down_since = None
        psnap = self.printer.snapshot
        if psnap.error or psnap.state.startswith("Error"):
            return {PRINTER_FAULT: (psnap.error or psnap.state)[:200]}
        return {}

    def telemetry(self) -> dict[str, Scalar]:
        """State, temperatures, progress, time left, file."""
        return printer_telemetry(self.printer.snapshot) if self.printer is not None else {}

    def tele_interval_s(self, default: float, in_use: bool) -> float:
        """1 s while OctoPrint is followed and the printer in use (a session, a job, or a
        nozzle still hot), else ``default``: an idle, cold printer has nothing to show
        every second."""
        if self.printer is None or not self.printer.link_up or not in_use:
            return default
        return min(default, PRINTER_TELE_S)

    def command(self, action: MachineAction, run: Run) -> CommandVerdict:
        """Pause, resume and cancel the print; OctoPrint's refusal is the answer.

        Nothing is checked here first: the last snapshot may be a second old, and
        OctoPrint knows. Its refusal (HTTP 409) is told apart by the snapshot after it
        (no job: ``no_job``; a job that is not paused, for resume: ``not_paused``)."""
        if self.printer is None:
            return Refusal("no_driver")
        if action not in _PRINT_COMMANDS:
            return Refusal("unsupported", _UNSUPPORTED.get(action, ""))
        return run.coroutine(self._command(action), f"{self.machine}: {action.value}")

    async def _command(self, action: MachineAction) -> None:
        from devices.errors import DeviceError, DeviceUnavailable
        from devices.octoprint import CommandRefused

        printer = self.printer
        assert printer is not None
        call = {
            MachineAction.PAUSE: printer.pause,
            MachineAction.RESUME: printer.resume,
            MachineAction.CANCEL: printer.cancel,
        }[action]
        try:
            await call()
        except CommandRefused as err:
            snap = printer.snapshot
            detail = (err.detail or str(err))[:200]
            logger.info("%s: OctoPrint refused %s: %s", self.machine, action.value, detail)
            if not snap.job_active:
                raise Refusal("no_job", _NO_JOB[action]) from err
            if action is MachineAction.RESUME and not snap.flags.paused:
                raise Refusal("not_paused") from err
            raise Refusal("driver_refused", f"OctoPrint refuse la commande : {detail}") from err
        except DeviceUnavailable as err:
            raise Refusal("driver_unreachable", _UNREACHABLE) from err
        except DeviceError as err:
            raise Refusal("driver_error", f"OctoPrint a répondu une erreur : {err}"[:300]) from err

    def run_time_s(self) -> float | None:
        """Print time is journaled per job (``job_ended``), not per session."""
        return None


_PRINT_COMMANDS: Final = frozenset(
    {MachineAction.PAUSE, MachineAction.RESUME, MachineAction.CANCEL}
)
_UNSUPPORTED: Final = {
    MachineAction.REARM: "Une imprimante ne se réarme pas : c'est une commande de laser.",
}
_NO_JOB: Final = {
    MachineAction.PAUSE: "Aucune impression en cours : rien à mettre en pause.",
    MachineAction.RESUME: "Aucune impression en cours : rien à reprendre.",
    MachineAction.CANCEL: "Aucune impression en cours : rien à annuler.",
}
_UNREACHABLE: Final = "OctoPrint ne répond pas : rien n'a été fait sur l'imprimante."


def printer_telemetry(snap: PrinterSnapshot) -> dict[str, Scalar]:
    """A printer's telemetry values: state, temperatures, progress, time left.

    Never the job's file name: file names name children (``porte-cles-lea.gcode``) and
    ``tele/+`` is read by observers and shown on the live floor; the name stays on the
    edge and in the staff-only job record (``job_ended``)."""
    values: dict[str, Scalar] = {"state": snap.state, "connected": snap.connected}
    for prefix, heater in (("nozzle", snap.tool0), ("bed", snap.bed)):
        if heater is not None:
            if heater.actual is not None:
                values[f"{prefix}_c"] = round(heater.actual, 1)
            if heater.target is not None:
                values[f"{prefix}_target_c"] = round(heater.target, 1)
    if snap.job_active:
        if snap.progress_pct is not None:
            values["progress"] = round(snap.progress_pct, 1)
        if snap.print_time_left_s is not None:
            values["time_left_s"] = round(snap.print_time_left_s)
    return values


def _cooldown(config: SessionConfig, m: MachineSettings) -> SessionConfig:
    return replace(
        config,
        cooldown_s=m.cooldown_max_min * 60,
        fault_hold_max_s=m.unreachable_hold_max_min * 60,
    )


PRINTER: Final = Kind(
    name=MachineKind.PRINTER,
    preset=SessionConfig(
        hold_while_job=True, end_on_job_done=True, cut_on_fault=False, cooldown_s=600.0
    ),
    needs=("actuator",),
    accepts=("printer",),
    follower=PrinterFollower,
    tune=_cooldown,
    summary="never cut while printing nor hot; a finished print ends the session; faults hold",
)
