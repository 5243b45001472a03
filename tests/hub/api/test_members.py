"""Members: CRUD, validation, role-shaped views, trainings, export and erasure."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from hub.db.models import (
    AccessLog,
    Account,
    Badge,
    Base,
    EdgeEvent,
    MachineJob,
    Member,
    MemberTraining,
    Role,
    StaffPresence,
    UsageSession,
)
from hub.policy.engine import age_at
from protocol.ids import badge_hash
from protocol.messages import utcnow
from tests.hub.api.conftest import Api, add_job, add_session


def _setup(api: Api) -> None:
    assert api.post("/api/programmes", {"id": "fablab-9-15", "name": "FabLab 9/15"}).is_success
    assert api.post("/api/programmes", {"id": "esport", "name": "E-sport"}).is_success
    assert api.post(
        "/api/trainings", {"id": "laser", "name": "Laser", "validity_days": 365}
    ).is_success
    assert api.post("/api/trainings", {"id": "impression-3d", "name": "3D"}).is_success
    assert api.post("/api/zones", {"id": "fablab", "name": "FabLab"}).is_success


def _member(api: Api, **overrides: Any) -> dict[str, Any]:
    body = {
        "display_name": "Inès Benali",
        "birth_year": utcnow().year - 12,
        "birth_month": 1,
        "programmes": ["fablab-9-15"],
    } | overrides
    response = api.post("/api/members", body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_create_read_update_a_member(api: Api) -> None:
    _setup(api)
    before = api.control.changes
    year = utcnow().year - 12
    created = _member(api, birth_year=year, birth_month=1)
    assert api.control.changes == before + 1
    today = date.today()
    assert created["age"] == age_at(year, 1, today)
    assert created["age_group"] == "9-15"
    assert created["first_name"] == "Inès"
    assert created["consent_missing"] is True
    assert created["programmes"] == ["fablab-9-15"]
    assert created["role"] == "member"
    assert created["status"] == "active"

    got = api.get(f"/api/members/{created['id']}").json()
    assert got == created

    patched = api.patch(
        f"/api/members/{created['id']}",
        {
            "consent_at": "2024-09-01",
            "programmes": ["esport", "fablab-9-15"],
            "status": "suspended",
        },
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["consent_missing"] is False
    assert patched.json()["programmes"] == ["esport", "fablab-9-15"]
    assert patched.json()["status"] == "suspended"
    assert api.control.changes == before + 2
    # Only what was sent changed.
    assert patched.json()["display_name"] == "Inès Benali"


def test_member_validation_errors_are_precise_and_french(api: Api) -> None:
    _setup(api)
    this_year = utcnow().year
    cases: list[tuple[dict[str, Any], list[str], str]] = [
        ({"birth_month": 13}, ["body", "birth_month"], "Valeur trop grande"),
        ({"birth_year": 1850}, ["body", "birth_year"], "Valeur trop petite"),
        ({"birth_year": this_year - 121}, ["body", "birth_year"], "invraisemblable"),
        ({"birth_year": this_year + 1}, ["body", "birth_year"], "invraisemblable"),
        ({"display_name": ""}, ["body", "display_name"], "Trop court"),
        ({"display_name": "a\x00b"}, ["body", "display_name"], "Caractères de contrôle"),
        ({"balance": 9999}, ["body", "balance"], "Champ inconnu"),
        ({"role": "root"}, ["body", "role"], "Valeur non autorisée"),
        ({"consent_at": "2999-01-01"}, ["body", "consent_at"], "futur"),
        ({"programmes": ["nope"]}, ["body", "programmes"], "Programme inconnu(s) : nope"),
    ]
    base = {"display_name": "Test", "birth_year": 2010, "birth_month": 5}
    for change, loc, text in cases:
        response = api.post("/api/members", base | change)
        assert response.status_code == 422, (change, response.text)
        errors = response.json()["detail"]
        assert any(e["loc"] == loc and text in e["msg"] for e in errors), (change, errors)
    if date.today().month < 12:
        future = api.post("/api/members", base | {"birth_year": this_year, "birth_month": 12})
        assert future.status_code == 422
        assert "futur" in future.text
    with api.db() as s:
        assert s.scalar(select(Member).where(Member.display_name == "Test")) is None


def test_member_update_refuses_null_and_future_birth(api: Api) -> None:
    _setup(api)
    member = _member(api)
    path = f"/api/members/{member['id']}"
    nulled = api.patch(path, {"display_name": None})
    assert nulled.status_code == 422
    assert "ne peut pas être vide" in nulled.text
    future = api.patch(path, {"birth_year": utcnow().year, "birth_month": 12})
    if date.today().month < 12:
        assert future.status_code == 422
        assert future.json()["detail"][0]["loc"] == ["body", "birth_month"]
    assert api.patch(path, {"consent_at": None}).status_code == 200


def test_unknown_and_out_of_range_ids(api: Api) -> None:
    missing = api.get("/api/members/999999")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Membre introuvable"}
    assert api.get("/api/members/99999999999999").status_code == 422
    assert api.get("/api/members/abc").status_code == 422
    assert api.get("/api/nothing-here").json() == {"detail": "Ressource introuvable"}


def test_animators_see_first_names_and_trainings_only(api: Api) -> None:
    _setup(api)
    member = _member(api)
    api.post(f"/api/members/{member['id']}/trainings/laser", None)
    brief = api.get(f"/api/members/{member['id']}", Role.ANIMATOR).json()
    assert brief["first_name"] == "Inès"
    assert brief["trainings"][0]["training_id"] == "laser"
    for hidden in ("display_name", "birth_year", "birth_month", "badges", "consent_at"):
        assert hidden not in brief
    listed = api.get("/api/members", Role.ANIMATOR).json()["items"]
    assert listed
    assert all("display_name" not in m for m in listed)
    full = api.get(f"/api/members/{member['id']}", Role.FABMANAGER).json()
    assert full["display_name"] == "Inès Benali"
    assert full["birth_year"] == member["birth_year"]


def test_list_filters_and_pagination(api: Api) -> None:
    _setup(api)
    a = _member(api, display_name="Zoé Martin", programmes=["esport"])
    _member(api, display_name="Yanis Diallo")
    api.patch(f"/api/members/{a['id']}", {"status": "suspended"})
    by_name = api.get("/api/members", params={"q": "zoé"}).json()
    assert [m["id"] for m in by_name["items"]] == [a["id"]]
    assert api.get("/api/members", params={"q": "100%_"}).json()["total"] == 0
    by_prog = api.get("/api/members", params={"programme": "esport"}).json()
    assert [m["id"] for m in by_prog["items"]] == [a["id"]]
    suspended = api.get("/api/members", params={"status": "suspended"}).json()
    assert [m["id"] for m in suspended["items"]] == [a["id"]]
    page = api.get("/api/members", params={"limit": 2, "offset": 1}).json()
    everyone = api.get("/api/members").json()
    assert page["total"] == everyone["total"] == len(everyone["items"])
    assert [m["id"] for m in page["items"]] == [m["id"] for m in everyone["items"][1:3]]
    assert api.get("/api/members", params={"limit": 0}).status_code == 422
    assert api.get("/api/members", params={"limit": 501}).status_code == 422


def test_grant_and_withdraw_trainings(api: Api) -> None:
    _setup(api)
    member = _member(api)
    path = f"/api/members/{member['id']}/trainings"
    before = api.control.changes
    granted = api.post(f"{path}/laser", {"granted_on": "2025-01-10"}, Role.FABMANAGER)
    assert granted.status_code == 201, granted.text
    assert granted.json()["expires_on"] == str(date(2025, 1, 10) + timedelta(days=365))
    forever = api.post(f"{path}/impression-3d", None, Role.FABMANAGER).json()
    assert forever["expires_on"] is None
    assert forever["valid"] is True
    assert forever["granted_on"] == str(datetime.now(api.settings.tz).date())
    renewed = api.post(f"{path}/laser", {}, Role.FABMANAGER).json()
    assert renewed["valid"] is True
    listed = api.get(path, Role.ANIMATOR).json()
    assert [t["training_id"] for t in listed] == ["impression-3d", "laser"]
    assert api.control.changes == before + 3
    assert api.post(f"{path}/laser", {"granted_on": "2999-01-01"}).status_code == 422
    assert api.post(f"{path}/nope", None).json() == {"detail": "Formation introuvable"}
    assert api.delete(f"{path}/laser", Role.FABMANAGER).status_code == 204
    assert api.delete(f"{path}/laser").status_code == 404
    with api.db() as s:
        rows = list(s.scalars(select(MemberTraining.training_id)))
    assert rows == ["impression-3d"]


def _history(api: Api, member_id: int, uid: str) -> str:
    """Give a member every kind of row the store can hold about them; returns the badge hash."""
    digest = badge_hash(api.settings.site_secret_bytes, uid)
    assert api.post("/api/badges", {"member_id": member_id, "uid": uid}).status_code == 201
    assert api.post(f"/api/members/{member_id}/trainings/laser", None).status_code == 201
    account = api.post(
        "/api/accounts",
        {
            "username": "ines",
            "password": "plum-orbit-cactus-88",
            "role": "animator",
            "member_id": member_id,
        },
    )
    assert account.status_code == 201
    add_session(api, "s-member", member_id=member_id, programmes=["fablab-9-15"], age_group="9-15")
    add_session(api, "s-badge", member_id=None, badge_hash=digest, age_group="9-15")
    add_session(api, "s-other", member_id=api.members[Role.MEMBER])
    # A print whose file name names her, and the journal event it came from.
    add_job(
        api, session_id="s-member", member_id=member_id, age_group="9-15", name="ines.gcode", seq=7
    )
    # A print in the session her badge opened before it was enrolled (no member id).
    add_job(api, session_id="s-badge", member_id=None, name="cadeau-ines.gcode")
    with api.db() as s:
        s.add(
            EdgeEvent(
                edge_id="edge-1",
                seq=7,
                event_id="e7",
                type="job_ended",
                ts=utcnow(),
                body={"session_id": "s-member", "machine": "printer-1", "job": "ines.gcode"},
            )
        )
        s.commit()
    with api.db() as s:
        now = utcnow()
        for i, (mid, h) in enumerate([(member_id, digest), (None, digest), (None, "f" * 64)]):
            s.add(
                AccessLog(
                    ts=now,
                    edge_id="edge-1",
                    machine_id="laser-1",
                    member_id=mid,
                    badge_hash=h,
                    req_id=f"r{i}",
                    granted=False,
                    code="test",
                )
            )
        s.add(StaffPresence(member_id=member_id, zone_id="fablab", since=now, until=now))
        s.add(
            EdgeEvent(
                edge_id="edge-1",
                seq=1,
                event_id="e1",
                type="session_started",
                ts=now,
                body={"session_id": "s-member", "machine": "laser-1", "badge": digest},
            )
        )
        s.commit()
    return digest


def test_export_walks_every_table_referencing_a_member(api: Api) -> None:
    _setup(api)
    member = _member(api)
    digest = _history(api, member["id"], "04:A2:2B:1C")
    export = api.get(f"/api/members/{member['id']}/export")
    assert export.status_code == 200, export.text
    tables = export.json()["tables"]
    referencing = {
        t.name
        for t in Base.metadata.sorted_tables
        if any(fk.column.table.name == "member" for c in t.columns for fk in c.foreign_keys)
    }
    assert referencing | {"member"} <= set(tables)
    assert tables["member"][0]["display_name"] == "Inès Benali"
    assert {r["id"] for r in tables["usage_session"]} == {"s-member", "s-badge"}
    assert len(tables["access_log"]) == 2
    assert [r["job"] for r in tables["machine_job"]] == ["ines.gcode"]
    assert tables["badge"][0]["hash"] == digest
    assert tables["account"][0]["username"] == "ines"
    assert "password_hash" not in tables["account"][0]
    assert "plum-orbit-cactus-88" not in export.text


def test_erasure_removes_identity_and_keeps_pseudonymous_sessions(api: Api) -> None:
    _setup(api)
    member = _member(api)
    member_id = member["id"]
    digest = _history(api, member_id, "04:A2:2B:1C")
    before = api.control.changes
    response = api.post(f"/api/members/{member_id}/erase", None)
    assert response.status_code == 204, response.text
    assert api.control.changes == before + 1
    assert api.get(f"/api/members/{member_id}").status_code == 404
    with api.db() as s:
        assert s.scalar(select(Badge).where(Badge.hash == digest)) is None
        assert s.scalar(select(Account).where(Account.username == "ines")) is None
        assert list(s.scalars(select(AccessLog.badge_hash))) == ["f" * 64]
        kept = {r.id: r for r in s.scalars(select(UsageSession))}
        assert set(kept) == {"s-member", "s-badge", "s-other"}
        for sid in ("s-member", "s-badge"):
            assert kept[sid].member_id is None
            assert kept[sid].badge_hash is None
            assert kept[sid].age_group == "9-15"
        assert kept["s-member"].programmes == ["fablab-9-15"]
        assert kept["s-other"].member_id == api.members[Role.MEMBER]
        job, by_badge = s.scalars(select(MachineJob).order_by(MachineJob.session_id.desc()))
        assert (job.session_id, job.member_id, job.age_group) == ("s-member", None, "9-15")
        assert (job.job, by_badge.job) == ("", "")
        assert (job.duration_s, job.filament_mm) == (3600.0, 1000.0)  # still counted
        # No row anywhere still points at the member or carries the badge hash.
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)):
                values = row._mapping
                assert digest not in str(dict(values)), table.name
                assert "ines.gcode" not in str(dict(values)), table.name
                for column in table.columns:
                    if any(fk.column.table.name == "member" for fk in column.foreign_keys):
                        assert values[column.name] != member_id, table.name
    # The erased account's login is gone too.
    api.client.cookies.clear()
    login = api.client.post(
        "/api/auth/login", json={"username": "ines", "password": "plum-orbit-cactus-88"}
    )
    assert login.status_code == 401


def test_delete_without_erase_refuses_members_with_history(api: Api) -> None:
    _setup(api)
    with_history = _member(api)
    add_session(api, "s1", member_id=with_history["id"])
    refused = api.delete(f"/api/members/{with_history['id']}")
    assert refused.status_code == 409
    assert "erase=true" in refused.json()["detail"]
    assert (
        api.delete(f"/api/members/{with_history['id']}", params={"erase": "true"}).status_code
        == 204
    )
    plain = _member(api, display_name="Sans Historique")
    assert api.delete(f"/api/members/{plain['id']}").status_code == 204
    assert api.get(f"/api/members/{plain['id']}").status_code == 404


def test_an_admin_cannot_erase_their_own_member(api: Api) -> None:
    own = api.members[Role.ADMIN]
    response = api.post(f"/api/members/{own}/erase", None)
    assert response.status_code == 409
    assert api.get(f"/api/members/{own}").status_code == 200
