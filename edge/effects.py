"""What the session state machine asks the agent to do: the effects, executed in order.

Every input of :class:`~edge.session.SessionMachine` returns a list of these
values; the agent executes them **in order** (an :class:`Append` is committed to
the journal before the effect that follows it: never act on what is not
journaled). :class:`JobReport` is the input a driver gives when a job ends.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from protocol.messages import JobResult, MachineAction, Outcome

if TYPE_CHECKING:
    from edge.journal import EventBody

__all__ = [
    "Answer",
    "Append",
    "DecideOffline",
    "DriverCommand",
    "Effect",
    "Feedback",
    "FeedbackKind",
    "JobReport",
    "Lock",
    "PowerOff",
    "PowerOn",
    "RequestAccess",
    "Unlock",
]


@dataclass(frozen=True, slots=True)
class Append:
    """Journal this event body (durably) before executing the following effects."""

    body: EventBody


@dataclass(frozen=True, slots=True)
class PowerOn:
    """Close the machine's relay or switch its plug on."""


@dataclass(frozen=True, slots=True)
class PowerOff:
    """Open the machine's relay or switch its plug off."""


@dataclass(frozen=True, slots=True)
class Lock:
    """Lock the gaming PC's session (never a power cut)."""


@dataclass(frozen=True, slots=True)
class Unlock:
    """Unlock the gaming PC's session."""


class FeedbackKind(enum.StrEnum):
    """How the reader shows a message (colour, sound)."""

    GRANT = "grant"
    DENY = "deny"
    WARN = "warn"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Feedback:
    """Show ``message`` (French, for the member) at the machine."""

    kind: FeedbackKind
    message: str


@dataclass(frozen=True, slots=True)
class RequestAccess:
    """Ask the hub about ``badge`` (an :class:`~protocol.messages.AccessRequest`)."""

    req_id: str
    badge: str


@dataclass(frozen=True, slots=True)
class DecideOffline:
    """Decide alone (:func:`edge.offline.decide_offline`), then call ``offline_verdict``."""

    req_id: str
    badge: str


@dataclass(frozen=True, slots=True)
class DriverCommand:
    """Forward a staff command (pause, resume, cancel, re-arm) to the machine driver.

    The driver's kind answers it (:class:`Answer`), at once or when the driver has.
    """

    cmd_id: str
    action: MachineAction
    by: int | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """Tell the hub what became of command ``cmd_id`` (a ``CommandOutcome``).

    ``code`` is stable (docs/machines.md lists them), ``reason`` French, for staff.
    """

    cmd_id: str
    outcome: Outcome
    code: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class JobReport:
    """A job (a print) that ended, as the driver saw it (input of ``job_ended``).

    Attributes:
        name: the job's file name.
        result: done, failed, cancelled or lost.
        duration_s: the job's own duration (the controller's print time when known).
        filament_mm: filament used, ``None`` when unknown.
        filament_estimated: ``filament_mm`` is scaled from progress (the job did
            not finish).
        user: the controller's user who started it (OctoPrint's), when it says.
    """

    name: str
    result: JobResult
    duration_s: float
    filament_mm: float | None = None
    filament_estimated: bool = False
    user: str | None = field(default=None, repr=False)


#: Everything the machine may ask the agent to do.
Effect = (
    Answer
    | Append
    | PowerOn
    | PowerOff
    | Lock
    | Unlock
    | Feedback
    | RequestAccess
    | DecideOffline
    | DriverCommand
)
