"""The slot calendar pages through FastAPI's TestClient: grid, forms, errors, roles."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import time
from pathlib import Path

import pytest

from hub.db.models import Programme, Quota, Role, Slot, SlotException, Zone
from tests.hub.api.conftest import Api, build_api
from tests.web.test_members_pages import form, text


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Api]:
    for api in build_api(f"sqlite:///{tmp_path / 'hub.db'}"):
        with api.db() as s:
            s.add_all(
                [
                    Zone(id="fablab", name="FabLab"),
                    Zone(id="gaming", name="Salle de jeux"),
                    Programme(id="fablab-9-15", name="FabLab 9/15"),
                ]
            )
            s.flush()
            s.add(
                Slot(
                    zone_id="fablab",
                    weekday=2,
                    start=time(14),
                    end=time(18),
                    label="Mercredi 9/15",
                    age_groups=["9-15"],
                    animator_required=True,
                )
            )
            s.commit()
        yield api


def slot_id(api: Api) -> int:
    with api.db() as s:
        return s.query(Slot).one().id


def test_the_week_grid_shows_each_zone_and_its_slots(web: Api) -> None:
    page = web.get("/creneaux", Role.ANIMATOR)
    assert page.status_code == 200
    html = page.text
    assert html.count('<svg class="week"') == 2
    assert "Mercredi 9/15, 14h00–18h00, 9-15 ans, avec animateur" in text(html)
    assert "Ajouter un créneau" not in html  # animators read, admins write
    assert "Ajouter un créneau" in web.get("/creneaux").text


def test_move_a_slot_to_another_day_and_hours(web: Api) -> None:
    sid = slot_id(web)
    answer = form(
        web,
        f"/creneaux/creneaux/{sid}",
        {
            "zone_id": "fablab",
            "weekday": "4",
            "start": "15:30",
            "end": "19:00",
            "label": "Vendredi",
            "age_groups": ["9-15", "16-25"],
            "programmes": ["fablab-9-15"],
        },
    )
    assert answer.status_code == 303, answer.text
    with web.db() as s:
        slot = s.get(Slot, sid)
        assert slot is not None
        assert (slot.weekday, slot.start, slot.end) == (4, time(15, 30), time(19))
        assert slot.age_groups == ["16-25", "9-15"]
        assert slot.animator_required is False
    assert web.control.changes >= 1


def test_a_slot_without_duration_is_refused_next_to_its_end(web: Api) -> None:
    answer = form(
        web,
        "/creneaux/creneaux",
        {"zone_id": "gaming", "weekday": "5", "start": "10:00", "end": "10:00", "label": "Zéro"},
    )
    assert answer.status_code == 422
    assert 'id="err-end"' in answer.text
    assert "Le créneau doit avoir une durée" in answer.text
    assert 'value="Zéro"' in answer.text
    missing = form(
        web,
        "/creneaux/creneaux",
        {"zone_id": "gaming", "weekday": "5", "start": "", "end": "12:00"},
    )
    assert missing.status_code == 422
    assert "Champ obligatoire" in missing.text
    with web.db() as s:
        assert s.query(Slot).count() == 1


def test_add_then_delete_a_slot(web: Api) -> None:
    added = form(
        web,
        "/creneaux/creneaux",
        {"zone_id": "gaming", "weekday": "5", "start": "10:00", "end": "12:30", "label": "Samedi"},
    )
    assert added.status_code == 303
    with web.db() as s:
        new = s.query(Slot).filter_by(label="Samedi").one()
    assert form(web, f"/creneaux/creneaux/{new.id}/supprimer", {}).status_code == 303
    with web.db() as s:
        assert s.get(Slot, new.id) is None


def test_exceptions_closure_and_a_wrong_opening(web: Api) -> None:
    ok = form(
        web, "/creneaux/exceptions", {"day": "2099-12-25", "kind": "closure", "label": "Noël"}
    )
    assert ok.status_code == 303
    wrong = form(web, "/creneaux/exceptions", {"day": "2099-12-26", "kind": "opening"})
    assert wrong.status_code == 422
    assert "Une ouverture exceptionnelle doit avoir des horaires" in wrong.text
    with web.db() as s:
        assert [e.label for e in s.query(SlotException)] == ["Noël"]
    assert "Noël" in web.get("/creneaux").text


def test_quotas_and_break_rules(web: Api) -> None:
    ok = form(
        web,
        "/creneaux/quotas",
        {
            "zone_id": "gaming",
            "age_group": "9-15",
            "daily_min": "90",
            "break_after_min": "60",
            "break_min": "10",
        },
    )
    assert ok.status_code == 303, ok.text
    with web.db() as s:
        quota = s.query(Quota).one()
        assert (quota.daily_min, quota.break_after_min, quota.break_min) == (90, 60, 10)
    half = form(web, f"/creneaux/quotas/{quota.id}", {"daily_min": "90", "break_after_min": "60"})
    assert half.status_code == 422
    assert "pause forcée" in half.text
    assert 'value="60"' in half.text
    letters = form(web, f"/creneaux/quotas/{quota.id}", {"daily_min": "beaucoup"})
    assert letters.status_code == 422
    assert "Nombre entier attendu" in letters.text


@pytest.mark.parametrize("role", [Role.ANIMATOR, Role.FABMANAGER, Role.COORDINATOR])
def test_only_admins_change_the_calendar(web: Api, role: Role) -> None:
    sid = slot_id(web)
    answer = form(web, f"/creneaux/creneaux/{sid}/supprimer", {}, role)
    assert answer.status_code == 403
    with web.db() as s:
        assert s.get(Slot, sid) is not None
