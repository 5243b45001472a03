"""The floor page without a browser: tiles per role, the alerts strip and its actions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.db.models import Alert, Machine, MachineKind, Role, Zone
from hub.web.core import csrf_token
from protocol.messages import Availability, MachineAction, MachineDetail, MachineState, Telemetry
from tests.hub.api.conftest import Api, add_session, build_api


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Api]:
    for api in build_api(f"sqlite:///{tmp_path / 'hub.db'}"):
        with api.db() as s:
            s.add(Zone(id="fablab", name="FabLab"))
            s.flush()
            s.add(
                Machine(
                    id="printer-1",
                    name="Prusa",
                    kind=MachineKind.PRINTER,
                    zone_id="fablab",
                    edge_id="e1",
                )
            )
            s.add(Alert(kind="machine_fault", machine_id="printer-1", detail="buse"))
            s.commit()
        now = datetime.now(UTC)
        api.control.edges["e1"] = True
        api.control.states["printer-1"] = MachineState(
            machine="printer-1",
            availability=Availability.IN_USE,
            detail=MachineDetail(kind="printer", state="active", job=True),
            ts=now,
        )
        # The running job's record (job_started, journaled to the hub only).
        api.control.job_files["printer-1"] = "vase-lea.gcode"
        api.control.telemetry["printer-1"] = Telemetry(
            machine="printer-1",
            ts=now,
            values={
                "state": "Printing",
                "nozzle_c": 214.6,
                "nozzle_target_c": 215.0,
                "bed_c": 59.8,
                "bed_target_c": 60.0,
                "progress": 42.5,
                "time_left_s": 1800,
                "file": "porte-cles.gcode",
            },
        )
        yield api


def test_staff_see_the_printer_the_name_and_the_file(web: Api) -> None:
    add_session(web, "s-1", member_id=web.members[Role.MEMBER], machine_id="printer-1", ended=False)
    page = web.call("GET", "/plancher", Role.ANIMATOR).text
    assert 'id="tile-printer-1" data-state="occupe"' in page
    assert "Occupé par Member" in page
    assert "214,6 / 215,0 °C" not in page  # whole degrees
    assert "215 / 215 °C" in page
    assert "60 / 60 °C" in page
    assert 'value="42.5"' in page
    assert "reste 30 min" in page
    assert "porte-cles" not in page  # an older edge's file name stays off the floor
    assert '<dd class="file">vase-lea.gcode</dd>' in page  # the job's own record


def test_coordinators_see_no_name_no_file_and_no_alerts(web: Api) -> None:
    add_session(web, "s-1", member_id=web.members[Role.MEMBER], machine_id="printer-1", ended=False)
    page = web.call("GET", "/plancher", Role.COORDINATOR).text
    assert 'data-state="occupe"' in page
    assert "Member" not in page
    assert "porte-cles" not in page
    assert "vase-lea" not in page
    assert 'id="alertes"' not in page


def test_a_job_nobody_badged_for_shows_running_without_a_session(web: Api) -> None:
    web.control.states["printer-1"] = MachineState(
        machine="printer-1",
        availability=Availability.IN_USE,
        detail=MachineDetail(kind="printer", state="idle", job=True, foreign_job=True),
        ts=datetime.now(UTC),
    )
    for role in (Role.ANIMATOR, Role.COORDINATOR):
        page = web.call("GET", "/plancher", role).text
        assert 'id="tile-printer-1" data-state="sans-session"' in page
        assert "En cours sans session" in page
        assert ("vase-lea.gcode" in page) is (role is Role.ANIMATOR)


def test_an_alert_is_seen_then_resolved(web: Api) -> None:
    page = web.call("GET", "/plancher", Role.FABMANAGER).text
    assert "Machine en défaut" in page
    assert ">Vu</button>" in page
    with web.db() as s:
        alert_id = s.query(Alert.id).scalar()
    csrf = csrf_token(web.settings, web.tokens[Role.FABMANAGER])
    seen = web.call(
        "POST", f"/alertes/{alert_id}/vu", Role.FABMANAGER, data={"csrf": csrf},
        follow_redirects=False,
    )  # fmt: skip
    assert seen.status_code == 303
    with web.db() as s:
        alert = s.get(Alert, alert_id)
        assert alert is not None
        assert alert.seen_at is not None
        assert alert.resolved_at is None
    page = web.call("GET", "/plancher", Role.FABMANAGER).text
    assert "Machine en défaut" in page
    assert ">Vu</button>" not in page
    web.call("POST", f"/alertes/{alert_id}/resolu", Role.FABMANAGER, data={"csrf": csrf})
    with web.db() as s:
        alert = s.get(Alert, alert_id)
        assert alert is not None
        assert alert.resolved_at is not None
    assert "Machine en défaut" not in web.call("GET", "/plancher", Role.FABMANAGER).text


@pytest.mark.parametrize(
    ("grbl", "shown"), [("Idle", "au repos"), ("Door:1", "capot ouvert"), ("Alarm", "alarme")]
)
def test_a_lasers_grbl_state_reads_in_french(web: Api, grbl: str, shown: str) -> None:
    with web.db() as s:
        s.add(
            Machine(
                id="laser-1", name="Trotec", kind=MachineKind.LASER, zone_id="fablab", edge_id="e1"
            )
        )
        s.commit()
    now = datetime.now(UTC)
    web.control.states["laser-1"] = MachineState(
        machine="laser-1", availability=Availability.FREE, ts=now
    )
    web.control.telemetry["laser-1"] = Telemetry(
        machine="laser-1", ts=now, values={"state": grbl, "firing": False, "run_time_s": 12.0}
    )
    page = web.call("GET", "/plancher", Role.FABMANAGER).text
    tile = page[page.index('id="tile-laser-1"') :]
    tile = tile[: tile.index("</article>")]
    assert f"<dt>Laser</dt><dd>{shown}</dd>" in tile
    assert f">{grbl}<" not in tile
    assert f">{grbl.lower()}<" not in tile


def test_every_end_reason_has_a_french_label() -> None:
    from hub.web.machine import END_REASONS
    from protocol.messages import EndReason

    assert set(END_REASONS) == {r.value for r in EndReason}


def test_a_printer_whose_octoprint_is_gone_shows_it(web: Api) -> None:
    web.control.states["printer-1"] = MachineState(
        machine="printer-1",
        availability=Availability.FAULT,
        detail=MachineDetail(
            kind="printer", state="active", job=True, faults=("printer_unreachable",)
        ),
        ts=datetime.now(UTC),
    )
    page = web.call("GET", "/plancher", Role.ANIMATOR).text
    assert 'id="tile-printer-1" data-state="defaut"' in page
    assert "<dd>OctoPrint ne répond plus</dd>" in page


def test_a_laser_waiting_for_a_re_arm_offers_staff_the_re_arm(web: Api) -> None:
    with web.db() as s:
        s.add(
            Machine(
                id="laser-1", name="Trotec", kind=MachineKind.LASER, zone_id="fablab", edge_id="e1"
            )
        )
        s.commit()
    web.control.states["laser-1"] = MachineState(
        machine="laser-1",
        availability=Availability.FAULT,
        detail=MachineDetail(kind="laser", state="idle", faults=("rearm",)),
        ts=datetime.now(UTC),
    )
    page = web.call("GET", "/machines/laser-1", Role.ANIMATOR).text
    assert "à réarmer par l&#39;équipe" in page or "à réarmer par l'équipe" in page
    assert "Réarmer le laser" in page
    # The command goes to the API's route (and its edge's answer is shown).
    form = web.call("GET", "/machines/laser-1/confirmer?action=rearm", Role.ANIMATOR).text
    assert "Vérifie d&#39;abord la machine" in form or "Vérifie d'abord la machine" in form
    csrf = form.split('name="csrf" value="')[1].split('"')[0]
    done = web.call(
        "POST",
        "/machines/laser-1/commande",
        Role.ANIMATOR,
        data={"csrf": csrf, "action": "rearm"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert web.control.commands[-1] == ("laser-1", MachineAction.REARM)
    assert web.control.by[-1] == web.accounts[Role.ANIMATOR]
    # A free laser offers no re-arm.
    web.control.states["laser-1"] = MachineState(
        machine="laser-1", availability=Availability.FREE, ts=datetime.now(UTC)
    )
    assert "Réarmer le laser" not in web.call("GET", "/machines/laser-1", Role.ANIMATOR).text
