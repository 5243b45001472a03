"""A print started from OctoPrint's own page records OctoPrint's user, for staff only.

The real OctoPrint's Virtual Printer, Mosquitto, the edge agent and the hub: OctoPrint's
job events carry the ``user`` who started the job; it reaches the staff-only job record
(``machine_job.controller_user``, ``/api/jobs`` for staff), never ``tele/+`` nor a log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from sqlalchemy import select

from hub.api.views import job_public
from hub.db.models import MachineJob, Role
from protocol.messages import JobEndedBody
from protocol.topics import Kind, Topics
from tests.conftest import Broker
from tests.devices.octoprint.conftest import OctoPrintServer, dwell_gcode
from tests.devices.octoprint.server import USER
from tests.edge.conftest import wait_until
from tests.edge.machines.conftest import journaled, staff_api
from tests.edge.machines.test_printer import PRINTER, octoprint_call, start_agent
from tests.edge.test_agent import Rig
from tests.hub.hubkit import Probe

pytestmark = [pytest.mark.broker, pytest.mark.octoprint]


def test_a_job_from_octoprints_page_records_its_user_for_staff_only(
    rig: Callable[..., Rig],
    octoprint: OctoPrintServer,
    mosquitto: Broker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    r = rig({"pi-a": 1})
    agent, _follower = start_agent(r, octoprint)
    tele = Probe(mosquitto.host, mosquitto.port, [Topics(r.site.site).all_edges(Kind.TELE)])
    tele.start()
    try:
        octoprint_call(
            octoprint,
            lambda c: c.upload("from-page.gcode", dwell_gcode(2, heat=False), print_=True),
        )
        wait_until(lambda: journaled(agent, JobEndedBody), 30, "the job ended")
    finally:
        tele.stop()
    (job,) = journaled(agent, JobEndedBody)
    assert (job.session_id, job.user) == (None, USER)
    wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 10, "acknowledged")
    with r.hub.factory() as s:
        (row,) = s.scalars(select(MachineJob).where(MachineJob.machine_id == PRINTER))
        assert row.controller_user == USER

    fabmanager = staff_api(r.hub, "fab", Role.FABMANAGER)
    headers = {"Authorization": f"Bearer {fabmanager.token}"}
    (seen,) = fabmanager.client.get("/api/jobs", headers=headers).json()["items"]
    assert seen["controller_user"] == USER
    with r.hub.factory() as s:  # any role that is not staff would not see it
        row = s.scalars(select(MachineJob)).one()
        assert job_public(row, None, Role.COORDINATOR, r.hub.settings).controller_user is None

    assert tele.messages, "telemetry was published meanwhile"
    assert all(USER not in m.payload.decode() for m in tele.messages)
    # Not in any of the project's logs, down to DEBUG (the websockets library's own
    # DEBUG frame dump is a third party's, off unless asked for).
    ours = ("devices", "edge", "hub", "protocol", "fabrique")
    leaked = [
        r.getMessage()
        for r in caplog.records
        if r.name.split(".")[0] in ours and USER in r.getMessage()
    ]
    assert leaked == []
