"""The seam between the REST API and the running hub service.

The API edits reference data in the store and asks the live service to act
(reload its directory, republish snapshots, send commands to edges) through this
Protocol. Tests of the API use :class:`NullControl`; the real implementation is
:class:`hub.service.Hub`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

from hub.enrolment import Enrolment, Enrolments
from hub.policy.model import Decision
from protocol.messages import CommandOutcome, MachineAction, MachineState, Telemetry, utcnow


class CommandWait(Protocol):
    """A command sent to an edge (:class:`hub.commands.PendingCommand`)."""

    def wait(self, timeout: float | None = None) -> CommandOutcome | None:
        """The edge's outcome, ``None`` when it did not answer in time."""
        ...


class HubControl(Protocol):
    """What the API may ask of the running hub."""

    def reference_changed(self) -> None:
        """Reference data changed in the store: reload it and republish snapshots."""

    def end_session(self, session_id: str, message: str = "") -> CommandWait | None:
        """Ask the session's edge to end it; None if the session is not open or the
        command was not sent."""

    def extend_session(
        self, session_id: str, minutes: int, message: str = ""
    ) -> CommandWait | None:
        """Ask the session's edge to give it ``minutes`` more; None if not sent."""

    def machine_command(
        self, machine_id: str, action: MachineAction, by: int | None = None
    ) -> CommandWait | None:
        """Send a staff command (``by``: the staff account) to the machine's edge; None
        if the machine is unknown or the command was not sent."""

    def machine_states(self) -> Mapping[str, MachineState]:
        """Latest retained state of every machine, by machine id."""

    def edges_online(self) -> Mapping[str, bool]:
        """Liveness of every edge seen, by edge id."""

    def machine_telemetry(self) -> Mapping[str, Telemetry]:
        """Latest valid telemetry of every machine, by machine id (never for metering)."""

    def running_job_files(self) -> Mapping[str, str | None]:
        """The file name of the job running on each machine with one, from its
        ``job_started`` record (staff only: a file name may name a child)."""

    def subscribe_changes(self, listener: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``listener(machine_id, what)`` after each live change (see
        :meth:`hub.live.LiveState.subscribe`); returns the unsubscriber."""

    def last_decision(self, machine_id: str) -> tuple[datetime, Decision] | None:
        """The last access decision sent for the machine, and when."""

    def arm_enrolment(
        self, machine_id: str, member_id: int, first_name: str, account_id: int
    ) -> Enrolment | None:
        """Bind the next badge seen on ``machine_id`` to the member; None: unknown machine."""

    def enrolment(self, token: str) -> Enrolment | None:
        """An armed enrolment and its outcome (see :mod:`hub.enrolment`)."""

    def cancel_enrolment(self, token: str) -> None:
        """Stop waiting for a badge."""


class NullControl:
    """A hub that is not running: accepts everything, knows nothing live.

    Enrolments can be armed (the pages render) but no badge is ever captured.
    """

    def __init__(self) -> None:
        self.changes = 0
        self.enrolments = Enrolments()

    def reference_changed(self) -> None:
        self.changes += 1

    def end_session(self, session_id: str, message: str = "") -> CommandWait | None:
        return None

    def extend_session(
        self, session_id: str, minutes: int, message: str = ""
    ) -> CommandWait | None:
        return None

    def machine_command(
        self, machine_id: str, action: MachineAction, by: int | None = None
    ) -> CommandWait | None:
        return None

    def machine_states(self) -> Mapping[str, MachineState]:
        return {}

    def edges_online(self) -> Mapping[str, bool]:
        return {}

    def machine_telemetry(self) -> Mapping[str, Telemetry]:
        return {}

    def running_job_files(self) -> Mapping[str, str | None]:
        return {}

    def subscribe_changes(self, listener: Callable[[str, str], None]) -> Callable[[], None]:
        return lambda: None

    def last_decision(self, machine_id: str) -> tuple[datetime, Decision] | None:
        return None

    def arm_enrolment(
        self, machine_id: str, member_id: int, first_name: str, account_id: int
    ) -> Enrolment | None:
        return self.enrolments.arm(machine_id, "", member_id, first_name, account_id, utcnow())

    def enrolment(self, token: str) -> Enrolment | None:
        return self.enrolments.get(token, utcnow())

    def cancel_enrolment(self, token: str) -> None:
        self.enrolments.cancel(token)
