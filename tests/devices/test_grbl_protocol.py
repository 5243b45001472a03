"""The pure GRBL 1.1 protocol: line parsing, line splitting and the run-time meter."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.errors import DeviceProtocolError
from devices.grbl import (
    AlarmMessage,
    Banner,
    ErrorResponse,
    Feedback,
    GrblState,
    LineSplitter,
    Ok,
    ParserState,
    RunTimeMeter,
    Setting,
    SpindleMode,
    StartupLineResult,
    StartupLineSetting,
    StatusReport,
    parse_line,
    parse_status,
)
from devices.grbl.protocol import MAX_LINE_LENGTH, alarm_meaning, error_meaning

# ------------------------------------------------------------------ status reports


def test_full_status_report_from_the_interface_document() -> None:
    report = parse_status(
        "<Hold:1|MPos:0.000,-10.000,5.000|Bf:15,128|Ln:99999|FS:500,8000"
        "|WCO:0.000,1.551,5.664|Pn:XZD|Ov:100,95,110|A:SF>"
    )
    assert report == StatusReport(
        state=GrblState.HOLD,
        substate=1,
        mpos=(0.0, -10.0, 5.0),
        wco=(0.0, 1.551, 5.664),
        feed=500.0,
        spindle=8000.0,
        buffer=(15, 128),
        line_number=99999,
        overrides=(100, 95, 110),
        pins=frozenset("XZD"),
        accessories=frozenset("SF"),
    )
    assert report.door_open  # pin D
    assert not report.firing  # Hold, even with S > 0


@pytest.mark.parametrize(
    ("line", "state", "substate", "door_open", "firing"),
    [
        ("<Idle|MPos:0.000,0.000,0.000|FS:0,0>", GrblState.IDLE, None, False, False),
        ("<Run|MPos:1.000,2.000,0.000|FS:1200,750>", GrblState.RUN, None, False, True),
        ("<Run|MPos:1.000,2.000,0.000|FS:3000,0>", GrblState.RUN, None, False, False),
        ("<Run|WPos:1.0,2.0,0.0|F:1200>", GrblState.RUN, None, False, False),
        ("<Hold:0|MPos:0.000,0.000,0.000|FS:0,0>", GrblState.HOLD, 0, False, False),
        ("<Jog|MPos:0.000,0.000,0.000|FS:500,0>", GrblState.JOG, None, False, False),
        ("<Alarm|MPos:0.000,0.000,0.000|FS:0,0>", GrblState.ALARM, None, False, False),
        ("<Door:0|MPos:0.000,0.000,0.000|FS:0,0>", GrblState.DOOR, 0, False, False),
        ("<Door:1|MPos:0.000,0.000,0.000|FS:0,0|Pn:D>", GrblState.DOOR, 1, True, False),
        ("<Door:2|MPos:0.000,0.000,0.000|FS:0,0>", GrblState.DOOR, 2, True, False),
        ("<Door:3|MPos:0.000,0.000,0.000|FS:0,0>", GrblState.DOOR, 3, False, False),
        ("<Door|MPos:0.000,0.000,0.000>", GrblState.DOOR, None, True, False),
        ("<Check|MPos:0.000,0.000,0.000|FS:0,0>", GrblState.CHECK, None, False, False),
        ("<Home|MPos:0.000,0.000,0.000|FS:0,0>", GrblState.HOME, None, False, False),
        ("<Sleep|MPos:0.000,0.000,0.000|FS:0,0>", GrblState.SLEEP, None, False, False),
        ("<Idle|MPos:0.000,0.000,0.000|FS:0,0|Pn:D>", GrblState.IDLE, None, True, False),
    ],
)
def test_states_substates_door_and_firing(
    line: str, state: GrblState, substate: int | None, door_open: bool, firing: bool
) -> None:
    report = parse_line(line)
    assert isinstance(report, StatusReport)
    assert (report.state, report.substate) == (state, substate)
    assert (report.door_open, report.firing) == (door_open, firing)


def test_spindle_is_absent_with_f_only_and_fields_are_optional() -> None:
    report = parse_status("<Run|WPos:-2.500,0.000,11.000,90.000|F:500>")
    assert report.wpos == (-2.5, 0.0, 11.0, 90.0)  # a fourth (A) axis
    assert (report.mpos, report.feed, report.spindle) == (None, 500.0, None)
    assert report.pins == frozenset()
    assert report.accessories is None


def test_unknown_fields_of_forks_are_ignored() -> None:
    report = parse_status("<Idle|MPos:0.000,0.000,0.000|FS:0,0|SD:12.5,file.nc|H:1,7>")
    assert report.state is GrblState.IDLE


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("<Idle|MPos:0.000,0.000,0.000", "chevrons"),
        ("Idle|MPos:0,0,0>", "unrecognised"),
        ("<Running|MPos:0,0,0>", "unknown machine state"),
        ("<Hold:x|MPos:0,0,0>", "substate"),
        ("<Idle|MPos:0.0,abc,0.0>", "not a number"),
        ("<Idle|MPos:nan,0,0>", "not a number"),
        ("<Idle|MPos:>", "not a number"),
        ("<Idle|MPos:1,2,3,4,5,6,7>", "1 to 6 axes"),
        ("<Idle|FS:500>", "expected 2 values"),
        ("<Idle|Bf:15>", "expected 2 values"),
        ("<Idle|Ov:100,100>", "expected 3 values"),
        ("<Idle|Pn:Q>", "unexpected letters"),
        ("<Idle|Pn:>", "unexpected letters"),
        ("<Idle|A:Z>", "unexpected letters"),
        ("<Idle|MPos>", "has no ':'"),
        ("<>", "chevrons"),
    ],
)
def test_malformed_status_reports_raise_protocol_errors(line: str, problem: str) -> None:
    with pytest.raises(DeviceProtocolError, match=problem):
        parse_line(line)


# ------------------------------------------------------------------ other messages


def test_ok_error_and_alarm_with_meanings() -> None:
    assert parse_line("ok") == Ok()
    assert parse_line(" ok \r") == Ok()
    error = parse_line("error:9")
    assert error == ErrorResponse(9)
    assert isinstance(error, ErrorResponse)
    assert error.meaning == "G-code locked out during alarm or jog"
    assert ErrorResponse(13).meaning == "safety door open; door state entered"
    assert ErrorResponse(99).meaning == "unknown GRBL error 99"
    alarm = parse_line("ALARM:1")
    assert alarm == AlarmMessage(1)
    assert isinstance(alarm, AlarmMessage)
    assert alarm.meaning == "hard limit triggered; position lost, re-home"
    assert alarm_meaning(3).startswith("reset while in motion")
    assert alarm_meaning(42) == "unknown GRBL alarm 42"
    assert error_meaning(22) == "feed rate not set"


@pytest.mark.parametrize(
    ("line", "version", "supported"),
    [
        ("Grbl 1.1h ['$' for help]", "1.1h", True),
        ("Grbl 1.1f ['$' for help]", "1.1f", True),
        ("Grbl 1.2 ['$' for help]", "1.2", True),
        ("GrblHAL 1.1f ['$' or '$HELP' for help]", "1.1f", True),
        ("Grbl 0.9j ['$' for help]", "0.9j", False),
    ],
)
def test_banner_gives_the_version(line: str, version: str, supported: bool) -> None:
    banner = parse_line(line)
    assert isinstance(banner, Banner)
    assert banner.version == version
    assert banner.supported is supported


def test_banner_parts() -> None:
    assert parse_line("Grbl 1.1h ['$' for help]") == Banner("1.1h", 1, 1, "h")


def test_settings_and_startup_lines() -> None:
    assert parse_line("$32=1") == Setting(32, 1.0)
    assert parse_line("$30=1000") == Setting(30, 1000.0)
    assert parse_line("$11=0.010") == Setting(11, 0.01)
    assert parse_line("$N0=G54") == StartupLineSetting(0, "G54")
    assert parse_line("$N1=") == StartupLineSetting(1, "")
    assert parse_line(">G54G20:ok") == StartupLineResult("G54G20", None)
    assert parse_line(">G54G20:error:20") == StartupLineResult("G54G20", 20)
    assert parse_line(">:error:7") == StartupLineResult("", 7)


@pytest.mark.parametrize(
    ("line", "spindle", "dynamic", "enabled", "speed"),
    [
        ("[GC:G0 G54 G17 G21 G90 G94 M0 M5 M9 T0 F0. S0.]", SpindleMode.OFF, False, False, 0.0),
        ("[GC:G1 G54 G17 G21 G90 G94 M3 M9 T0 F1500. S800.]", SpindleMode.CW, False, True, 800),
        ("[GC:G1 G54 G17 G21 G90 G94 M4 M9 T0 F1500. S1000.]", SpindleMode.CCW, True, True, 1e3),
    ],
)
def test_parser_state_detects_laser_modes(
    line: str, spindle: SpindleMode, dynamic: bool, enabled: bool, speed: float
) -> None:
    state = parse_line(line)
    assert isinstance(state, ParserState)
    assert state.spindle is spindle
    assert (state.laser_dynamic, state.laser_enabled) == (dynamic, enabled)
    assert state.speed == speed
    assert state.motion in ("G0", "G1")
    assert state.words[1] == "G54"


def test_feedback_messages() -> None:
    assert parse_line("[MSG:Reset to continue]") == Feedback("MSG", "Reset to continue")
    assert parse_line("[MSG:'$H'|'$X' to unlock]") == Feedback("MSG", "'$H'|'$X' to unlock")
    assert parse_line("[VER:1.1h.20190825:]") == Feedback("VER", "1.1h.20190825:")
    assert parse_line("[PRB:0.000,0.000,0.000:0]") == Feedback("PRB", "0.000,0.000,0.000:0")
    assert parse_line("[echo:G1X0.540Y10.4F100]") == Feedback("echo", "G1X0.540Y10.4F100")


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "OK",
        "error:",
        "error:x",
        "ALARM:",
        "Grbl",
        "Grbl x.y ['$' for help]",
        "$32=on",
        "[GC:]",
        "[GC:G1 Fx]",
        "[MSG:unterminated",
        "\ufffd\ufffd<Idle>",
        "hello world",
    ],
)
def test_garbled_lines_raise_protocol_errors(line: str) -> None:
    with pytest.raises(DeviceProtocolError):
        parse_line(line)


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_a_protocol_error(text: str) -> None:
    with contextlib.suppress(DeviceProtocolError):
        parse_line(text)


@given(
    st.sampled_from(list(GrblState)),
    st.lists(st.sampled_from(["MPos", "WPos", "FS", "F", "Bf", "Ov", "Pn", "A", "WCO"])),
    st.text(alphabet="0123456789.,-:|XYZDSCFM", max_size=40),
)
def test_status_like_lines_parse_or_raise_a_protocol_error(
    state: GrblState, names: list[str], values: str
) -> None:
    line = "<" + "|".join([state.value, *(f"{name}:{values}" for name in names)]) + ">"
    try:
        report = parse_line(line)
    except DeviceProtocolError:
        return
    assert isinstance(report, StatusReport)
    assert report.state is state


# ------------------------------------------------------------------ line splitter


def test_splitter_joins_partial_lines_and_accepts_cr_lf() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"<Idle|MPos:0.000,0.0") == []
    assert splitter.feed(b"00,0.000>\r\nok\r\n\r\nerror:9\rALARM:1\n") == [
        "<Idle|MPos:0.000,0.000,0.000>",
        "ok",
        "error:9",
        "ALARM:1",
    ]


def test_splitter_replaces_non_ascii_and_drops_overlong_runs() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"o\xffk\r\n") == ["o\ufffdk"]
    assert splitter.feed(b"x" * (MAX_LINE_LENGTH + 10)) == []
    assert splitter.feed(b"still noise\r\nok\r\n") == ["ok"]
    assert splitter.dropped == 1
    splitter.feed(b"partial")
    splitter.reset()
    assert splitter.feed(b"ok\n") == ["ok"]


@given(st.binary(max_size=2000))
def test_any_bytes_never_crash_the_splitter_and_parser(data: bytes) -> None:
    splitter = LineSplitter()
    lines = splitter.feed(data) + splitter.feed(b"\n")
    for line in lines:
        assert 0 < len(line) <= MAX_LINE_LENGTH
        assert "\n" not in line
        assert "\r" not in line
        with contextlib.suppress(DeviceProtocolError):
            parse_line(line)


# ------------------------------------------------------------------ run-time meter


def test_meter_integrates_sample_and_hold() -> None:
    meter = RunTimeMeter()
    meter.observe(0.0, False)
    meter.observe(1.0, True)  # starts firing: nothing counted yet
    meter.observe(1.2, True)
    meter.observe(3.0, True)
    meter.observe(3.5, False)  # the interval up to the first non-firing sample counts
    meter.observe(10.0, False)
    assert meter.total_s == pytest.approx(2.5)
    assert not meter.firing


def test_meter_stops_at_an_interruption_and_ignores_a_backward_clock() -> None:
    meter = RunTimeMeter()
    meter.observe(0.0, True)
    meter.observe(2.0, True)
    meter.interrupt()  # link lost at some point after 2.0: unknown, not counted
    meter.observe(50.0, True)
    meter.observe(51.0, True)
    meter.observe(40.0, True)  # a clock going back adds nothing
    meter.observe(41.0, False)
    assert meter.total_s == pytest.approx(4.0)
