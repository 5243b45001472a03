"""Fixtures of the machine tests, reused from where they live (never copied):

* a pseudo-terminal standing in for a serial port (``pty_port``, for the scripted
  GRBL peer), from ``tests/devices/conftest.py``;
* a local HTTP peer speaking the Shelly Gen2 RPC API (``shelly``), from
  ``tests/devices/test_shelly.py``;
* the seeded hub on a fake clock and its agents (``rig``), from
  ``tests/edge/test_agent.py``.

Fixtures imported into a conftest are registered for every test below it. A
session-scoped fixture imported here would be a fixture of its own, so the real
OctoPrint 1.11 with its Virtual Printer (``octoprint_server``, ``octoprint``, the
``octoprint`` marker) is not imported: it comes from the suite's plugin
:mod:`tests.devices.octoprint.server` (``tests/conftest.py``), one server per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select

from hub.api.app import create_app
from hub.api.auth import create_account, issue_token
from hub.db.models import Alert, EdgeEvent, Role
from protocol.messages import MachineState
from tests.devices.conftest import pty_port
from tests.devices.test_shelly import shelly
from tests.edge.conftest import HubRunner
from tests.edge.test_agent import rig

__all__ = [
    "StaffApi",
    "alerts_of",
    "hub_events",
    "hub_state",
    "journaled",
    "open_alerts",
    "pty_port",
    "rig",
    "shelly",
    "staff_api",
]

B = TypeVar("B")


# --------------------------------------------------------------------------- helpers


@dataclass
class StaffApi:
    """The REST API in front of the running hub (its real HubControl), as one staff
    member (an animator unless told)."""

    client: TestClient
    account_id: int
    username: str
    token: str

    def post(self, path: str) -> Any:
        return self.client.post(path, headers={"Authorization": f"Bearer {self.token}"})

    def command(self, machine: str, action: str) -> Any:
        """``POST /api/machines/{machine}/commands``: waits for the edge's answer."""
        return self.client.post(
            f"/api/machines/{machine}/commands",
            json={"action": action},
            headers={"Authorization": f"Bearer {self.token}"},
        )


def staff_api(hub: HubRunner, username: str = "anim", role: Role = Role.ANIMATOR) -> StaffApi:
    """A staff member's API client on ``hub`` (which must be running)."""
    assert hub.hub is not None
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    app = create_app(hub.settings, hub.factory, hub.hub, password_hasher=hasher)
    with hub.factory() as s:
        account = create_account(s, username, "correct horse battery", role, None, hasher=hasher)
        token, _ = issue_token(s, hub.settings, account)
        account_id = account.id
        s.commit()
    return StaffApi(TestClient(app), account_id, username, token)


def journaled(agent: Any, body: type[B]) -> list[B]:
    """The bodies of type ``body`` in ``agent``'s journal, in order."""
    return [e.body for e in agent.journal.replay_from(1, limit=100_000) if isinstance(e.body, body)]


def hub_events(hub: HubRunner, edge: str, kind: str) -> list[dict[str, Any]]:
    """The bodies of the ``edge_event`` rows of ``kind`` the hub accepted from ``edge``."""
    with hub.factory() as s:
        rows = s.scalars(
            select(EdgeEvent)
            .where(EdgeEvent.edge_id == edge, EdgeEvent.type == kind)
            .order_by(EdgeEvent.seq)
        ).all()
        return [dict(row.body) for row in rows]


def hub_state(hub: HubRunner, machine: str) -> MachineState | None:
    """The machine's retained state as the hub holds it."""
    assert hub.hub is not None
    return hub.hub.machine_states().get(machine)


def alerts_of(hub: HubRunner, machine: str) -> list[tuple[str, bool]]:
    """The machine's alert rows, oldest first: (kind, still open)."""
    with hub.factory() as s:
        rows = s.scalars(select(Alert).where(Alert.machine_id == machine).order_by(Alert.id))
        return [(a.kind, a.resolved_at is None) for a in rows]


def open_alerts(hub: HubRunner, machine: str) -> list[str]:
    return [kind for kind, still_open in alerts_of(hub, machine) if still_open]
