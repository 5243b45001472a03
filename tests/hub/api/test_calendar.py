"""Weekly slots, dated exceptions and quotas: validation of times, audiences, breaks."""

from __future__ import annotations

from typing import Any

from hub.db.models import Role
from tests.hub.api.conftest import Api


def _zones(api: Api) -> None:
    api.post("/api/zones", {"id": "fablab", "name": "FabLab"})
    api.post("/api/zones", {"id": "gaming", "name": "Salle de jeux"})
    api.post("/api/programmes", {"id": "fablab-16-25", "name": "FabLab 16/25"})


SLOT = {
    "zone_id": "fablab",
    "weekday": 2,
    "start": "14:00",
    "end": "18:00",
    "label": "FabLab 9/15",
    "age_groups": ["9-15"],
    "animator_required": True,
}


def _errors(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]  # type: ignore[no-any-return]


def test_slot_crud(api: Api) -> None:
    _zones(api)
    before = api.control.changes
    created = api.post("/api/slots", SLOT)
    assert created.status_code == 201, created.text
    slot = created.json()
    assert slot["start"] == "14:00:00"
    assert slot["age_groups"] == ["9-15"]
    assert slot["programmes"] == []
    assert slot["animator_required"] is True
    night = api.post("/api/slots", SLOT | {"zone_id": "gaming", "start": "20:00", "end": "01:00"})
    assert night.status_code == 201  # ends after midnight
    path = f"/api/slots/{slot['id']}"
    patched = api.patch(path, {"programmes": ["fablab-16-25"], "age_groups": []})
    assert patched.json()["programmes"] == ["fablab-16-25"]
    assert patched.json()["age_groups"] == []
    assert [
        s["id"]
        for s in api.get("/api/slots", Role.COORDINATOR, params={"zone_id": "fablab"}).json()
    ] == [slot["id"]]
    assert api.control.changes == before + 3
    assert api.delete(path).status_code == 204
    assert api.get(path).json() == {"detail": "Créneau introuvable"}


def test_slot_validation(api: Api) -> None:
    _zones(api)
    cases: list[tuple[dict[str, Any], list[str], str]] = [
        ({"weekday": 7}, ["body", "weekday"], "Valeur trop grande"),
        ({"weekday": -1}, ["body", "weekday"], "Valeur trop petite"),
        ({"start": "25:00"}, ["body", "start"], "Heure invalide"),
        ({"start": "14:00+02:00"}, ["body", "start"], "sans fuseau"),
        ({"end": "14:00"}, ["body"], "durée"),
        ({"age_groups": ["12-14"]}, ["body", "age_groups"], "Tranche d'âge inconnue : 12-14"),
        ({"programmes": ["chorale"]}, ["body", "programmes"], "chorale"),
        ({"zone_id": "cuisine"}, ["body", "zone_id"], "Zone inconnu"),
    ]
    for change, loc, text in cases:
        errors = _errors(api.post("/api/slots", SLOT | change))
        assert any(e["loc"] == loc and text in e["msg"] for e in errors), (change, errors)
    slot = api.post("/api/slots", SLOT).json()
    same = _errors(api.patch(f"/api/slots/{slot['id']}", {"end": "14:00"}))
    assert "durée" in same[0]["msg"]
    assert api.get("/api/slots").json() == [slot]


def test_exceptions(api: Api) -> None:
    _zones(api)
    closure = api.post(
        "/api/slot-exceptions", {"day": "2030-12-25", "kind": "closure", "label": "Noël"}
    )
    assert closure.status_code == 201, closure.text
    assert closure.json()["zone_id"] is None
    assert closure.json()["start"] is None
    opening = api.post(
        "/api/slot-exceptions",
        {
            "zone_id": "gaming",
            "day": "2030-07-14",
            "kind": "opening",
            "start": "10:00",
            "end": "16:00",
            "age_groups": ["16-25"],
        },
    )
    assert opening.status_code == 201, opening.text
    for bad in (
        {"day": "2030-07-14", "kind": "opening"},
        {"day": "2030-07-14", "kind": "closure", "start": "10:00"},
        {"day": "2030-07-14", "kind": "closure", "start": "12:00", "end": "10:00"},
        {"day": "2030-02-30", "kind": "closure"},
        {"day": "2030-07-14", "kind": "holiday"},
        {"day": "2030-07-14", "kind": "closure", "zone_id": "cuisine"},
    ):
        assert api.post("/api/slot-exceptions", bad).status_code == 422, bad
    path = f"/api/slot-exceptions/{opening.json()['id']}"
    # Dropping the hours of an opening breaks its rule.
    errors = _errors(api.patch(path, {"start": None, "end": None}))
    assert "horaires" in errors[0]["msg"]
    closed = api.patch(path, {"kind": "closure", "start": None, "end": None})
    assert closed.status_code == 200
    assert closed.json()["kind"] == "closure"
    listed = api.get("/api/slot-exceptions", Role.ANIMATOR).json()
    assert [e["day"] for e in listed] == ["2030-07-14", "2030-12-25"]
    assert api.delete(path).status_code == 204


def test_quotas(api: Api) -> None:
    _zones(api)
    body = {
        "zone_id": "gaming",
        "age_group": "9-15",
        "daily_min": 90,
        "weekly_min": 300,
        "break_after_min": 60,
        "break_min": 10,
    }
    created = api.post("/api/quotas", body)
    assert created.status_code == 201, created.text
    duplicate = api.post("/api/quotas", body)
    assert duplicate.status_code == 409
    assert "9-15" in duplicate.json()["detail"]
    assert api.post("/api/quotas", body | {"age_group": "ados"}).status_code == 422
    assert api.post("/api/quotas", body | {"zone_id": "cuisine"}).status_code == 422
    assert (
        api.post("/api/quotas", body | {"age_group": "16-25", "break_min": None}).status_code == 422
    )
    assert (
        api.post("/api/quotas", body | {"age_group": "16-25", "daily_min": -5}).status_code == 422
    )
    path = f"/api/quotas/{created.json()['id']}"
    errors = _errors(api.patch(path, {"break_min": None}))
    assert "ensemble" in errors[0]["msg"]
    cleared = api.patch(path, {"break_min": None, "break_after_min": None, "weekly_min": None})
    assert cleared.status_code == 200
    assert cleared.json() | {"id": 0} == body | {
        "id": 0,
        "break_min": None,
        "break_after_min": None,
        "weekly_min": None,
    }
    assert api.patch(path, {"age_group": "16-25"}).status_code == 422  # not editable
    assert [q["age_group"] for q in api.get("/api/quotas", Role.COORDINATOR).json()] == ["9-15"]
    assert api.delete(path).status_code == 204
    assert api.get("/api/quotas").json() == []


RECOMMENDED = "/api/zones/gaming/quotas/recommended"


def _slot(api: Api, age_groups: list[str], zone_id: str = "gaming") -> None:
    body = SLOT | {"zone_id": zone_id, "age_groups": age_groups, "animator_required": False}
    assert api.post("/api/slots", body).status_code == 201


def _quota_rows(api: Api, zone_id: str = "gaming") -> dict[str, tuple[Any, ...]]:
    return {
        q["age_group"]: (q["daily_min"], q["weekly_min"], q["break_after_min"], q["break_min"])
        for q in api.get("/api/quotas", params={"zone_id": zone_id}).json()
    }


def test_recommended_quotas_cover_the_zone_age_groups_only(api: Api) -> None:
    _zones(api)
    _slot(api, ["9-15"])
    before = api.control.changes
    response = api.post(RECOMMENDED, None, Role.FABMANAGER)
    assert response.status_code == 201, response.text
    assert [(q["zone_id"], q["age_group"]) for q in response.json()] == [("gaming", "9-15")]
    assert _quota_rows(api) == {"9-15": (90, None, 50, 10)}
    assert _quota_rows(api, "fablab") == {}
    assert api.control.changes == before + 1


def test_recommended_quotas_never_overwrite_an_existing_quota(api: Api) -> None:
    _zones(api)
    _slot(api, ["9-15"])
    _slot(api, [])  # open to every age group
    custom = {"zone_id": "gaming", "age_group": "9-15", "daily_min": 60, "weekly_min": 240}
    assert api.post("/api/quotas", custom).status_code == 201
    created = api.post(RECOMMENDED, None)
    assert created.status_code == 201, created.text
    assert [q["age_group"] for q in created.json()] == ["16-25"]
    assert created.json()[0] | {"id": 0} == {
        "id": 0,
        "zone_id": "gaming",
        "age_group": "16-25",
        "daily_min": 180,
        "weekly_min": None,
        "break_after_min": 120,
        "break_min": 10,
    }
    assert _quota_rows(api) == {"9-15": (60, 240, None, None), "16-25": (180, None, 120, 10)}
    before = api.control.changes
    again = api.post(RECOMMENDED, None)
    assert (again.status_code, again.json()) == (200, [])
    assert api.control.changes == before


def test_recommended_quotas_of_a_zone_without_slots_and_with_special_openings(api: Api) -> None:
    _zones(api)
    # No slot yet: every age group with a recommendation.
    assert [q["age_group"] for q in api.post(RECOMMENDED, None).json()] == ["9-15", "16-25"]
    # A zone open to 16-25 only through a special opening.
    api.post("/api/zones", {"id": "esport", "name": "E-sport"})
    opening = {
        "zone_id": "esport",
        "day": "2030-06-01",
        "kind": "opening",
        "start": "10:00",
        "end": "12:00",
        "age_groups": ["16-25", "26+"],
    }
    assert api.post("/api/slot-exceptions", opening).status_code == 201
    _slot(api, ["26+"], zone_id="esport")
    created = api.post("/api/zones/esport/quotas/recommended", None).json()
    assert [q["age_group"] for q in created] == ["16-25"]  # no recommendation for 26+


def test_recommended_quotas_follow_the_settings(api: Api) -> None:
    from hub.settings import GamingQuota

    _zones(api)
    app = api.client.app
    app.state.settings = api.settings.model_copy(  # type: ignore[attr-defined]
        update={"gaming_defaults": {"9-15": GamingQuota(daily_min=45)}}
    )
    created = api.post(RECOMMENDED, None).json()
    assert [(q["age_group"], q["daily_min"], q["break_min"]) for q in created] == [
        ("9-15", 45, None)
    ]


def test_recommended_quotas_of_an_unknown_zone(api: Api) -> None:
    response = api.post("/api/zones/cuisine/quotas/recommended", None)
    assert response.status_code == 404
    assert response.json()["detail"] == "Zone introuvable"
    assert api.post("/api/zones/Bad Zone/quotas/recommended", None).status_code == 422
