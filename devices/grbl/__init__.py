"""GRBL 1.1 laser controllers: pure protocol, a polling driver, a run-time meter, an interlock.

See :mod:`devices.grbl.driver` for the threading model and the safety rules, and
:mod:`devices.grbl.simulated` for a simulated GRBL 1.1 on a pty (the demo's laser).
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
    GrblState,
    LineSplitter,
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
from devices.grbl.simulated import GrblPeer, SimulatedGrblLaser

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
    "GrblPeer",
    "GrblSnapshot",
    "GrblState",
    "LaserInterlock",
    "LineSplitter",
    "Ok",
    "ParserState",
    "RunTimeMeter",
    "Setting",
    "SimulatedGrblLaser",
    "SpindleMode",
    "StartupLineResult",
    "StartupLineSetting",
    "StateChanged",
    "StatusReport",
    "parse_line",
    "parse_status",
]
