"""The GRBL 1.1 serial protocol as pure functions and frozen values (no I/O).

Everything GRBL sends is a line ending in ``\\r\\n`` (gnea/grbl
``doc/markdown/interface.md``). :class:`LineSplitter` cuts the byte stream into
lines and :func:`parse_line` turns one line into a typed message:

=====================================  ==========================================
``<Idle|MPos:0.000,0.000,0.000|…>``    :class:`StatusReport` (answer to ``?``)
``ok``                                 :class:`Ok`
``error:9``                            :class:`ErrorResponse` (with the meaning)
``ALARM:1``                            :class:`AlarmMessage` (with the meaning)
``Grbl 1.1h ['$' for help]``           :class:`Banner` (start-up and after reset)
``$32=1``                              :class:`Setting` (``$$`` print-out)
``$N0=G54``                            :class:`StartupLineSetting`
``[GC:G0 G54 … M4 … S1000.]``          :class:`ParserState` (``$G``)
``[MSG:…]``, ``[VER:…]``, ``[HLP:…]``  :class:`Feedback`
``>G54G20:ok``                         :class:`StartupLineResult`
=====================================  ==========================================

A line that is none of these, or claims to be one and is malformed, raises
:class:`~devices.errors.DeviceProtocolError`; the driver logs it and carries on,
because a noisy USB cable must never crash the agent. Unknown *fields* inside a
status report are ignored: the interface document says any field after the
position may or may not be present, and forks add their own.

Laser mode: with ``$32=1`` the spindle value of ``FS:feed,speed`` is the laser
power ``S``, ``M3`` is constant power and ``M4`` dynamic power (power scaled with
the real feed so corners do not burn); G0 rapids never fire.

Real-time commands are single bytes that bypass GRBL's line buffer: ``?``
(status report), ``!`` (feed hold), ``~`` (cycle start) and ``0x18`` (soft reset).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from devices.errors import DeviceProtocolError

__all__ = [
    "ALARM_MEANINGS",
    "CYCLE_START",
    "ERROR_MEANINGS",
    "FEED_HOLD",
    "HOMING_SETTING",
    "LASER_MODE_SETTING",
    "MAX_LINE_LENGTH",
    "MAX_SPINDLE_SETTING",
    "SOFT_RESET",
    "STATUS_QUERY",
    "AlarmMessage",
    "Banner",
    "ErrorResponse",
    "Feedback",
    "GrblMessage",
    "GrblState",
    "LineSplitter",
    "Ok",
    "ParserState",
    "Setting",
    "SpindleMode",
    "StartupLineResult",
    "StartupLineSetting",
    "StatusReport",
    "alarm_meaning",
    "error_meaning",
    "parse_line",
    "parse_status",
]

_LOGGER = logging.getLogger(__name__)

#: Real-time command: ask for one status report.
STATUS_QUERY: Final = b"?"
#: Real-time command: decelerate to a stop and hold (``Hold:1`` then ``Hold:0``).
FEED_HOLD: Final = b"!"
#: Real-time command: resume after a hold (never sent by the driver on its own).
CYCLE_START: Final = b"~"
#: Real-time command: soft reset (ctrl-x); GRBL answers with its banner.
SOFT_RESET: Final = b"\x18"

#: ``$32``: laser mode enable (boolean).
LASER_MODE_SETTING: Final = 32
#: ``$22``: homing cycle enable (boolean): a re-arm homes (``$H``) after ``$X``.
HOMING_SETTING: Final = 22
#: ``$30``: maximum spindle speed, i.e. the ``S`` value of full laser power.
MAX_SPINDLE_SETTING: Final = 30

#: Longest line kept by :class:`LineSplitter`; GRBL's own lines are far shorter,
#: so a longer run without a newline is noise and is dropped.
MAX_LINE_LENGTH: Final = 255

#: GRBL 1.1 ``error:N`` codes (doc/csv/error_codes_en_US.csv), shortened.
ERROR_MEANINGS: Final[dict[int, str]] = {
    1: "G-code word letter missing",
    2: "bad number format or missing value",
    3: "'$' system command not recognised",
    4: "negative value where a positive one is expected",
    5: "homing is not enabled in the settings",
    6: "step pulse must be at least 3 microseconds",
    7: "EEPROM read failed; defaults restored",
    8: "'$' command needs GRBL to be idle",
    9: "G-code locked out during alarm or jog",
    10: "soft limits need homing enabled",
    11: "line too long; not executed",
    12: "setting exceeds the maximum step rate",
    13: "safety door open; door state entered",
    14: "build info or startup line too long for the EEPROM",
    15: "jog target exceeds machine travel; jog ignored",
    16: "invalid jog command",
    17: "laser mode requires PWM output",
    20: "unsupported or invalid G-code command",
    21: "more than one command of the same modal group",
    22: "feed rate not set",
    23: "command requires an integer value",
    24: "two commands need axis words in the same block",
    25: "G-code word repeated in the block",
    26: "command requires axis words and none were given",
    27: "line number out of range",
    28: "command is missing a required P or L value",
    29: "G59.x work coordinate systems are not supported",
    30: "G53 only allowed with G0 and G1",
    31: "axis words given but no command uses them",
    32: "G2/G3 arc needs an in-plane axis word",
    33: "motion command target is invalid",
    34: "arc radius is invalid",
    35: "G2/G3 arc needs an in-plane offset word",
    36: "unused value words in the block",
    37: "G43.1 offset not on the tool length axis",
    38: "tool number too large",
}

#: GRBL 1.1 ``ALARM:N`` codes (doc/csv/alarm_codes_en_US.csv), shortened.
ALARM_MEANINGS: Final[dict[int, str]] = {
    1: "hard limit triggered; position lost, re-home",
    2: "soft limit: motion target exceeds machine travel",
    3: "reset while in motion; position lost, re-home",
    4: "probe fail: probe not in the expected initial state",
    5: "probe fail: no contact within the programmed travel",
    6: "homing fail: homing cycle was reset",
    7: "homing fail: safety door opened during homing",
    8: "homing fail: pull-off did not clear the limit switch",
    9: "homing fail: limit switch not found",
}


def error_meaning(code: int) -> str:
    """The plain meaning of GRBL ``error:code`` (a generic text for unknown codes)."""
    return ERROR_MEANINGS.get(code, f"unknown GRBL error {code}")


def alarm_meaning(code: int) -> str:
    """The plain meaning of GRBL ``ALARM:code`` (a generic text for unknown codes)."""
    return ALARM_MEANINGS.get(code, f"unknown GRBL alarm {code}")


class GrblState(StrEnum):
    """The first field of a status report."""

    IDLE = "Idle"
    RUN = "Run"
    HOLD = "Hold"
    JOG = "Jog"
    ALARM = "Alarm"
    DOOR = "Door"
    CHECK = "Check"
    HOME = "Home"
    SLEEP = "Sleep"


class SpindleMode(StrEnum):
    """The spindle modal state; in laser mode M3 is constant and M4 dynamic power."""

    CW = "M3"
    CCW = "M4"
    OFF = "M5"


# ---------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class StatusReport:
    """One real-time status report ``<State[:sub]|field:values|…>``.

    Attributes:
        state: the machine state.
        substate: ``Hold:0`` complete / ``Hold:1`` in progress; ``Door:0`` closed,
            ``Door:1`` ajar and stopped, ``Door:2`` opened and parking, ``Door:3``
            closed and resuming; ``None`` when absent.
        mpos: machine position (X, Y, Z[, A]) when reported.
        wpos: work position when reported (``$10`` chooses MPos or WPos).
        wco: work coordinate offset, sent every 10-30 reports.
        feed: real-time feed rate (mm/min or in/min per ``$13``).
        spindle: real-time spindle speed; the laser power ``S`` in laser mode;
            ``None`` when GRBL sends ``F:`` only (no variable spindle).
        buffer: ``Bf:`` available planner blocks and RX bytes.
        line_number: ``Ln:`` line being executed.
        overrides: ``Ov:`` feed, rapid and spindle overrides in percent.
        pins: triggered input pins among ``XYZAPDHRS`` (``D`` is the door).
        accessories: ``A:`` letters (``S``/``C`` spindle on, ``F``/``M`` coolant);
            ``None`` when the field was not in this report.
    """

    state: GrblState
    substate: int | None = None
    mpos: tuple[float, ...] | None = None
    wpos: tuple[float, ...] | None = None
    wco: tuple[float, ...] | None = None
    feed: float | None = None
    spindle: float | None = None
    buffer: tuple[int, int] | None = None
    line_number: int | None = None
    overrides: tuple[int, int, int] | None = None
    pins: frozenset[str] = frozenset()
    accessories: frozenset[str] | None = None

    @property
    def door_open(self) -> bool:
        """Whether the safety door is open: pin ``D`` triggered, or ``Door`` not closed.

        ``Door:0`` (closed, ready to resume) and ``Door:3`` (closed, resuming) are
        closed; any other ``Door`` report, with or without a substate, is open.
        """
        if "D" in self.pins:
            return True
        return self.state is GrblState.DOOR and self.substate not in (0, 3)

    @property
    def firing(self) -> bool:
        """Whether the laser is taken as firing: ``Run`` with a power ``S`` above 0."""
        return self.state is GrblState.RUN and (self.spindle or 0.0) > 0.0


@dataclass(frozen=True)
class Ok:
    """``ok``: the last line sent was understood and executed."""


@dataclass(frozen=True)
class ErrorResponse:
    """``error:N``: the last line sent was rejected and nothing of it executed."""

    code: int

    @property
    def meaning(self) -> str:
        """What the code means (GRBL 1.1 table)."""
        return error_meaning(self.code)


@dataclass(frozen=True)
class AlarmMessage:
    """``ALARM:N``: GRBL entered its alarm state and locked out G-code."""

    code: int

    @property
    def meaning(self) -> str:
        """What the code means (GRBL 1.1 table)."""
        return alarm_meaning(self.code)


@dataclass(frozen=True)
class Banner:
    """``Grbl 1.1h ['$' for help]``: GRBL (re)initialised, buffers and queries cleared.

    Attributes:
        version: the version as printed, e.g. ``1.1h``.
        major: ``1``.
        minor: ``1``.
        revision: the feature letter, e.g. ``h`` (may be empty).
    """

    version: str
    major: int
    minor: int
    revision: str

    @property
    def supported(self) -> bool:
        """Whether this is GRBL 1.1 or later (0.9 reports status in another format)."""
        return (self.major, self.minor) >= (1, 1)


@dataclass(frozen=True)
class Setting:
    """``$N=value`` line of a ``$$`` print-out (numeric settings only)."""

    number: int
    value: float


@dataclass(frozen=True)
class StartupLineSetting:
    """``$Nx=line``: a stored start-up block (``$N`` print-out)."""

    index: int
    line: str


@dataclass(frozen=True)
class StartupLineResult:
    """``>G54G20:ok`` or ``>G54G20:error:N``: a start-up block ran at initialisation."""

    line: str
    error: int | None


@dataclass(frozen=True)
class ParserState:
    """``[GC:…]``: the G-code parser's modal state (answer to ``$G``).

    Attributes:
        words: every modal word as printed (``G0``, ``G54``, ``M5``, ``F0.``, …).
        motion: the motion mode (``G0``, ``G1``, ``G2``, ``G3``, ``G38.x``, ``G80``).
        spindle: ``M3``, ``M4`` or ``M5``.
        feed: the programmed ``F``.
        speed: the programmed ``S`` (laser power in laser mode).
    """

    words: tuple[str, ...]
    motion: str | None
    spindle: SpindleMode | None
    feed: float | None
    speed: float | None

    @property
    def laser_dynamic(self) -> bool:
        """``M4``: in laser mode, power scales with the real feed (dynamic mode)."""
        return self.spindle is SpindleMode.CCW

    @property
    def laser_enabled(self) -> bool:
        """``M3`` or ``M4``: the laser fires on G1/G2/G3 moves when ``S`` > 0."""
        return self.spindle in (SpindleMode.CW, SpindleMode.CCW)


@dataclass(frozen=True)
class Feedback:
    """A bracketed feedback line ``[KIND:text]`` other than ``[GC:…]``.

    ``kind`` is ``MSG`` (pushed events: ``Reset to continue``, ``Check Door``,
    ``Caution: Unlocked``…), ``VER``, ``OPT``, ``HLP``, ``echo``, ``G54``… ``PRB``.
    """

    kind: str
    text: str


GrblMessage = (
    StatusReport
    | Ok
    | ErrorResponse
    | AlarmMessage
    | Banner
    | Setting
    | StartupLineSetting
    | StartupLineResult
    | ParserState
    | Feedback
)

# ----------------------------------------------------------------------------- parsing

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_NUMBER_RE = re.compile(_NUMBER)
_INT_RE = re.compile(r"\d{1,9}")
_BANNER_RE = re.compile(r"Grbl(?:HAL)? (\d{1,3})\.(\d{1,3})([a-zA-Z]?)\S* \[.*help\]")
_ERROR_RE = re.compile(r"error:(\d{1,4})")
_ALARM_RE = re.compile(r"ALARM:(\d{1,4})")
_SETTING_RE = re.compile(rf"\$(\d{{1,4}})=({_NUMBER})")
_STARTUP_SETTING_RE = re.compile(r"\$N(\d)=(.*)")
_STARTUP_RESULT_RE = re.compile(r">(.*):(ok|error:(\d{1,4}))")
_FEEDBACK_RE = re.compile(r"\[([A-Za-z0-9]{1,8}):(.*)\]")
_PINS = frozenset("XYZABCPDHRS")
_ACCESSORIES = frozenset("SCFM")
_MOTION_WORDS = frozenset({"G0", "G1", "G2", "G3", "G38.2", "G38.3", "G38.4", "G38.5", "G80"})


def _number(text: str, what: str) -> float:
    if not _NUMBER_RE.fullmatch(text):
        raise DeviceProtocolError(f"GRBL {what}: {text!r} is not a number")
    return float(text)


def _integer(text: str, what: str) -> int:
    if not _INT_RE.fullmatch(text):
        raise DeviceProtocolError(f"GRBL {what}: {text!r} is not an integer")
    return int(text)


def _numbers(text: str, what: str, count: int | None = None) -> tuple[float, ...]:
    values = tuple(_number(part, what) for part in text.split(","))
    if count is not None and len(values) != count:
        raise DeviceProtocolError(f"GRBL {what}: expected {count} values, got {text!r}")
    if count is None and not 1 <= len(values) <= 6:
        raise DeviceProtocolError(f"GRBL {what}: {text!r} is not 1 to 6 axes")
    return values


def _letters(text: str, allowed: frozenset[str], what: str) -> frozenset[str]:
    letters = frozenset(text)
    if not text or not letters <= allowed:
        raise DeviceProtocolError(f"GRBL {what}: unexpected letters in {text!r}")
    return letters


def parse_status(line: str) -> StatusReport:
    """Parse a status report ``<State[:sub]|…>``.

    Raises:
        DeviceProtocolError: not enclosed in chevrons, unknown state, or a known
            field with malformed values.
    """
    if len(line) < 3 or line[0] != "<" or line[-1] != ">":
        raise DeviceProtocolError(f"GRBL status report not in chevrons: {line!r}")
    fields = line[1:-1].split("|")
    state_text, _, sub_text = fields[0].partition(":")
    try:
        state = GrblState(state_text)
    except ValueError as err:
        raise DeviceProtocolError(f"GRBL status: unknown machine state {state_text!r}") from err
    substate = _integer(sub_text, "substate") if sub_text else None
    mpos = wpos = wco = None
    feed = spindle = None
    buffer: tuple[int, int] | None = None
    line_number: int | None = None
    overrides: tuple[int, int, int] | None = None
    pins: frozenset[str] = frozenset()
    accessories: frozenset[str] | None = None
    for field in fields[1:]:
        name, sep, data = field.partition(":")
        if not sep:
            raise DeviceProtocolError(f"GRBL status: field {field!r} has no ':'")
        if name == "MPos":
            mpos = _numbers(data, "MPos")
        elif name == "WPos":
            wpos = _numbers(data, "WPos")
        elif name == "WCO":
            wco = _numbers(data, "WCO")
        elif name == "FS":
            feed, spindle = _numbers(data, "FS", 2)
        elif name == "F":
            (feed,) = _numbers(data, "F", 1)
        elif name == "Bf":
            blocks, rx = _integers(data, 2, "Bf")
            buffer = (blocks, rx)
        elif name == "Ln":
            line_number = _integer(data, "Ln")
        elif name == "Ov":
            feed_ov, rapid_ov, spindle_ov = _integers(data, 3, "Ov")
            overrides = (feed_ov, rapid_ov, spindle_ov)
        elif name == "Pn":
            pins = _letters(data, _PINS, "Pn")
        elif name == "A":
            accessories = _letters(data, _ACCESSORIES, "A")
        else:
            _LOGGER.debug("GRBL status: ignoring unknown field %r", field)
    return StatusReport(
        state=state,
        substate=substate,
        mpos=mpos,
        wpos=wpos,
        wco=wco,
        feed=feed,
        spindle=spindle,
        buffer=buffer,
        line_number=line_number,
        overrides=overrides,
        pins=pins,
        accessories=accessories,
    )


def _integers(data: str, count: int, what: str) -> tuple[int, ...]:
    parts = data.split(",")
    if len(parts) != count:
        raise DeviceProtocolError(f"GRBL {what}: expected {count} values, got {data!r}")
    return tuple(_integer(part, what) for part in parts)


def _parse_parser_state(text: str) -> ParserState:
    words = tuple(text.split())
    if not words:
        raise DeviceProtocolError("GRBL [GC:] message is empty")
    motion: str | None = None
    spindle: SpindleMode | None = None
    feed: float | None = None
    speed: float | None = None
    for word in words:
        if word in _MOTION_WORDS:
            motion = word
        elif word in ("M3", "M4", "M5"):
            spindle = SpindleMode(word)
        elif word[0] == "F":
            feed = _number(word[1:], "[GC:] F")
        elif word[0] == "S":
            speed = _number(word[1:], "[GC:] S")
    return ParserState(words=words, motion=motion, spindle=spindle, feed=feed, speed=speed)


def parse_line(line: str) -> GrblMessage:
    """Parse one line received from GRBL (without its line ending).

    Raises:
        DeviceProtocolError: the line is not a GRBL 1.1 message or is malformed.
    """
    line = line.strip()
    if not line:
        raise DeviceProtocolError("empty line from GRBL")
    if line == "ok":
        return Ok()
    if line[0] == "<":
        return parse_status(line)
    if match := _ERROR_RE.fullmatch(line):
        return ErrorResponse(int(match[1]))
    if match := _ALARM_RE.fullmatch(line):
        return AlarmMessage(int(match[1]))
    if match := _BANNER_RE.fullmatch(line):
        return Banner(
            version=f"{match[1]}.{match[2]}{match[3]}",
            major=int(match[1]),
            minor=int(match[2]),
            revision=match[3],
        )
    if match := _SETTING_RE.fullmatch(line):
        return Setting(int(match[1]), float(match[2]))
    if match := _STARTUP_SETTING_RE.fullmatch(line):
        return StartupLineSetting(int(match[1]), match[2])
    if match := _STARTUP_RESULT_RE.fullmatch(line):
        return StartupLineResult(match[1], int(match[3]) if match[3] else None)
    if match := _FEEDBACK_RE.fullmatch(line):
        kind, text = match[1], match[2]
        if kind == "GC":
            return _parse_parser_state(text)
        return Feedback(kind, text)
    raise DeviceProtocolError(f"unrecognised line from GRBL: {line[:80]!r}")


class LineSplitter:
    """Cuts GRBL's byte stream into text lines; noise never makes it grow unbounded.

    Lines end with ``\\n`` (GRBL sends ``\\r\\n``; a lone ``\\r`` is also accepted).
    Blank lines are skipped. Bytes outside ASCII are decoded as U+FFFD so that the
    parser rejects the line. A run longer than :data:`MAX_LINE_LENGTH` without a
    line ending is dropped up to the next line ending, and counted in
    :attr:`dropped`.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._discarding = False
        self.dropped = 0

    def reset(self) -> None:
        """Forget a partial line (after a reconnect it is meaningless)."""
        self._buffer.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[str]:
        """Add received bytes; return the lines they complete."""
        lines: list[str] = []
        for byte in data:
            if byte in (0x0A, 0x0D):
                if self._discarding:
                    self._discarding = False
                elif self._buffer:
                    text = self._buffer.decode("ascii", errors="replace").strip()
                    if text:
                        lines.append(text)
                self._buffer.clear()
            elif not self._discarding:
                self._buffer.append(byte)
                if len(self._buffer) > MAX_LINE_LENGTH:
                    self._buffer.clear()
                    self._discarding = True
                    self.dropped += 1
        return lines
