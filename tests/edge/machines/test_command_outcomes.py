"""Staff commands answer what really happened: real OctoPrint, Mosquitto, edge, hub, API.

Each ``cmd/machine`` and ``cmd/session`` is answered by the edge on ``outcome``; the
API waits for that answer and returns it (200 applied, 409 refused with a stable
code and the edge's French reason, 504 no answer). Before, every command the broker
took was ``delivered: true``, whether OctoPrint refused it or not.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edge.agent import Agent
from protocol.messages import EndReason, MachineAction
from tests.conftest import Broker
from tests.devices.octoprint.conftest import OctoPrintServer, dwell_gcode
from tests.edge.conftest import state_of, wait_until
from tests.edge.machines.conftest import staff_api
from tests.edge.machines.test_printer import PRINTER, badge_in, octoprint_call, start_agent
from tests.edge.test_agent import Rig, actuator_of

pytestmark = [pytest.mark.broker, pytest.mark.octoprint]


def test_printer_commands_answer_what_octoprint_did(
    rig: Callable[..., Rig], octoprint: OctoPrintServer, mosquitto: Broker
) -> None:
    r = rig({"pi-a": 1})
    agent: Agent
    agent, follower = start_agent(r, octoprint)
    api = staff_api(r.hub)

    # No print: OctoPrint refuses the pause (HTTP 409); the API says so, in French.
    no_job = api.command(PRINTER, "pause")
    assert no_job.status_code == 409, no_job.text
    assert no_job.json() == {
        "detail": "Aucune impression en cours : rien à mettre en pause.",
        "code": "no_job",
    }
    assert api.command(PRINTER, "cancel").json()["code"] == "no_job"
    # A printer has no re-arm: refused by its kind, OctoPrint is not asked.
    rearm = api.command(PRINTER, "rearm")
    assert (rearm.status_code, rearm.json()["code"]) == (409, "unsupported")
    assert "laser" in rearm.json()["detail"]

    session_id = badge_in(r, agent)
    octoprint_call(
        octoprint, lambda c: c.upload("long.gcode", dwell_gcode(60, heat=False), print_=True)
    )
    wait_until(lambda: follower.snapshot.state == "Printing", 10, "printing")
    paused = api.command(PRINTER, "pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["outcome"] == "applied"
    wait_until(lambda: follower.snapshot.flags.paused, 10, "paused in OctoPrint")
    resumed = api.command(PRINTER, "resume")
    assert resumed.status_code == 200, resumed.text
    wait_until(lambda: not follower.snapshot.flags.paused, 10, "printing again")

    # A session command, answered once the edge ended the session.
    ended = api.post(f"/api/sessions/{session_id}/extend?minutes=10")
    assert ended.status_code == 200, ended.text
    cancelled = api.command(PRINTER, "cancel")
    assert cancelled.status_code == 200, cancelled.text
    wait_until(lambda: state_of(agent, PRINTER) == "idle", 15, "cancelled: session ended")
    assert actuator_of(agent, PRINTER).history[-1] is False
    # The session is over on the edge: extending it is refused there (or by the ledger).
    late = api.post(f"/api/sessions/{session_id}/extend?minutes=10")
    assert late.status_code == 409, late.text
    wait_until(
        lambda: r.hub.sessions()[session_id].end_reason == EndReason.STAFF_CANCEL, 10, "closed"
    )


def test_a_plug_answers_maintenance_and_refuses_print_commands(
    rig: Callable[..., Rig], mosquitto: Broker
) -> None:
    r = rig({"pi-a": 1})
    agent = r.online(r.agent("pi-a"))
    api = staff_api(r.hub)
    pause = api.command("m-01", "pause")
    assert pause.status_code == 409
    assert pause.json() == {
        "detail": "Cette machine n'a pas de pilote : la commande est sans effet.",
        "code": "no_driver",
    }
    on = api.client.post(
        "/api/machines/m-01/maintenance",
        json={"on": True},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert on.status_code == 200, on.text
    assert (on.json()["delivered"], on.json()["outcome"]) == (True, "applied")
    wait_until(lambda: state_of(agent, "m-01") == "maintenance", 5, "maintenance")
    # The edge is gone: the hub waits its bound (command_outcome_wait_s), then says so.
    agent.stop()
    hub = r.hub.hub
    assert hub is not None
    pending = hub.machine_command("m-01", MachineAction.MAINTENANCE_OFF)
    assert pending is not None  # the broker took it
    assert pending.wait(0.5) is None
    assert len(hub.waiters) == 0  # nothing left waiting
