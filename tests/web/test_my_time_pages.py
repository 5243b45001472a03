""" "Mon temps" through FastAPI's TestClient: a code given by staff opens one member's page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from hub.db.models import (
    Machine,
    MachineKind,
    MachineTraining,
    Member,
    MemberTraining,
    Quota,
    Role,
    Slot,
    Training,
    Zone,
)
from tests.hub.api.conftest import Api, add_session, build_api
from tests.web.test_members_pages import form, text


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Api]:
    for api in build_api(f"sqlite:///{tmp_path / 'hub.db'}"):
        with api.db() as s:
            s.add_all([Zone(id="gaming", name="Salle de jeux"), Training(id="laser", name="Laser")])
            s.flush()
            s.add(
                Machine(
                    id="pc-1",
                    name="PC 1",
                    kind=MachineKind.GAMING_PC,
                    zone_id="gaming",
                    edge_id="e1",
                )
            )
            s.add(
                Machine(
                    id="laser-1",
                    name="Laser Trotec",
                    kind=MachineKind.LASER,
                    zone_id="gaming",
                    edge_id="e1",
                )
            )
            s.flush()
            s.add(MachineTraining(machine_id="laser-1", training_id="laser"))
            s.add(
                Quota(
                    zone_id="gaming",
                    age_group="9-15",
                    daily_min=90,
                    break_after_min=60,
                    break_min=10,
                )
            )
            for weekday in range(7):
                s.add(
                    Slot(
                        zone_id="gaming",
                        weekday=weekday,
                        start=time(0),
                        end=time(0),
                        label="Toujours",
                    )
                )
            ines = Member(
                display_name="Inès B.", birth_year=2013, birth_month=3, consent_at=date(2025, 9, 1)
            )
            other = Member(display_name="Yanis M.", birth_year=2013, birth_month=4)
            s.add_all([ines, other])
            s.flush()
            ines.trainings.append(MemberTraining(training_id="laser", granted_on=date.today()))
            s.commit()
            ids = (ines.id, other.id)
        add_session(
            api,
            "g-1",
            member_id=ids[0],
            machine_id="pc-1",
            zone_id="gaming",
            used_s=1800,
            started_at=datetime.now(UTC) - timedelta(seconds=5),  # today, whatever the hour
            age_group="9-15",
            machine_kind="gaming_pc",
        )
        add_session(
            api,
            "g-2",
            member_id=ids[1],
            machine_id="pc-1",
            zone_id="gaming",
            used_s=3000,
            started_at=datetime.now(UTC) - timedelta(hours=3),
            age_group="9-15",
            machine_kind="gaming_pc",
        )
        api.ids = ids  # type: ignore[attr-defined]
        yield api


def give_code(api: Api, member_id: int, role: Role = Role.ANIMATOR) -> str:
    answer = form(api, "/mon-temps/codes", {"member_id": str(member_id)}, role)
    assert answer.status_code == 200, answer.text
    found = re.search(r'class="the-code">(\d{3}) (\d{3})<', answer.text)
    assert found is not None, answer.text
    return found.group(1) + found.group(2)


def test_a_code_opens_the_members_page_once(web: Api) -> None:
    ines, _ = web.ids  # type: ignore[attr-defined]
    code = give_code(web, ines)
    web.client.cookies.clear()
    anonymous = web.client.get("/mon-temps")
    assert "Demande ton code" in anonymous.text
    opened = web.client.post("/mon-temps/code", data={"code": code}, follow_redirects=True)
    page = text(opened.text)
    assert "Bonjour Inès !" in page
    assert "60 min restantes aujourd'hui" in page  # 90 min quota, 30 used
    assert "Tu peux utiliser : Laser Trotec" in page
    assert "Yanis" not in opened.text
    assert "maintenant" in page  # an always-open slot
    web.client.post("/mon-temps/sortir")
    web.client.cookies.clear()
    again = web.client.post("/mon-temps/code", data={"code": code}, follow_redirects=True)
    assert "Ce code ne marche pas" in again.text


def test_guessing_codes_is_throttled(web: Api) -> None:
    ines, _ = web.ids  # type: ignore[attr-defined]
    code = give_code(web, ines)
    web.client.cookies.clear()
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        web.client.post("/mon-temps/code", data={"code": wrong})
    blocked = web.client.post("/mon-temps/code", data={"code": code}, follow_redirects=True)
    assert "Trop d'essais" in blocked.text
    assert "Bonjour" not in blocked.text


def test_a_forged_cookie_opens_nothing(web: Api) -> None:
    ines, other = web.ids  # type: ignore[attr-defined]
    code = give_code(web, ines)
    web.client.cookies.clear()
    web.client.post("/mon-temps/code", data={"code": code})
    value = web.client.cookies.get("fabrique_mon_temps")
    assert value is not None
    forged = value.replace(f"{ines}.", f"{other}.", 1)
    web.client.cookies.clear()
    web.client.cookies.set("fabrique_mon_temps", forged, path="/mon-temps")
    assert "Demande ton code" in web.client.get("/mon-temps").text


def test_members_cannot_give_codes(web: Api) -> None:
    ines, _ = web.ids  # type: ignore[attr-defined]
    answer = form(web, "/mon-temps/codes", {"member_id": str(ines)}, Role.MEMBER)
    assert answer.status_code == 403
    assert web.get("/mon-temps/codes?q=In", Role.COORDINATOR).status_code == 403
