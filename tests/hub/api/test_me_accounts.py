"""A member's own view (/api/me) and account management by admins."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from hub.db.models import Account, ApiToken, Role
from protocol.messages import utcnow
from tests.hub.api.conftest import PASSWORD, Api, add_session


def test_me_shows_own_trainings_time_and_sessions_only(api: Api) -> None:
    api.post("/api/zones", {"id": "gaming", "name": "Salle de jeux"})
    api.post("/api/trainings", {"id": "pc", "name": "PC", "validity_days": 30})
    me_id = api.members[Role.MEMBER]
    api.patch(f"/api/members/{me_id}", {"birth_year": utcnow().year - 12})
    api.post(f"/api/members/{me_id}/trainings/pc", None)
    api.post(
        "/api/quotas",
        {"zone_id": "gaming", "age_group": "9-15", "daily_min": 90, "weekly_min": 300},
    )
    now = utcnow()
    start = now - timedelta(minutes=25)
    add_session(
        api,
        "mine-now",
        member_id=me_id,
        zone_id="gaming",
        used_s=1200,
        started_at=start,
        ended=False,
    )
    tz = api.settings.tz
    same_day = start.astimezone(tz).date() == now.astimezone(tz).date()
    same_week = start.astimezone(tz).isocalendar()[:2] == now.astimezone(tz).isocalendar()[:2]
    add_session(
        api,
        "mine-old",
        member_id=me_id,
        zone_id="gaming",
        used_s=999,
        started_at=now - timedelta(days=30),
    )
    add_session(
        api,
        "other",
        member_id=api.members[Role.ANIMATOR],
        zone_id="gaming",
        used_s=5000,
        started_at=now - timedelta(minutes=90),
    )
    response = api.get("/api/me", Role.MEMBER)
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["account"]["username"] == "member"
    assert me["first_name"] == "Member"
    assert me["age_group"] == "9-15"
    assert [t["training_id"] for t in me["trainings"]] == ["pc"]
    assert me["trainings"][0]["valid"] is True
    gaming = next(u for u in me["usage"] if u["zone_id"] == "gaming")
    assert gaming["today_s"] == (1200 if same_day else 0)  # counted on its start day
    assert gaming["week_s"] == (1200 if same_week else 0)  # the 30-day-old one is not
    assert gaming["daily_min"] == 90
    assert gaming["weekly_min"] == 300
    assert [s["machine_id"] for s in me["recent_sessions"]] == ["laser-1", "laser-1"]
    assert "5000" not in response.text


def test_me_without_a_linked_member(api: Api) -> None:
    api.patch(f"/api/accounts/{api.accounts[Role.COORDINATOR]}", {"member_id": None})
    me = api.get("/api/me", Role.COORDINATOR).json()
    assert me["first_name"] is None
    assert me["trainings"] == []
    assert me["usage"] == []


def test_account_crud(api: Api) -> None:
    created = api.post(
        "/api/accounts",
        {"username": "anim.2", "password": "plum-orbit-cactus-88", "role": "animator"},
    )
    assert created.status_code == 201, created.text
    account = created.json()
    assert "password" not in str(account)
    assert account["active"] is True
    assert (
        api.post(
            "/api/accounts",
            {"username": "anim.2", "password": "plum-orbit-cactus-88", "role": "animator"},
        ).status_code
        == 409
    )
    weak = api.post(
        "/api/accounts", {"username": "anim.3", "password": "short", "role": "animator"}
    )
    assert weak.status_code == 422
    [error] = weak.json()["detail"]
    assert error["loc"] == ["body", "password"]
    assert error["type"] == "weak_password"
    assert error["msg"].startswith("Mot de passe trop faible : au moins 12 caractères")
    assert "secrets.token_urlsafe" in error["msg"]  # how to make a good one
    for bad in (
        {"username": "a", "password": "plum-orbit-cactus-88", "role": "admin"},
        {"username": "ok-name", "password": "plum-orbit-cactus-88", "role": "god"},
        {
            "username": "ok-name",
            "password": "plum-orbit-cactus-88",
            "role": "admin",
            "member_id": 999_999,
        },
    ):
        assert api.post("/api/accounts", bad).status_code == 422, bad
    path = f"/api/accounts/{account['id']}"
    assert api.get(path).json() == account
    promoted = api.patch(path, {"role": "fabmanager", "member_id": api.members[Role.MEMBER]})
    assert promoted.json()["role"] == "fabmanager"
    assert promoted.json()["member_id"] == api.members[Role.MEMBER]
    assert [a["username"] for a in api.get("/api/accounts").json()].count("anim.2") == 1
    assert api.delete(path).status_code == 204
    assert api.get(path).json() == {"detail": "Compte introuvable"}


def test_password_role_and_activation_changes_revoke_tokens(api: Api) -> None:
    target = api.accounts[Role.ANIMATOR]
    assert api.patch(f"/api/accounts/{target}", {"password": "short"}).status_code == 422
    assert api.get("/api/me", Role.ANIMATOR).status_code == 200
    assert api.patch(f"/api/accounts/{target}", {"password": "lantern-gravel-otter-5"}).is_success
    assert api.get("/api/me", Role.ANIMATOR).status_code == 401
    with api.db() as s:
        assert s.scalar(select(ApiToken).where(ApiToken.account_id == target)) is None
        stored = s.scalar(select(Account.password_hash).where(Account.id == target))
    assert stored is not None
    assert "lantern-gravel-otter-5" not in stored
    api.client.cookies.clear()
    old = api.client.post("/api/auth/login", json={"username": "animator", "password": PASSWORD})
    assert old.status_code == 401
    fresh = api.client.post(
        "/api/auth/login", json={"username": "animator", "password": "lantern-gravel-otter-5"}
    )
    assert fresh.status_code == 200
    api.tokens[Role.ANIMATOR] = fresh.json()["token"]
    assert api.patch(f"/api/accounts/{target}", {"role": "coordinator"}).is_success
    assert api.get("/api/me", Role.ANIMATOR).status_code == 401


def test_admins_cannot_lock_themselves_out(api: Api) -> None:
    own = f"/api/accounts/{api.accounts[Role.ADMIN]}"
    assert api.patch(own, {"active": False}).status_code == 409
    assert api.patch(own, {"role": "member"}).status_code == 409
    assert api.delete(own).status_code == 409
    assert api.patch(own, {"role": "admin"}).status_code == 200
    assert api.get("/api/auth/me").json()["role"] == "admin"
