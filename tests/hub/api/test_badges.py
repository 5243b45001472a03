"""Badges: a raw UID is hashed at once and never stored; duplicates, revocation, deletion."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select, text

from hub.db.models import Badge, Role
from protocol.ids import badge_hash
from tests.hub.api.conftest import Api

UID = "04:A2:2B:1C:5D:80"


def _member(api: Api) -> int:
    response = api.post(
        "/api/members", {"display_name": "Léa", "birth_year": 2008, "birth_month": 6}
    )
    assert response.status_code == 201
    return int(response.json()["id"])


def test_enrol_by_uid_stores_only_the_keyed_hash(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    member_id = _member(api)
    before = api.control.changes
    with caplog.at_level(logging.DEBUG):
        response = api.post(
            "/api/badges", {"member_id": member_id, "uid": UID, "label": "bleu"}, Role.FABMANAGER
        )
    assert response.status_code == 201, response.text
    body = response.json()
    digest = badge_hash(api.settings.site_secret_bytes, UID)
    assert body["fingerprint"] == digest[:12]
    assert body["active"] is True
    assert body["label"] == "bleu"
    assert "hash" not in body
    assert api.control.changes == before + 1
    normalised = UID.replace(":", "")
    assert UID not in response.text
    assert normalised not in response.text
    for record in caplog.records:
        assert normalised not in record.getMessage()
        assert UID not in record.getMessage()
    with api.db() as s:
        assert list(s.scalars(select(Badge.hash))) == [digest]
        # Nowhere in the badge table, in any form.
        dump = str([tuple(r) for r in s.execute(text("SELECT * FROM badge"))])
    assert normalised not in dump.upper()
    assert "04A22B1C5D80" not in dump.upper()
    # The same card written differently is the same badge.
    again = api.post("/api/badges", {"member_id": member_id, "uid": "04 a2 2b 1c 5d 80"})
    assert again.status_code == 409
    assert again.json() == {"detail": "Ce badge est déjà enregistré"}


def test_enrol_by_hash_and_validation(api: Api) -> None:
    member_id = _member(api)
    digest = badge_hash(api.settings.site_secret_bytes, "DEADBEEF")
    assert api.post("/api/badges", {"member_id": member_id, "hash": digest}).status_code == 201
    assert (
        api.post("/api/badges", {"member_id": member_id, "uid": "de:ad:be:ef"}).status_code == 409
    )
    cases = [
        {"member_id": member_id},
        {"member_id": member_id, "uid": "0A", "hash": digest},
        {"member_id": member_id, "uid": "not-hex!"},
        {"member_id": member_id, "uid": "::::"},
        {"member_id": member_id, "hash": "ABC"},
        {"member_id": 999_999, "uid": "0A0B"},
        {"member_id": member_id, "uid": "0A0B", "owner": "x"},
    ]
    for body in cases:
        response = api.post("/api/badges", body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["msg"], body
    unknown = api.post("/api/badges", {"member_id": 999_999, "uid": "0A0B"}).json()
    assert unknown["detail"][0]["loc"] == ["body", "member_id"]


def test_revoke_relabel_list_and_delete(api: Api) -> None:
    member_id = _member(api)
    badge = api.post("/api/badges", {"member_id": member_id, "uid": "0102"}).json()
    path = f"/api/badges/{badge['id']}"
    before = api.control.changes
    revoked = api.post(f"{path}/revoke", None, Role.FABMANAGER)
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False
    assert revoked.json()["revoked_at"]
    assert api.control.changes == before + 1
    assert api.post(f"{path}/revoke", None).status_code == 409
    assert api.patch(path, {"label": "perdu"}, Role.FABMANAGER).json()["label"] == "perdu"
    other = api.post("/api/badges", {"member_id": member_id, "uid": "0304"}).json()
    active = api.get("/api/badges", params={"active": "true"}).json()
    assert [b["id"] for b in active] == [other["id"]]
    mine = api.get("/api/badges", params={"member_id": member_id}).json()
    assert {b["id"] for b in mine} == {badge["id"], other["id"]}
    member = api.get(f"/api/members/{member_id}").json()
    assert {b["id"] for b in member["badges"]} == {badge["id"], other["id"]}
    # A revoked card can be re-enrolled for someone else once its row is deleted.
    assert api.delete(path).status_code == 204
    assert api.get(path).json() == {"detail": "Badge introuvable"}
    assert api.post("/api/badges", {"member_id": member_id, "uid": "0102"}).status_code == 201
