"""A simulated 3D printer that *is* an :class:`~devices.octoprint.OctoPrintFollower`.

For the demo and the tests of code that uses a follower: the agent reads
:attr:`~OctoPrintFollower.snapshot`, :attr:`~OctoPrintFollower.job_active` and
:attr:`~OctoPrintFollower.link_up`, subscribes to the :class:`JobEvent` stream or
passes ``on_event``, and sends ``pause()``/``resume()``/``cancel()`` through it,
exactly as with a printer behind OctoPrint. It is a follower without a client (no
push socket, no REST poll): a task simulates the printer and feeds OctoPrint 1.11's
own push messages (``current`` payloads with the state text and flags, the job's
file and filament analysis, the progress, a ``temps`` delta; ``event`` payloads
with OctoPrint's names and fields) to the base class, which parses and emits them
with its own machinery. Subscribers
therefore see the same snapshots and events as from a real OctoPrint:

* ``PrintStarted`` on :meth:`SimulatedPrinter.start_job`; the job first heats the
  nozzle and the bed (state ``Printing``, progress 0, like ``M109``/``M190``),
  then prints for ``duration_s``; ``PrintDone`` (with the job's ``time``) at the
  end, heaters off, the file left selected at 100 %;
* ``PrintPaused``/``PrintResumed`` (state ``Paused``: the print clock stops, the
  heaters hold);
* a cancel goes through ``Cancelling`` then sends ``PrintCancelled`` and
  ``PrintFailed`` with ``reason: "cancelled"``, as OctoPrint does, heaters off;
* temperatures approach their target (or the room's temperature) exponentially,
  faster when heating than when cooling, so a finished print cools down over a
  few simulated minutes.

``speed`` is simulated seconds per real second (the demo's time-lapse); every time
in the snapshots and events is simulated time, except
:attr:`~devices.octoprint.JobEvent.monotonic_s`, which is this process's
``time.monotonic()`` as for any follower. Commands run on the follower's event
loop; :meth:`SimulatedPrinter.run_threadsafe` runs one from another thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from devices.errors import DeviceUnavailable
from devices.octoprint.client import CommandRefused
from devices.octoprint.models import JobEvent
from devices.octoprint.push import OctoPrintFollower

__all__ = ["SimulatedPrinter"]

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

#: Time constants (simulated seconds) of the heaters: heating, then cooling.
_TAU_S = {"tool0": (25.0, 90.0), "bed": (60.0, 300.0)}
#: Within this many °C of its target a heater counts as heated.
_HEATED_WITHIN_C = {"tool0": 3.0, "bed": 2.0}
#: Filament per cm³ for a 1.75 mm filament: mm of filament per cm³ of plastic.
_MM_PER_CM3 = 1000.0 / (math.pi * 0.875**2)


@dataclass
class _Heater:
    actual: float
    target: float = 0.0

    def step(self, dt: float, ambient: float, taus: tuple[float, float]) -> None:
        goal = self.target if self.target > 0 else ambient
        tau = taus[0] if goal > self.actual else taus[1]
        self.actual = goal + (self.actual - goal) * math.exp(-dt / tau)

    def heated(self, within: float) -> bool:
        return self.target <= 0 or abs(self.actual - self.target) <= within


@dataclass
class _Job:
    name: str
    size: int
    duration_s: float
    filament_mm: float | None
    tool_c: float
    bed_c: float
    heating: bool = True
    paused: bool = False
    cancelling: bool = False
    printed_s: float = 0.0  # printing time, heating and pauses excluded
    print_time_s: float = 0.0  # OctoPrint's printTime: since the start, pauses excluded

    @property
    def progress_pct(self) -> float:
        if self.duration_s <= 0:
            return 100.0
        return min(100.0, 100.0 * self.printed_s / self.duration_s)


class SimulatedPrinter(OctoPrintFollower):
    """A printer simulated in this process, followed like one behind OctoPrint.

    Args:
        speed: simulated seconds per real second.
        throttle: one snapshot every ``throttle`` × 500 ms (as the push API's throttle).
        tick_s: real seconds between simulation steps (default: the snapshot period).
        ambient_c: the room's temperature.
        name: shown in logs and ``repr``.
        on_event, event_queue_size: as for :class:`OctoPrintFollower`.
    """

    def __init__(
        self,
        *,
        speed: float = 1.0,
        throttle: int = 1,
        tick_s: float | None = None,
        ambient_c: float = 22.0,
        name: str = "printer",
        on_event: Callable[[JobEvent], None] | None = None,
        event_queue_size: int = 256,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, not {speed}")
        super().__init__(
            None,  # no OctoPrint: this class feeds the push messages itself
            throttle=throttle,
            on_event=on_event,
            event_queue_size=event_queue_size,
        )
        self.speed = speed
        self.tick_s = tick_s if tick_s is not None else 0.5 * throttle
        self.ambient_c = ambient_c
        self.name = name
        self._tool = _Heater(ambient_c)
        self._bed = _Heater(ambient_c)
        self._job: _Job | None = None
        self._selected: _Job | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock = time.monotonic()

    def __repr__(self) -> str:
        return f"SimulatedPrinter({self.name!r})"

    # ------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        """Start the simulation (the printer is Operational and followed at once).

        The base class's ``__aexit__`` stops it: the task is cancelled, the link
        goes down and the snapshot keeps its last values, disconnected.
        """
        await super().__aenter__()
        self._loop = asyncio.get_running_loop()
        self._clock = time.monotonic()
        self._push_current()
        self._start_task(self._simulate(), "simulation")
        return self

    def run_threadsafe(self, coro: Coroutine[Any, Any, T], timeout: float = 5.0) -> T:
        """Run ``coro`` (a command of this printer) on its loop from another thread.

        Raises:
            DeviceUnavailable: the printer is not started.
            TimeoutError: the loop did not run it within ``timeout`` seconds.
            Exception: whatever the command raised (:class:`CommandRefused`…).
        """
        loop = self._loop
        if loop is None or loop.is_closed() or not self.running:
            coro.close()
            raise DeviceUnavailable(f"{self!r} is not started")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as err:
            future.cancel()
            raise TimeoutError(f"{self!r}: command not run within {timeout} s") from err

    # ------------------------------------------------------------------- commands

    async def start_job(
        self,
        name: str,
        duration_s: float,
        filament_mm: float | None = None,
        *,
        tool_c: float = 210.0,
        bed_c: float = 60.0,
    ) -> None:
        """Select ``name`` and print it: heat, then print for ``duration_s`` simulated seconds.

        Raises:
            CommandRefused: a job is already running (OctoPrint answers 409).
        """
        self._advance()
        if self._job is not None:
            raise self._refused("start", "Printer is currently printing")
        size = 1024 + round((filament_mm or 0.0) * 40)
        job = _Job(name, size, max(0.0, duration_s), filament_mm, tool_c, bed_c)
        self._job = self._selected = job
        self._tool.target, self._bed.target = tool_c, bed_c
        self._event("PrintStarted", job)
        self._push_current()

    async def pause(self) -> None:
        """Pause the running job (no effect when already paused).

        Raises:
            CommandRefused: no job (OctoPrint answers 409).
        """
        job = self._running("pause")
        if not job.paused:
            self._advance()
            job.paused = True
            self._event("PrintPaused", job)
            self._push_current()

    async def resume(self) -> None:
        """Resume the paused job (no effect when not paused; same errors as :meth:`pause`)."""
        job = self._running("resume")
        if job.paused:
            self._advance()
            job.paused = False
            self._event("PrintResumed", job)
            self._push_current()

    async def cancel(self) -> None:
        """Cancel the job: ``Cancelling``, then ``PrintCancelled`` and ``PrintFailed``.

        Raises:
            CommandRefused: no job (OctoPrint answers 409).
        """
        job = self._running("cancel")
        if not job.cancelling:
            self._advance()
            job.cancelling = True
            self._push_current()

    def _running(self, command: str) -> _Job:
        job = self._job
        if job is None:
            raise self._refused(command, "Printer is neither printing nor paused")
        return job

    def _refused(self, command: str, detail: str) -> CommandRefused:
        return CommandRefused(f"{self!r}: {command} refused: {detail}", detail)

    # ------------------------------------------------------------------- simulation

    async def _simulate(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self._advance()
            self._push_current()

    def _advance(self) -> None:
        """Move the simulation to now: heaters, job clock, end of job."""
        now = time.monotonic()
        dt = (now - self._clock) * self.speed
        self._clock = now
        self._tool.step(dt, self.ambient_c, _TAU_S["tool0"])
        self._bed.step(dt, self.ambient_c, _TAU_S["bed"])
        job = self._job
        if job is None:
            return
        if job.cancelling:
            self._end(job, "PrintCancelled")
            return
        if job.paused:
            return
        job.print_time_s += dt
        if job.heating:
            tool_ok = self._tool.heated(_HEATED_WITHIN_C["tool0"])
            job.heating = not (tool_ok and self._bed.heated(_HEATED_WITHIN_C["bed"]))
            return
        job.printed_s += dt
        if job.printed_s >= job.duration_s:
            job.printed_s = job.duration_s
            self._end(job, "PrintDone")

    def _end(self, job: _Job, kind: str) -> None:
        """The job is over: heaters off (end or cancel script), the terminal event(s)."""
        self._job = None
        self._tool.target = self._bed.target = 0.0
        self._event(kind, job)
        if kind == "PrintCancelled":
            self._event("PrintFailed", job, reason="cancelled")

    # ------------------------------------------------------------------- wire format

    def _event(self, kind: str, job: _Job, *, reason: str | None = None) -> None:
        """Emit an OctoPrint push ``event`` through the base class."""
        payload: dict[str, Any] = {
            "name": job.name,
            "path": job.name,
            "origin": "local",
            "size": job.size,
            "owner": "fabrique",
            "user": "fabrique",
        }
        if kind in ("PrintDone", "PrintFailed", "PrintCancelled"):
            payload["time"] = round(job.print_time_s, 3)
        if reason is not None:
            payload["reason"] = reason
        self._feed_event({"type": kind, "payload": payload})

    def _push_current(self) -> None:
        """Install a snapshot from an OctoPrint push ``current`` payload."""
        self._feed_current(self._current())

    def _current(self) -> dict[str, Any]:
        job = self._job
        selected = job or self._selected
        if job is None:
            text = "Operational"
        elif job.cancelling:
            text = "Cancelling"
        elif job.paused:
            text = "Paused"
        else:
            text = "Printing"
        flags = {
            "operational": True,
            "printing": job is not None and (job.cancelling or not job.paused),
            "paused": job is not None and job.paused and not job.cancelling,
            "pausing": False,
            "resuming": False,
            "cancelling": job is not None and job.cancelling,
            "finishing": False,
            "error": False,
            "ready": job is None,
            "closedOrError": False,
            "sdReady": False,
        }
        file: dict[str, Any] = {"name": None, "path": None, "origin": None, "size": None}
        progress: dict[str, Any] = {"completion": None, "printTime": None, "printTimeLeft": None}
        estimated: float | None = None
        filament: dict[str, Any] | None = None
        if selected is not None:
            file = {
                "name": selected.name,
                "path": selected.name,
                "origin": "local",
                "size": selected.size,
            }
            estimated = selected.duration_s
            if selected.filament_mm is not None:
                volume = selected.filament_mm / _MM_PER_CM3
                filament = {"tool0": {"length": selected.filament_mm, "volume": volume}}
            progress = {
                "completion": round(selected.progress_pct, 3),
                "printTime": round(selected.print_time_s),
                "printTimeLeft": round(selected.duration_s - selected.printed_s),
            }
        return {
            "state": {"text": text, "flags": flags, "error": ""},
            "job": {"file": file, "estimatedPrintTime": estimated, "filament": filament},
            "progress": progress,
            "temps": [
                {
                    "time": int(time.time()),
                    "tool0": {"actual": round(self._tool.actual, 1), "target": self._tool.target},
                    "bed": {"actual": round(self._bed.actual, 1), "target": self._bed.target},
                }
            ],
        }
