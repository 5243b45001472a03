"""GRBL 1.1 laser controllers: pure protocol, a polling driver, a run-time meter, an interlock.

See :mod:`devices.grbl.driver` for the threading model and the safety rules.
"""

from devices.grbl.driver import (
    AlarmRaised,
    Connected,
    ControllerReset,
    Disconnected,
    DoorOpened,
    GrblEvent,
    GrblLaser,
    GrblListener,
    GrblSnapshot,
    StateChanged,
)
from devices.grbl.interlock import LaserInterlock
from devices.grbl.meter import RunTimeMeter
from devices.grbl.protocol import (
    AlarmMessage,
    Banner,
    ErrorResponse,
    Feedback,
    GrblMessage,
    LineSplitter,
    MachineState,
    Ok,
    ParserState,
    Setting,
    SpindleMode,
    StartupLineResult,
    StartupLineSetting,
    StatusReport,
    parse_line,
    parse_status,
)

__all__ = [
    "AlarmMessage",
    "AlarmRaised",
    "Banner",
    "Connected",
    "ControllerReset",
    "Disconnected",
    "DoorOpened",
    "ErrorResponse",
    "Feedback",
    "GrblEvent",
    "GrblLaser",
    "GrblListener",
    "GrblMessage",
    "GrblSnapshot",
    "LaserInterlock",
    "LineSplitter",
    "MachineState",
    "Ok",
    "ParserState",
    "RunTimeMeter",
    "Setting",
    "SpindleMode",
    "StartupLineResult",
    "StartupLineSetting",
    "StateChanged",
    "StatusReport",
    "parse_line",
    "parse_status",
]
