"""Parsing OctoPrint's answers at the boundary, from messages recorded on OctoPrint 1.11.8.

``push_transcript.jsonl`` was recorded from the Virtual Printer by the follower:
two ``history`` messages after auth/subscribe, a print start, progress with
temperature samples, a cancel (``PrintCancelled`` then ``PrintFailed`` with reason
``cancelled``), the idle state, and a second start. Logs and messages were dropped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devices.errors import DeviceProtocolError
from devices.octoprint import (
    ConnectionInfo,
    JobEvent,
    JobEventKind,
    JobStatus,
    PrinterSnapshot,
    PrinterStatus,
    Temperature,
    UploadResult,
)

TRANSCRIPT = Path(__file__).with_name("push_transcript.jsonl")
NOW = datetime(2026, 3, 4, 14, 0, tzinfo=UTC)


def transcript() -> list[dict[str, Any]]:
    return [json.loads(line) for line in TRANSCRIPT.read_text().splitlines()]


def replay() -> tuple[list[PrinterSnapshot], list[JobEvent]]:
    snapshot, snapshots, events = PrinterSnapshot(), [], []
    for i, message in enumerate(transcript()):
        for mtype, payload in message.items():
            if mtype in ("current", "history"):
                snapshot = snapshot.updated_from_push(payload, connected=True, now=NOW)
                snapshots.append(snapshot)
            elif mtype == "event":
                event = JobEvent.from_push(payload, at=NOW, monotonic_s=float(i))
                if event is not None:
                    events.append(event)
    return snapshots, events


def test_replayed_transcript_gives_the_print_as_seen_live() -> None:
    snapshots, events = replay()
    assert snapshots[0].state == "Operational"
    assert not snapshots[0].job_active
    printing = [s for s in snapshots if s.state == "Printing"]
    assert printing
    assert all(s.job_active and s.flags.printing for s in printing)
    assert all(s.file_name == "long.gcode" for s in printing)
    progress = [s.progress_pct or 0.0 for s in printing[:6]]
    assert progress == sorted(progress)
    assert progress[0] > 0
    # temperatures arrive as a sparse delta list: once seen they are kept
    assert printing[0].bed == Temperature(actual=None, target=60.0)
    later = printing[5]
    assert later.tool0 is not None
    assert later.tool0.target == 200.0
    assert later.tool0.actual is not None
    assert later.tool0.actual > 21
    idle = [s for s in snapshots if s.state == "Operational"][-1]
    assert not idle.job_active
    assert idle.flags.ready
    assert idle.file_name == "long.gcode"  # a cancelled file stays selected
    assert idle.tool0 is not None
    assert idle.tool0.target == 0.0
    assert idle.tool0.actual is not None
    assert idle.tool0.actual > 21

    assert [e.kind for e in events] == [
        JobEventKind.PRINT_STARTED,
        JobEventKind.PRINT_CANCELLED,
        JobEventKind.PRINT_FAILED,
        JobEventKind.PRINT_STARTED,
    ]
    started, cancelled, failed, _ = events
    assert (started.file_name, started.size, started.origin) == ("long.gcode", 2509, "local")
    assert not started.ends_job
    assert cancelled.ends_job
    assert failed.reason == "cancelled"
    assert failed.print_time_s is not None


def test_null_temperature_keeps_the_previous_value() -> None:
    base = PrinterSnapshot(tool0=Temperature(actual=180.0, target=200.0))
    current = {
        "state": {"text": "Printing", "flags": {"printing": True, "operational": True}},
        "temps": [
            {"time": 1, "tool0": {"actual": None, "target": 210.0}},
            {"time": 2, "bed": {"actual": 40.5, "target": 60.0}},
        ],
    }
    snap = base.updated_from_push(current, connected=True, now=NOW)
    assert snap.tool0 == Temperature(actual=180.0, target=210.0)
    assert snap.bed == Temperature(actual=40.5, target=60.0)
    assert snap.source == "push"
    assert snap.last_update == NOW
    assert snap.known
    empty = snap.updated_from_push({**current, "temps": []}, connected=True, now=NOW)
    assert (empty.tool0, empty.bed) == (snap.tool0, snap.bed)


@pytest.mark.parametrize(
    "payload",
    [
        {"job": {}},  # no state
        {"state": {"text": "Printing", "flags": {"printing": "maybe"}}},
        {"state": {"text": "Printing"}, "progress": {"completion": "half"}},
        "not an object",
    ],
)
def test_malformed_push_state_is_a_protocol_error(payload: object) -> None:
    with pytest.raises(DeviceProtocolError, match="push current"):
        PrinterSnapshot().updated_from_push(payload, connected=True, now=NOW)


def test_events_the_driver_does_not_follow_are_ignored_and_garbage_rejected() -> None:
    assert JobEvent.from_push({"type": "ZChange", "payload": {}}, at=NOW, monotonic_s=0) is None
    assert JobEvent.from_push({"type": "LinkUp", "payload": {}}, at=NOW, monotonic_s=0) is None
    with pytest.raises(DeviceProtocolError, match="without a type"):
        JobEvent.from_push({"payload": {}}, at=NOW, monotonic_s=0)
    with pytest.raises(DeviceProtocolError, match="PrintDone"):
        JobEvent.from_push(
            {"type": "PrintDone", "payload": {"time": "long"}}, at=NOW, monotonic_s=0
        )
    error = JobEvent.from_push(
        {"type": "Error", "payload": {"error": "MAXTEMP triggered!", "reason": "firmware"}},
        at=NOW,
        monotonic_s=1.5,
    )
    assert error is not None
    assert error.kind is JobEventKind.ERROR
    assert (error.error, error.reason, error.monotonic_s) == ("MAXTEMP triggered!", "firmware", 1.5)
    assert not error.ends_job


def test_rest_answers_are_parsed() -> None:
    printer = PrinterStatus.from_api(
        {
            "state": {
                "text": "Printing",
                "flags": {"operational": True, "printing": True, "closedOrError": False},
                "error": "",
            },
            "temperature": {
                "tool0": {"actual": 199.8, "target": 200.0, "offset": 0},
                "bed": {"actual": 59.9, "target": 60.0, "offset": 0},
            },
            "sd": {"ready": True},
        }
    )
    assert printer.flags.printing
    assert printer.error is None
    assert printer.tool0 == Temperature(actual=199.8, target=200.0)
    job = JobStatus.from_api(
        {
            "state": "Printing",
            "job": {"file": {"name": "a.gcode", "path": "x/a.gcode", "size": 9}},
            "progress": {"completion": 12.5, "printTime": 30, "printTimeLeft": 210},
        }
    )
    assert (job.file_path, job.progress_pct, job.print_time_left_s) == ("x/a.gcode", 12.5, 210)
    snap = PrinterSnapshot().updated_from_poll(printer, job, connected=False, now=NOW)
    assert snap.job_active
    assert snap.source == "poll"
    assert not snap.connected
    assert snap.bed == Temperature(actual=59.9, target=60.0)
    offline = snap.updated_from_poll(None, JobStatus(state="Offline"), connected=True, now=NOW)
    assert offline.state == "Offline"
    assert offline.flags.closed_or_error
    assert not offline.job_active
    assert offline.tool0 == snap.tool0

    connection = ConnectionInfo.from_api(
        {
            "current": {"state": "Operational", "port": "VIRTUAL", "baudrate": 115200},
            "options": {"ports": ["VIRTUAL"], "printerProfiles": [{"id": "_default"}]},
        }
    )
    assert connection.ports == ("VIRTUAL",)
    assert connection.printer_profiles == ("_default",)
    upload = UploadResult.from_api(
        {"files": {"local": {"name": "a.gcode", "path": "a.gcode"}}, "done": True,
         "effectivePrint": True, "effectiveSelect": True}
    )  # fmt: skip
    assert upload.printing
    assert upload.selected
    with pytest.raises(DeviceProtocolError, match="no local file"):
        UploadResult.from_api({"files": {"sdcard": {"name": "a", "path": "a"}}})
    with pytest.raises(DeviceProtocolError, match="GET /api/printer"):
        PrinterStatus.from_api({"temperature": {}})


def test_snapshot_is_frozen_and_job_active_covers_pause() -> None:
    paused = PrinterSnapshot.model_validate({"flags": {"paused": True}})
    assert paused.job_active
    assert not paused.flags.printing
    with pytest.raises(ValueError, match="frozen"):
        paused.state = "Operational"  # type: ignore[misc]
    assert not paused.with_link(False).connected


def test_filament_of_the_file_is_summed_over_tools_and_optional() -> None:
    body = {
        "state": "Printing",
        "job": {
            "file": {"name": "cube.gcode", "path": "cube.gcode", "origin": "local"},
            "estimatedPrintTime": 600.0,
            "filament": {"tool0": {"length": 812.34, "volume": 1.9}, "tool1": None},
        },
        "progress": {"completion": 50.0, "printTime": 300, "printTimeLeft": 300},
    }
    job = JobStatus.from_api(body)
    assert job.filament_mm == 812.3
    snap = PrinterSnapshot().updated_from_poll(None, job, connected=True, now=NOW)
    assert snap.filament_mm == 812.3
    body["job"]["filament"] = None  # type: ignore[index]
    assert JobStatus.from_api(body).filament_mm is None
    with pytest.raises(DeviceProtocolError):
        JobStatus.from_api({**body, "job": {"filament": {"tool0": {"length": "long"}}}})
