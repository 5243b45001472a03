"""PrinterWatch: OctoPrint events and snapshots in, the agent's signals out (pure, no I/O).

The follower calls the watch on its loop thread; here the tests call it directly
with the values OctoPrint 1.11 sends (the shapes are those of the driver's models).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devices.octoprint import JobEvent, JobEventKind, PrinterFlags, PrinterSnapshot, Temperature
from edge.kinds import DriverSignal
from edge.kinds.printer import START_GRACE_S, PrinterWatch
from edge.session import JobReport
from protocol.messages import JobResult

AT = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)
IDLE = PrinterFlags(operational=True, ready=True)
PRINTING = PrinterFlags(operational=True, printing=True)
FINISHING = PrinterFlags(operational=True, printing=True, finishing=True)
PAUSED = PrinterFlags(operational=True, paused=True)


class Watched:
    """A watch with a settable clock and the signals it posted."""

    def __init__(self, hot_from_c: float = 50.0) -> None:
        self.now = 100.0
        self.posted: list[DriverSignal] = []
        self.watch = PrinterWatch(
            "p-1", self.posted.append, hot_from_c=hot_from_c, clock=self.clock
        )
        self.last: PrinterSnapshot | None = None
        self.received = 0

    def clock(self) -> float:
        return self.now

    def event(self, kind: JobEventKind, **fields: object) -> list[DriverSignal]:
        before = len(self.posted)
        values: dict[str, object] = {"kind": kind, "at": AT, "monotonic_s": self.now}
        values.update(fields)
        self.watch.on_event(JobEvent.model_validate(values))
        return self.posted[before:]

    def snapshot(self, flags: PrinterFlags, **fields: object) -> list[DriverSignal]:
        before = len(self.posted)
        self.received += 1
        values: dict[str, object] = {
            "state": "Printing" if flags.printing else "Operational",
            "flags": flags,
            "connected": True,
            "last_update": AT + timedelta(seconds=self.received),
            "source": "push",
        }
        values.update(fields)
        self.last = PrinterSnapshot.model_validate(values)
        self.watch.on_snapshot(self.last)
        return self.posted[before:]

    def kinds(self) -> list[str]:
        return [s.kind for s in self.posted]


def job(signals: list[DriverSignal]) -> JobReport:
    (signal,) = signals
    assert signal.kind == "job_ended"
    assert signal.job is not None
    return signal.job


def test_a_print_from_start_to_done() -> None:
    w = Watched()
    assert w.snapshot(IDLE) == []
    (started,) = w.event(JobEventKind.PRINT_STARTED, file_name="cube.gcode")
    assert (started.machine, started.kind, started.detail) == ("p-1", "job_started", "cube.gcode")
    printing = {"file_name": "cube.gcode", "filament_mm": 812.4}
    assert w.snapshot(PRINTING, progress_pct=40.0, **printing) == []  # already told
    w.now += 1500
    report = job(w.event(JobEventKind.PRINT_DONE, file_name="cube.gcode", print_time_s=1498.2))
    assert report == JobReport("cube.gcode", JobResult.DONE, 1498.2, 812.4)
    # OctoPrint runs its end script (Finishing) after PrintDone: the power still holds.
    assert w.snapshot(FINISHING, progress_pct=100.0, **printing) == []
    assert [s.kind for s in w.snapshot(IDLE)] == ["job_done"]
    assert w.kinds() == ["job_started", "job_ended", "job_done"]


def test_a_cancel_is_one_job_with_the_filament_used_so_far() -> None:
    w = Watched()
    w.event(JobEventKind.PRINT_STARTED, file_name="vase.gcode")
    w.snapshot(PRINTING, file_name="vase.gcode", filament_mm=2000.0, progress_pct=25.0)
    w.now += 600
    report = job(w.event(JobEventKind.PRINT_CANCELLED, file_name="vase.gcode", print_time_s=598))
    assert report == JobReport("vase.gcode", JobResult.CANCELLED, 598.0, 500.0, True)
    # OctoPrint then says PrintFailed(reason=cancelled) about the same job: not a second one.
    echo = w.event(
        JobEventKind.PRINT_FAILED, file_name="vase.gcode", print_time_s=598, reason="cancelled"
    )
    assert echo == []
    w.snapshot(IDLE)
    assert w.kinds() == ["job_started", "job_ended", "job_done"]


def test_a_failed_print_is_failed() -> None:
    w = Watched()
    w.event(JobEventKind.PRINT_STARTED, file_name="a.gcode")
    report = job(w.event(JobEventKind.PRINT_FAILED, file_name="a.gcode", reason="error"))
    assert report.result is JobResult.FAILED
    assert report.filament_mm is None  # OctoPrint had not analysed the file


def test_without_a_print_time_the_duration_is_the_time_since_the_start() -> None:
    w = Watched()
    w.event(JobEventKind.PRINT_STARTED, file_name="a.gcode")
    w.now += 42.5
    report = job(w.event(JobEventKind.JOB_LOST, file_name="a.gcode"))
    assert (report.result, report.duration_s) == (JobResult.LOST, 42.5)


def test_a_job_found_running_holds_and_is_lost_with_its_print_time() -> None:
    w = Watched()
    (running,) = w.snapshot(PRINTING, file_name="a.gcode", print_time_s=300.0, progress_pct=50.0)
    assert running.kind == "job_running"  # the agent started mid-print: hold at once
    assert w.last is not None
    w.watch.on_snapshot(w.last.with_link(False))  # OctoPrint unreachable
    assert w.kinds() == ["job_running"]  # last known while OctoPrint is away: still held
    report = job(w.event(JobEventKind.JOB_LOST, reason="gone"))
    assert (report.name, report.result, report.duration_s) == ("a.gcode", JobResult.LOST, 300.0)


def test_a_stale_idle_snapshot_right_after_the_start_does_not_release_the_power() -> None:
    w = Watched()
    w.event(JobEventKind.PRINT_STARTED, file_name="a.gcode")
    assert w.snapshot(IDLE) == []
    w.now += START_GRACE_S
    assert [s.kind for s in w.snapshot(IDLE)] == ["job_done"]  # gone without a word


def test_after_the_jobs_end_event_the_next_idle_snapshot_releases_at_once() -> None:
    w = Watched()
    w.event(JobEventKind.PRINT_STARTED, file_name="a.gcode")
    w.snapshot(PRINTING, file_name="a.gcode")
    w.now += 0.5  # cancelled right after the start
    w.event(JobEventKind.PRINT_CANCELLED, file_name="a.gcode")
    assert [s.kind for s in w.snapshot(IDLE)] == ["job_done"]


def test_the_last_known_values_republished_on_a_link_loss_never_release_the_power() -> None:
    w = Watched()
    w.snapshot(IDLE)
    w.event(JobEventKind.PRINT_STARTED, file_name="a.gcode")  # no snapshot shows it yet
    w.now += 60
    assert w.last is not None
    w.watch.on_snapshot(w.last.with_link(False))  # OctoPrint gone: old data, new flag
    assert w.kinds() == ["job_started"]
    # A poll while the push link is down (OctoPrint restarting without the job) does
    # not release a job whose end was not announced: the follower's JobLost comes
    # first once the link is back, then the live snapshot releases.
    assert w.snapshot(IDLE, connected=False, source="poll") == []
    (lost,) = w.event(JobEventKind.JOB_LOST, file_name="a.gcode")
    assert lost.job is not None
    assert lost.job.result is JobResult.LOST
    assert [s.kind for s in w.snapshot(IDLE)] == ["job_done"]


@pytest.mark.parametrize("kind", [JobEventKind.PRINT_PAUSED, JobEventKind.PRINT_RESUMED])
def test_pause_and_resume_mean_a_job_holds(kind: JobEventKind) -> None:
    w = Watched()
    assert [s.kind for s in w.event(kind, file_name="a.gcode")] == ["job_running"]
    assert w.snapshot(PAUSED) == []
    assert w.event(kind, file_name="a.gcode") == []


def test_the_nozzle_crossing_the_safe_temperature_says_hot_then_cooled() -> None:
    w = Watched(hot_from_c=50.0)
    assert w.snapshot(IDLE) == []  # no temperature yet: nothing said
    assert w.snapshot(IDLE, tool0=Temperature(actual=21.0, target=0.0)) == []
    (hot,) = w.snapshot(IDLE, tool0=Temperature(actual=50.0, target=200.0))
    assert (hot.kind, hot.detail) == ("hot", "50 °C")
    assert w.snapshot(IDLE, tool0=Temperature(actual=199.0, target=200.0)) == []
    assert w.snapshot(IDLE, tool0=Temperature(actual=None, target=0.0)) == []
    (cooled,) = w.snapshot(IDLE, tool0=Temperature(actual=49.9, target=0.0))
    assert cooled.kind == "cooled"
    assert w.kinds() == ["hot", "cooled"]
