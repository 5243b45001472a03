"""The seam between the REST API and the running hub service.

The API edits reference data in the store and asks the live service to act
(reload its directory, republish snapshots, send commands to edges) through this
Protocol. Tests of the API use :class:`NullControl`; the real implementation is
:class:`hub.service.Hub`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from protocol.messages import MachineAction, MachineState, Telemetry


class HubControl(Protocol):
    """What the API may ask of the running hub."""

    def reference_changed(self) -> None:
        """Reference data changed in the store: reload it and republish snapshots."""

    def end_session(self, session_id: str, message: str = "") -> bool:
        """Ask the session's edge to end it; False if the session is not open."""

    def machine_command(self, machine_id: str, action: MachineAction) -> bool:
        """Send a staff command to the machine's edge; False if the machine is unknown."""

    def machine_states(self) -> Mapping[str, MachineState]:
        """Latest retained state of every machine, by machine id."""

    def edges_online(self) -> Mapping[str, bool]:
        """Liveness of every edge seen, by edge id."""

    def machine_telemetry(self) -> Mapping[str, Telemetry]:
        """Latest valid telemetry of every machine, by machine id (never for metering)."""


class NullControl:
    """A hub that is not running: accepts everything, knows nothing live."""

    def __init__(self) -> None:
        self.changes = 0

    def reference_changed(self) -> None:
        self.changes += 1

    def end_session(self, session_id: str, message: str = "") -> bool:
        return False

    def machine_command(self, machine_id: str, action: MachineAction) -> bool:
        return False

    def machine_states(self) -> Mapping[str, MachineState]:
        return {}

    def edges_online(self) -> Mapping[str, bool]:
        return {}

    def machine_telemetry(self) -> Mapping[str, Telemetry]:
        return {}
