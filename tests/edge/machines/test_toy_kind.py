"""A new machine kind is one row and one small class: a toy kiln, end to end.

The test adds a ``kiln`` row to the edge's table of kinds (:data:`edge.kinds.KINDS`)
with a follower of a few lines, and runs it against the real broker and hub:
settings validation takes the row's device sections, the session uses the row's
preset, and the agent follows the kiln through the :class:`~edge.kinds.Follower`
protocol only (telemetry, a staff command, run time, faults) without a line of the
agent knowing the kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from pydantic import ValidationError

from devices.actuators import Actuator
from devices.registry import DeviceContext
from edge import kinds
from edge.kinds import Kind
from edge.kinds.base import CommandVerdict, Post, Run
from edge.outcomes import Refusal
from edge.session import SessionConfig
from edge.settings import MachineSettings
from protocol.messages import (
    Availability,
    EndReason,
    MachineAction,
    Outcome,
    Scalar,
    SessionEndedBody,
)
from tests.edge.conftest import advance, member_uid, present, state_of, wait_until
from tests.edge.machines.conftest import hub_state, journaled
from tests.edge.test_agent import Rig, actuator_of

pytestmark = pytest.mark.broker

MACHINE = "m-01"


class KilnFollower:
    """The toy kind's one class: a kiln with a thermometer, a program and a meter."""

    fault_sources = frozenset({"kiln"})

    def __init__(
        self, m: MachineSettings, ctx: DeviceContext, actuator: Actuator | None, post: Post
    ) -> None:
        self.temp_c = 21.0
        self.firing_s = 0.0
        self.error: str | None = None
        self.commands: list[MachineAction] = []

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def async_parts(self) -> Sequence[AbstractAsyncContextManager[Any]]:
        return ()

    def faults(self) -> dict[str, str]:
        return {"kiln": self.error} if self.error else {}

    def telemetry(self) -> dict[str, Scalar]:
        return {"kiln_c": self.temp_c}

    def tele_interval_s(self, default: float, in_use: bool) -> float:
        return default

    def command(self, action: MachineAction, run: Run) -> CommandVerdict:
        self.commands.append(action)
        return None if action is MachineAction.PAUSE else Refusal("unsupported")

    def run_time_s(self) -> float | None:
        return self.firing_s


KILN = Kind(
    name="kiln",
    preset=SessionConfig(cut_on_fault=True),
    needs=("actuator",),
    follower=KilnFollower,
    summary="a toy kiln: cut on fault, its firing time metered",
)


@pytest.fixture
def kiln_kind(monkeypatch: pytest.MonkeyPatch) -> Kind:
    monkeypatch.setitem(kinds.KINDS, KILN.name, KILN)
    return KILN


def test_the_kind_table_decides_which_devices_a_machine_takes(kiln_kind: Kind) -> None:
    reader = {"kind": "reader.sim"}
    with pytest.raises(ValidationError, match=r"demande un appareil \[machines\.actuator\]"):
        MachineSettings(id="k", kind="kiln", reader=reader)
    with pytest.raises(ValidationError, match="ne prend pas d'appareil laser"):
        MachineSettings(
            id="k",
            kind="kiln",
            reader=reader,
            actuator={"kind": "actuator.sim"},
            laser={"kind": "laser.simulated"},
        )
    with pytest.raises(ValidationError, match="type de machine inconnu 'oven'"):
        MachineSettings(id="k", kind="oven", reader=reader, actuator={"kind": "actuator.sim"})


def test_a_toy_kind_runs_a_session_end_to_end(kiln_kind: Kind, rig: Callable[..., Rig]) -> None:
    r = rig({"pi-a": 1})
    agent = r.online(r.agent("pi-a", [{"id": MACHINE, "kind": "kiln"}], tele_interval_s=0.5))
    kiln = agent.unit(MACHINE).follower
    assert isinstance(kiln, KilnFollower)
    act = actuator_of(agent, MACHINE)

    # A session: on with the grant, telemetry from the follower reaches the hub.
    present(agent, MACHINE, member_uid(1))
    wait_until(lambda: state_of(agent, MACHINE) == "active", 5, "session")
    assert act.history[-1] is True
    session_id = agent.view(MACHINE).session.session_id
    kiln.temp_c = 640.0
    assert r.hub.hub is not None
    hub = r.hub.hub

    def hub_sees_the_kiln() -> bool:
        tele = hub.machine_telemetry().get(MACHINE)
        return tele is not None and tele.values.get("kiln_c") == 640.0

    wait_until(hub_sees_the_kiln, 10, "kiln telemetry at the hub")

    # A staff command from the hub reaches the follower, whose answer comes back.
    pending = hub.machine_command(MACHINE, MachineAction.PAUSE)
    assert pending is not None
    outcome = pending.wait(10)
    assert outcome is not None
    assert outcome.outcome is Outcome.APPLIED
    assert kiln.commands == [MachineAction.PAUSE]
    pending = hub.machine_command(MACHINE, MachineAction.RESUME)
    assert pending is not None
    outcome = pending.wait(10)
    assert outcome is not None
    assert (outcome.outcome, outcome.code) == (Outcome.REFUSED, "unsupported")
    assert outcome.reason == "Cette machine ne sait pas faire ça."

    # Its fault cuts the machine (the row's preset) and ends the session; its run time
    # since the session started is journaled and metered.
    advance(r.clock, [agent], 90)
    kiln.firing_s = 75.5
    kiln.error = "thermocouple open"
    wait_until(lambda: state_of(agent, MACHINE) == "idle", 5, "fault ends the session")
    assert act.history[-1] is False
    (ended,) = journaled(agent, SessionEndedBody)
    assert ended.reason is EndReason.FAULT
    assert ended.run_s == pytest.approx(75.5)
    wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 10, "acknowledged")
    assert session_id is not None
    row = r.hub.sessions()[session_id]
    assert row.end_reason == EndReason.FAULT
    assert row.run_s == pytest.approx(75.5)
    wait_until(
        lambda: (
            (s := hub_state(r.hub, MACHINE)) is not None and s.availability is Availability.FAULT
        ),
        5,
        "the hub sees the fault",
    )

    # The fault source is the follower's: the agent clears it once it is gone.
    kiln.error = None
    wait_until(lambda: agent.view(MACHINE).availability is Availability.FREE, 5, "cleared")
