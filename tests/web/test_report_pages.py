"""The report page through FastAPI's TestClient: totals, small groups, chart, CSV."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.db.models import Member, Programme, Role
from tests.hub.api.conftest import Api, add_session, build_api
from tests.web.test_members_pages import text


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Api]:
    for api in build_api(f"sqlite:///{tmp_path / 'hub.db'}"):
        with api.db() as s:
            s.add(Programme(id="fablab-9-15", name="FabLab 9/15"))
            people = [
                Member(display_name=f"Enfant{i} Z.", birth_year=2013, birth_month=1)
                for i in range(6)
            ] + [Member(display_name="Adulte Seul", birth_year=1990, birth_month=1)]
            s.add_all(people)
            s.commit()
            ids = [m.id for m in people]
        start = datetime.now(UTC) - timedelta(days=1)
        for n, member_id in enumerate(ids[:6]):
            add_session(
                api,
                f"kid-{n}",
                member_id=member_id,
                used_s=1800,
                started_at=start,
                age_group="9-15",
                programmes=["fablab-9-15"],
            )
        add_session(api, "adult", member_id=ids[6], used_s=7200, started_at=start, age_group="26+")
        yield api


def test_a_coordinator_sees_totals_without_small_groups_nor_names(web: Api) -> None:
    page = web.get("/rapports?par=age_group", Role.COORDINATOR)
    assert page.status_code == 200
    body = text(page.text)
    assert "9-15 ans" in body
    assert "1 autre groupe" in body
    assert "< 5 participants chacun" in body
    assert "26+ ans" not in body.split("Totaux par tranche")[1]
    for name in ("Enfant", "Adulte", "Seul"):
        assert name not in page.text
    # The chart: one bar for 9-15 (3 h), none for the lone adult.
    bars = re.findall(r"<rect [^>]*><title>([^<]*)</title>", page.text)
    assert any("9-15 ans, 3 h" in b for b in bars), bars
    assert not any("26+" in b for b in bars)
    assert "&lt; 5 pers." in page.text


def test_a_fabmanager_sees_every_group(web: Api) -> None:
    body = text(web.get("/rapports?par=age_group", Role.FABMANAGER).text)
    assert "26+ ans" in body
    assert "autre groupe" not in body


def test_the_csv_link_downloads_the_same_totals(web: Api) -> None:
    page = web.get("/rapports?par=programme", Role.COORDINATOR).text
    link = re.search(r'href="(/api/usage/report\.csv\?[^"]+)"', page)
    assert link is not None
    csv = web.get(link.group(1).replace("&amp;", "&"), Role.COORDINATOR)
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.lstrip("\ufeff").splitlines()
    assert lines[0].startswith("site;du;au;programme;programme_libelle;participants")
    assert any(";fablab-9-15;FabLab 9/15;6;6;6;3,00;" in line for line in lines), lines


def test_a_wrong_date_is_said_next_to_the_field(web: Api) -> None:
    page = web.get("/rapports?du=hier", Role.COORDINATOR)
    assert page.status_code == 200
    assert 'id="err-du"' in page.text


@pytest.mark.parametrize("role", [Role.ANIMATOR, Role.MEMBER])
def test_who_may_not_open_the_reports(web: Api, role: Role) -> None:
    assert web.get("/rapports", role).status_code == 403
