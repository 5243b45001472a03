"""The floor page without a browser: tiles per role, the alerts strip and its actions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.db.models import Alert, Machine, MachineKind, Role, Zone
from hub.web.core import csrf_token
from protocol.messages import Availability, MachineState, Telemetry
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
            machine="printer-1", availability=Availability.IN_USE, ts=now
        )
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


def test_coordinators_see_no_name_no_file_and_no_alerts(web: Api) -> None:
    add_session(web, "s-1", member_id=web.members[Role.MEMBER], machine_id="printer-1", ended=False)
    page = web.call("GET", "/plancher", Role.COORDINATOR).text
    assert 'data-state="occupe"' in page
    assert "Member" not in page
    assert "porte-cles" not in page
    assert 'id="alertes"' not in page


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
