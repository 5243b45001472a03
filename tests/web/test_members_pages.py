"""The members pages through FastAPI's TestClient: forms, errors next to fields, roles.

The enrolment by tapping itself needs a running hub and edge: see
``test_admin_browser.py``. Here the control is the API tests' recording control, where
an enrolment can be armed but no badge is ever seen.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from hub.db.models import Badge, Member, Programme, Role, Training
from hub.web.core import csrf_token
from tests.hub.api.conftest import Api, add_session, build_api


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Api]:
    for api in build_api(f"sqlite:///{tmp_path / 'hub.db'}"):
        with api.db() as s:
            s.add_all(
                [
                    Programme(id="fablab-9-15", name="FabLab 9/15"),
                    Programme(id="esport", name="E-sport"),
                    Training(id="laser", name="Découpe laser", validity_days=365),
                ]
            )
            s.commit()
        yield api


def form(api: Api, path: str, data: dict[str, Any], role: Role = Role.ADMIN) -> Any:
    token = api.tokens[role]
    return api.call(
        "POST",
        path,
        role,
        data={**data, "csrf": csrf_token(api.settings, token)},
        follow_redirects=False,
    )


def text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_create_a_member_then_edit_them(web: Api) -> None:
    answer = form(
        web,
        "/membres/nouveau",
        {
            "first_name": "Inès",
            "initial": "b",
            "birth_year": "2013",
            "birth_month": "3",
            "programmes": ["fablab-9-15"],
            "role": "member",
            "status": "active",
            "consent_at": "2025-09-01",
        },
    )
    assert answer.status_code == 303, answer.text
    member_id = int(answer.headers["location"].split("/")[2].split("?")[0])
    with web.db() as s:
        member = s.get(Member, member_id)
        assert member is not None
        assert member.display_name == "Inès B."
        assert member.programme_ids == ["fablab-9-15"]
        assert member.consent_recorded_by == "admin"
    page = web.get(f"/membres/{member_id}?resultat=cree")
    assert page.status_code == 200
    assert "Membre enregistré." in page.text
    assert "enregistrée par admin" in text(page.text)

    edited = form(
        web,
        f"/membres/{member_id}",
        {
            "first_name": "Inès",
            "initial": "B",
            "birth_year": "2013",
            "birth_month": "4",
            "programmes": ["esport"],
            "role": "member",
            "status": "suspended",
            "consent_at": "2025-09-01",
        },
    )
    assert edited.status_code == 303, edited.text
    with web.db() as s:
        member = s.get(Member, member_id)
        assert member is not None
        assert (member.birth_month, member.status.value) == (4, "suspended")
        assert member.programme_ids == ["esport"]


def test_a_wrong_form_says_so_next_to_the_field_and_keeps_what_was_typed(web: Api) -> None:
    answer = form(
        web,
        "/membres/nouveau",
        {
            "first_name": "Yanis",
            "initial": "M",
            "birth_year": "3020",
            "birth_month": "7",
            "role": "member",
            "status": "active",
        },
    )
    assert answer.status_code == 422
    html = answer.text
    assert 'id="err-birth_year"' in html
    assert 'aria-describedby="err-birth_year"' in html
    assert re.search(r'id="err-birth_year">[^<]*(naissance|grande)', html), html
    assert 'value="Yanis"' in html
    assert 'value="3020"' in html
    with web.db() as s:
        assert s.query(Member).filter(Member.display_name.like("Yanis%")).count() == 0


def test_grant_a_training_and_see_its_expiry(web: Api) -> None:
    member_id = web.members[Role.MEMBER]
    answer = form(
        web, f"/membres/{member_id}/formations", {"training_id": "laser", "granted_on": ""}
    )
    assert answer.status_code == 303
    page = text(web.get(f"/membres/{member_id}").text)
    assert "Découpe laser" in page
    assert "valable jusqu'au" in page
    future = form(
        web,
        f"/membres/{member_id}/formations",
        {"training_id": "laser", "granted_on": "2999-01-01"},
    )
    assert future.status_code == 422
    assert "ne peut pas être dans le futur" in future.text


def test_arming_an_enrolment_shows_the_waiting_page(web: Api) -> None:
    member_id = web.members[Role.MEMBER]
    web.post("/api/zones", {"id": "fablab", "name": "FabLab"}).raise_for_status()
    web.post(
        "/api/machines",
        {"id": "laser-1", "name": "Laser", "kind": "laser", "zone_id": "fablab", "edge_id": "e1"},
    ).raise_for_status()
    answer = form(web, f"/membres/{member_id}/badges/associer", {"machine_id": "laser-1"})
    assert answer.status_code == 303
    waiting = web.get(answer.headers["location"])
    assert "Passez le badge sur le lecteur" in waiting.text
    assert "Laser" in waiting.text
    assert "enrol.js" in waiting.text
    unknown = form(web, f"/membres/{member_id}/badges/associer", {"machine_id": "nope"})
    assert unknown.status_code == 422
    assert 'id="err-machine_id"' in unknown.text


def test_erase_says_what_goes_and_asks_for_the_first_name(web: Api) -> None:
    member_id = web.members[Role.MEMBER]
    add_session(web, "s-1", member_id=member_id)
    with web.db() as s:
        s.add(Badge(hash="ab" * 32, member_id=member_id))
        s.commit()
    confirm = text(web.get(f"/membres/{member_id}/effacer").text)
    assert "1 badge(s), supprimé(s)" in confirm
    assert "1 session(s) d'utilisation, gardée(s) sans nom" in confirm
    wrong = form(web, f"/membres/{member_id}/effacer", {"confirm_name": "Quelqu'un"})
    assert wrong.status_code == 422
    with web.db() as s:
        assert s.get(Member, member_id) is not None
    done = form(web, f"/membres/{member_id}/effacer", {"confirm_name": "member"})
    assert done.status_code == 303, done.text
    with web.db() as s:
        assert s.get(Member, member_id) is None


def test_export_is_a_json_file_of_every_row(web: Api) -> None:
    member_id = web.members[Role.MEMBER]
    answer = web.get(f"/membres/{member_id}/export")
    assert answer.status_code == 200
    assert "attachment" in answer.headers["content-disposition"]
    assert answer.json()["tables"]["member"][0]["id"] == member_id


@pytest.mark.parametrize("role", [Role.ANIMATOR, Role.COORDINATOR, Role.MEMBER])
def test_who_may_not_open_the_members_pages(web: Api, role: Role) -> None:
    member_id = web.members[Role.MEMBER]
    for path in ("/membres", f"/membres/{member_id}", f"/membres/{member_id}/effacer"):
        answer = web.get(path, role)
        assert answer.status_code == 403, (path, role)
        assert "Member Staff" not in answer.text
    assert (
        form(web, f"/membres/{member_id}/effacer", {"confirm_name": "x"}, role).status_code == 403
    )


def test_a_fabmanager_reads_and_grants_but_does_not_edit(web: Api) -> None:
    member_id = web.members[Role.MEMBER]
    page = web.get(f"/membres/{member_id}", Role.FABMANAGER)
    assert page.status_code == 200
    assert "Enregistrer les modifications" not in page.text
    assert "Associer un badge" in page.text
    assert "Effacer ce membre" not in page.text
    edit = form(web, f"/membres/{member_id}", {"first_name": "X"}, Role.FABMANAGER)
    assert edit.status_code == 403


def test_a_stale_link_gets_the_french_404_page(web: Api) -> None:
    answer = web.get("/membres/99999")
    assert answer.status_code == 404
    assert "Membre introuvable" in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert web.get("/creneaux/creneaux/99999").status_code == 404
