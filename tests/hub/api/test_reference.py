"""Zones, programmes, trainings, machines: CRUD, conflicts, references, control calls."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from hub.db.models import Machine, MachineTraining, Role
from protocol.messages import MachineAction, Outcome
from tests.hub.api.conftest import Api, outcome_of

LASER = {
    "id": "laser-1",
    "name": "Laser Trotec",
    "kind": "laser",
    "zone_id": "fablab",
    "edge_id": "edge-fablab",
    "min_age": 14,
    "offline_rule": "staff_only",
    "required_trainings": ["laser", "laser"],
}


def _crud(api: Api, path: str, create: dict[str, Any], patch: dict[str, Any], what: str) -> None:
    before = api.control.changes
    created = api.post(path, create)
    assert created.status_code == 201, created.text
    item = f"{path}/{create['id']}"
    assert api.get(item, Role.COORDINATOR).json() == created.json()
    assert api.post(path, create).status_code == 409
    assert create["id"] in api.post(path, create).json()["detail"]
    assert [x["id"] for x in api.get(path, Role.ANIMATOR).json()] == [create["id"]]
    updated = api.patch(item, patch)
    assert updated.status_code == 200, updated.text
    assert updated.json() == created.json() | patch
    assert api.patch(item, {"id": "other"}).status_code == 422  # ids are not editable
    assert api.patch(item, {"name": None}).status_code == 422
    assert api.get(f"{path}/nope").json() == {"detail": f"{what} introuvable"}
    assert api.get(f"{path}/Bad_Id").status_code == 422
    assert api.control.changes == before + 2
    bad = api.post(path, create | {"id": "Pas Un Id"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "id"]
    assert bad.json()["detail"][0]["msg"] == "Format invalide"


def test_zone_programme_training_crud(api: Api) -> None:
    _crud(
        api,
        "/api/zones",
        {"id": "fablab", "name": "FabLab", "capacity": None},
        {"capacity": 12},
        "Zone",
    )
    _crud(
        api, "/api/programmes", {"id": "esport", "name": "E-sport"}, {"name": "Équipe"}, "Programme"
    )
    _crud(
        api,
        "/api/trainings",
        {"id": "laser", "name": "Laser", "validity_days": 365},
        {"validity_days": None},
        "Formation",
    )
    assert api.post("/api/zones", {"id": "x", "name": "X", "capacity": 0}).status_code == 422
    assert (
        api.post("/api/trainings", {"id": "y", "name": "Y", "validity_days": 0}).status_code == 422
    )


def test_deleting_what_is_still_used_is_a_409(api: Api) -> None:
    api.post("/api/zones", {"id": "fablab", "name": "FabLab"})
    api.post("/api/trainings", {"id": "laser", "name": "Laser"})
    api.post("/api/programmes", {"id": "esport", "name": "E-sport"})
    assert api.post("/api/machines", LASER).status_code == 201
    slot = {
        "zone_id": "fablab",
        "weekday": 1,
        "start": "10:00",
        "end": "12:00",
        "programmes": ["esport"],
    }
    slot_id = api.post("/api/slots", slot).json()["id"]
    zone = api.delete("/api/zones/fablab")
    assert zone.status_code == 409
    assert "1 machine" in zone.json()["detail"]
    training = api.delete("/api/trainings/laser")
    assert training.status_code == 409
    assert "1 machine" in training.json()["detail"]
    programme = api.delete("/api/programmes/esport")
    assert programme.status_code == 409
    assert "1 créneau" in programme.json()["detail"]
    assert api.delete("/api/slots/" + str(slot_id)).status_code == 204
    assert api.delete("/api/programmes/esport").status_code == 204
    assert api.delete("/api/machines/laser-1").status_code == 204
    assert api.delete("/api/trainings/laser").status_code == 204
    assert api.delete("/api/zones/fablab").status_code == 204
    assert api.get("/api/zones").json() == []
    assert api.delete("/api/zones/fablab").status_code == 404


def test_machine_crud_and_references(api: Api) -> None:
    api.post("/api/zones", {"id": "fablab", "name": "FabLab"})
    api.post("/api/zones", {"id": "gaming", "name": "Salle de jeux"})
    api.post("/api/trainings", {"id": "laser", "name": "Laser"})
    api.post("/api/trainings", {"id": "securite", "name": "Sécurité"})
    missing_zone = api.post("/api/machines", LASER | {"zone_id": "atelier"})
    assert missing_zone.status_code == 422
    assert missing_zone.json()["detail"][0]["loc"] == ["body", "zone_id"]
    missing_training = api.post("/api/machines", LASER | {"required_trainings": ["soudure"]})
    assert missing_training.status_code == 422
    assert "soudure" in missing_training.json()["detail"][0]["msg"]
    for bad in (
        {"kind": "toaster"},
        {"edge_id": "Edge/1"},
        {"min_age": 120},
        {"offline_rule": "maybe"},
        {"power_policy": "follow_session"},  # no such field any more
    ):
        assert api.post("/api/machines", LASER | bad).status_code == 422, bad
    created = api.post("/api/machines", LASER)
    assert created.status_code == 201, created.text
    machine = created.json()
    assert machine["required_trainings"] == ["laser"]
    assert "power_policy" not in machine
    assert machine["maintenance"] is False
    changed = api.patch(
        "/api/machines/laser-1",
        {"zone_id": "gaming", "required_trainings": ["securite", "laser"], "min_age": None},
    ).json()
    assert changed["zone_id"] == "gaming"
    assert changed["min_age"] is None
    assert changed["required_trainings"] == ["laser", "securite"]
    assert api.patch("/api/machines/laser-1", {"zone_id": "nope"}).status_code == 422
    listed = api.get("/api/machines", Role.ANIMATOR, params={"zone_id": "gaming"}).json()
    assert [m["id"] for m in listed] == ["laser-1"]
    assert api.get("/api/machines", params={"zone_id": "fablab"}).json() == []
    assert api.delete("/api/machines/laser-1").status_code == 204
    with api.db() as s:
        assert s.scalar(select(Machine)) is None
        assert s.scalar(select(MachineTraining)) is None


def test_maintenance_and_commands_reach_the_control_seam(api: Api) -> None:
    api.post("/api/zones", {"id": "fablab", "name": "FabLab"})
    api.post("/api/trainings", {"id": "laser", "name": "Laser"})
    api.post("/api/machines", LASER)
    before = api.control.changes
    on = api.post(
        "/api/machines/laser-1/maintenance", {"on": True, "note": "lentille"}, Role.ANIMATOR
    )
    assert on.status_code == 200, on.text
    assert on.json() == {
        "machine_id": "laser-1",
        "action": "maintenance_on",
        "delivered": True,
        "outcome": "applied",
        "code": "",
        "reason": "",
    }
    machine = api.get("/api/machines/laser-1").json()
    assert machine["maintenance"] is True
    assert machine["maintenance_note"] == "lentille"
    assert api.control.changes == before + 1
    api.control.deliver = False
    off = api.post("/api/machines/laser-1/maintenance", {"on": False}, Role.FABMANAGER)
    assert off.json()["delivered"] is False  # stored anyway: the snapshot carries it
    assert api.get("/api/machines/laser-1").json()["maintenance"] is False
    refused = api.post("/api/machines/laser-1/commands", {"action": "pause"}, Role.ANIMATOR)
    assert refused.status_code == 503
    assert "injoignable" in refused.json()["detail"]
    api.control.deliver = True
    ok = api.post("/api/machines/laser-1/commands", {"action": "cancel"}, Role.ANIMATOR)
    assert ok.status_code == 200
    assert ok.json()["delivered"] is True
    assert ok.json()["outcome"] == "applied"
    # The edge refuses (no job to pause): 409, its code and French reason.
    api.control.answer = outcome_of(Outcome.REFUSED, "no_job", "Aucune découpe en cours.")
    no_job = api.post("/api/machines/laser-1/commands", {"action": "pause"}, Role.ANIMATOR)
    assert no_job.status_code == 409
    assert no_job.json() == {"detail": "Aucune découpe en cours.", "code": "no_job"}
    api.control.answer = None
    silent = api.post("/api/machines/laser-1/commands", {"action": "rearm"}, Role.ANIMATOR)
    assert (silent.status_code, silent.json()["code"]) == (504, "no_answer")
    assert api.control.commands == [
        ("laser-1", MachineAction.MAINTENANCE_ON),
        ("laser-1", MachineAction.MAINTENANCE_OFF),
        ("laser-1", MachineAction.PAUSE),
        ("laser-1", MachineAction.CANCEL),
        ("laser-1", MachineAction.PAUSE),
        ("laser-1", MachineAction.REARM),
    ]
    # Every command carries the staff account that sent it (journaled with a re-arm).
    assert api.control.by[-1] == api.accounts[Role.ANIMATOR]
    # Maintenance goes through its own endpoint, which also stores the flag.
    assert (
        api.post("/api/machines/laser-1/commands", {"action": "maintenance_on"}).status_code == 422
    )
    assert api.post("/api/machines/nope/commands", {"action": "pause"}).status_code == 404
    assert len(api.control.commands) == 6
