"""The simulated printer: a follower with OctoPrint's snapshots and events, no OctoPrint.

Time runs 300 times faster than real time and the simulation steps every 20 ms, so a
ten-minute print with its heating takes about two seconds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from devices.errors import DeviceConfigError, DeviceUnavailable
from devices.octoprint import (
    CommandRefused,
    JobEvent,
    JobEventKind,
    OctoPrintFollower,
    PrinterSnapshot,
    SimulatedPrinter,
)
from devices.registry import KINDS, DeviceSpec, build_printer

pytestmark = pytest.mark.anyio

K = JobEventKind
SPEED = 300.0
WITHIN = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def printer(events: list[JobEvent]) -> SimulatedPrinter:
    return SimulatedPrinter(speed=SPEED, tick_s=0.02, name="p1", on_event=events.append)


class Watch:
    """Samples every snapshot the printer installs (through ``wait_for``)."""

    def __init__(self, follower: OctoPrintFollower) -> None:
        self.follower = follower
        self.seen: list[PrinterSnapshot] = []

    async def until(self, predicate: Callable[[PrinterSnapshot], bool]) -> PrinterSnapshot:
        async with asyncio.timeout(WITHIN):
            while True:
                snap = self.follower.snapshot
                if not self.seen or self.seen[-1] is not snap:
                    self.seen.append(snap)
                if predicate(snap):
                    return snap
                await asyncio.sleep(0.005)


def kinds(events: list[JobEvent]) -> list[JobEventKind]:
    return [e.kind for e in events]


async def test_a_job_heats_prints_to_the_end_and_cools_down() -> None:
    events: list[JobEvent] = []
    async with printer(events) as p:
        idle = p.snapshot
        assert (idle.state, idle.connected, idle.source) == ("Operational", True, "push")
        assert idle.flags.operational
        assert idle.flags.ready
        assert not p.job_active
        assert p.link_up
        assert p.running
        assert idle.tool0 is not None
        assert idle.tool0.actual == pytest.approx(22.0)
        async with p.subscribe() as stream:
            await p.start_job("porte-cles.gcode", duration_s=600, filament_mm=2400)
            watch = Watch(p)
            heating = await watch.until(lambda s: s.tool0 is not None and s.tool0.actual > 100)
            assert heating.state == "Printing"
            assert heating.flags.printing
            assert heating.progress_pct == 0
            assert heating.tool0 is not None
            assert heating.tool0.target == 210
            assert heating.bed is not None
            assert heating.bed.target == 60
            half = await watch.until(lambda s: (s.progress_pct or 0) >= 50)
            assert half.tool0 is not None
            assert half.tool0.actual == pytest.approx(210, abs=3)
            assert half.print_time_left_s is not None
            assert 0 < half.print_time_left_s <= 300
            done = await watch.until(lambda s: not s.job_active)
            streamed = stream.pending()
        assert (done.state, done.progress_pct, done.print_time_left_s) == ("Operational", 100, 0)
        assert done.file_name == "porte-cles.gcode"
        assert done.filament_mm == 2400
        assert done.tool0 is not None
        assert done.tool0.target == 0
        during = [s for s in watch.seen if s is not done and s.state != "Operational"]
        assert during
        assert all(s.job_active for s in during), "job_active throughout the job"
        assert all(s.file_name == "porte-cles.gcode" for s in during)
        progress = [s.progress_pct or 0 for s in during]
        assert progress == sorted(progress), "progress only grows"
        hot = done.tool0.actual
        assert hot is not None
        cooled = await Watch(p).until(lambda s: s.tool0 is not None and (s.tool0.actual or 0) < 60)
        assert cooled.bed is not None
        assert cooled.bed.actual is not None
        assert cooled.bed.actual < 60
    assert kinds(events) == [K.LINK_UP, K.PRINT_STARTED, K.PRINT_DONE]
    assert kinds(streamed) == [K.PRINT_STARTED, K.PRINT_DONE]
    finished = events[-1]
    assert finished.file_name == "porte-cles.gcode"
    assert finished.origin == "local"
    assert finished.ends_job
    assert finished.print_time_s is not None
    assert finished.print_time_s >= 600
    assert not p.running
    assert not p.link_up
    assert not p.snapshot.connected


async def test_pause_stops_the_print_clock_and_resume_finishes() -> None:
    events: list[JobEvent] = []
    async with printer(events) as p:
        await p.start_job("boite.gcode", duration_s=900, filament_mm=None)
        watch = Watch(p)
        await watch.until(lambda s: (s.progress_pct or 0) > 10)
        await p.pause()
        paused = await watch.until(lambda s: s.state == "Paused")
        assert paused.flags.paused
        assert not paused.flags.printing
        assert p.job_active
        await asyncio.sleep(0.3)  # 90 simulated seconds
        still = p.snapshot
        assert still.state == "Paused"
        assert still.progress_pct == paused.progress_pct
        assert still.tool0 is not None
        assert still.tool0.target == 210, "heaters hold"
        await p.pause()  # no effect when already paused, as OctoPrint
        await p.resume()
        await watch.until(lambda s: s.state == "Printing")
        await watch.until(lambda s: not s.job_active)
        assert all(s.job_active for s in watch.seen[:-1])
        assert p.snapshot.filament_mm is None
    assert kinds(events) == [
        K.LINK_UP,
        K.PRINT_STARTED,
        K.PRINT_PAUSED,
        K.PRINT_RESUMED,
        K.PRINT_DONE,
    ]


async def test_cancel_sends_cancelled_then_failed_like_octoprint() -> None:
    events: list[JobEvent] = []
    async with printer(events) as p:
        await p.start_job("vase.gcode", duration_s=3600, filament_mm=9000)
        watch = Watch(p)
        await watch.until(lambda s: (s.progress_pct or 0) > 5)
        await p.pause()
        await p.cancel()
        cancelling = p.snapshot
        assert cancelling.state == "Cancelling"
        assert cancelling.flags.cancelling
        assert p.job_active, "still a job while cancelling"
        idle = await watch.until(lambda s: s.state == "Operational")
        assert not idle.job_active
        assert idle.tool0 is not None
        assert idle.tool0.target == 0
        with pytest.raises(CommandRefused, match="neither printing nor paused"):
            await p.cancel()
    assert kinds(events) == [
        K.LINK_UP,
        K.PRINT_STARTED,
        K.PRINT_PAUSED,
        K.PRINT_CANCELLED,
        K.PRINT_FAILED,
    ]
    failed = events[-1]
    assert failed.reason == "cancelled"
    assert failed.file_name == "vase.gcode"
    assert events[-2].print_time_s is not None


async def test_commands_refused_like_octoprint() -> None:
    async with printer([]) as p:
        for command in (p.pause, p.resume, p.cancel):
            with pytest.raises(CommandRefused) as info:
                await command()
            assert info.value.detail == "Printer is neither printing nor paused"
        await p.start_job("a.gcode", 60)
        with pytest.raises(CommandRefused, match="currently printing"):
            await p.start_job("b.gcode", 60)


async def test_commands_from_another_thread() -> None:
    events: list[JobEvent] = []
    idle = SimulatedPrinter(name="p2")
    with pytest.raises(DeviceUnavailable, match="not started"):
        idle.run_threadsafe(idle.start_job("x.gcode", 60))
    async with printer(events) as p:
        errors: list[BaseException] = []

        def visitor() -> None:
            p.run_threadsafe(p.start_job("from-thread.gcode", 30, 100))
            try:
                p.run_threadsafe(p.start_job("again.gcode", 30))
            except CommandRefused as err:
                errors.append(err)

        thread = threading.Thread(target=visitor)
        thread.start()
        await asyncio.to_thread(thread.join, 5)
        assert len(errors) == 1
        await Watch(p).until(lambda s: s.progress_pct == 100)
    assert kinds(events)[-2:] == [K.PRINT_STARTED, K.PRINT_DONE]


def test_the_registry_row_builds_an_unstarted_simulated_follower() -> None:
    built = build_printer("printer.simulated", {"speed": 10, "throttle": 2})
    assert isinstance(built, SimulatedPrinter)
    assert isinstance(built, OctoPrintFollower)
    assert (built.speed, built.throttle, built.tick_s) == (10, 2, 1.0)
    assert not built.running
    assert not built.snapshot.known
    assert KINDS["printer.simulated"].role == "printer"
    assert DeviceSpec(kind="printer.simulated").role == "printer"
    with pytest.raises(DeviceConfigError, match="speed"):
        build_printer("printer.simulated", {"speed": 0})
    with pytest.raises(ValueError, match="speed"):
        SimulatedPrinter(speed=-1)


async def test_no_octoprint_behind_it() -> None:
    """A follower without client: no socket, no poll, and ``client`` says why."""
    events: list[JobEvent] = []
    async with printer(events) as p:
        with pytest.raises(DeviceConfigError, match="no OctoPrint client"):
            _ = p.client
        assert p.running
    async with OctoPrintFollower(None) as bare:  # nothing feeds it: it stays unknown
        assert not bare.running
        assert not bare.link_up
        assert not bare.snapshot.known
        with pytest.raises(DeviceConfigError):
            await bare.pause()
    assert repr(bare) == "OctoPrintFollower(None)"
