"""Login, cookie and bearer tokens, logout, expiry, throttling, account creation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from hub.api.auth import (
    COOKIE_NAME,
    LoginThrottle,
    WeakPasswordError,
    create_account,
    token_digest,
)
from hub.db.models import Account, ApiToken, Role
from protocol.messages import utcnow
from tests.hub.api.conftest import CHEAP_HASHER, PASSWORD, Api


def _login(client: TestClient, username: str, password: str) -> object:
    return client.post("/api/auth/login", json={"username": username, "password": password})


def test_login_sets_a_strict_httponly_cookie_and_stores_only_a_digest(api: Api) -> None:
    client = api.client
    client.cookies.clear()
    response = _login(client, "coordinator", PASSWORD)
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    token = body["token"]
    assert body["account"]["role"] == "coordinator"
    assert "password_hash" not in body["account"]
    cookie = response.headers["set-cookie"]  # type: ignore[attr-defined]
    assert cookie.startswith(f"{COOKIE_NAME}={token};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert "Secure" not in cookie  # plain http in tests; https sets it
    # The cookie alone authenticates.
    me = client.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json()["username"] == "coordinator"
    # The store keeps the keyed digest, never the token.
    with api.db() as s:
        hashes = list(s.scalars(select(ApiToken.token_hash)))
        expires = s.scalar(
            select(ApiToken.expires_at).where(
                ApiToken.token_hash == token_digest(api.settings, token)
            )
        )
    assert token not in hashes
    assert token_digest(api.settings, token) in hashes
    assert expires is not None
    ttl = expires - utcnow()
    assert timedelta(hours=api.settings.token_ttl_h) - timedelta(minutes=1) < ttl
    assert ttl <= timedelta(hours=api.settings.token_ttl_h)


def test_bearer_token_from_login_works_and_logout_revokes_it(api: Api) -> None:
    api.client.cookies.clear()
    token = _login(api.client, "animator", PASSWORD).json()["token"]  # type: ignore[attr-defined]
    api.client.cookies.clear()
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/auth/me", headers=headers).json()["role"] == "animator"
    out = api.client.post("/api/auth/logout", headers=headers)
    assert out.status_code == 200
    assert COOKIE_NAME in out.headers["set-cookie"]  # cleared
    again = api.client.get("/api/auth/me", headers=headers)
    assert again.status_code == 401
    assert again.json()["detail"] == "Session expirée ou invalide : reconnectez-vous"
    # The other tokens of the same account are untouched.
    assert api.get("/api/auth/me", Role.ANIMATOR).status_code == 200


def test_failed_logins_get_one_generic_french_message(api: Api) -> None:
    api.client.cookies.clear()
    wrong = _login(api.client, "admin", "not the password")
    unknown = _login(api.client, "nobody", "whatever-password")
    for response in (wrong, unknown):
        assert response.status_code == 401  # type: ignore[attr-defined]
        assert response.json() == {  # type: ignore[attr-defined]
            "detail": "Identifiant ou mot de passe incorrect"
        }
        assert "set-cookie" not in response.headers  # type: ignore[attr-defined]


def test_expired_token_is_refused_and_deleted(api: Api) -> None:
    digest = token_digest(api.settings, api.tokens[Role.FABMANAGER])
    with api.db() as s:
        s.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == digest)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        s.commit()
    response = api.get("/api/auth/me", Role.FABMANAGER)
    assert response.status_code == 401
    with api.db() as s:
        assert s.scalar(select(ApiToken).where(ApiToken.token_hash == digest)) is None


def test_missing_garbage_and_deactivated_credentials_are_401(api: Api) -> None:
    assert api.get("/api/auth/me", None).status_code == 401
    garbage = api.get("/api/auth/me", None, headers={"Authorization": "Bearer " + "x" * 5000})
    assert garbage.status_code == 401
    basic = api.get("/api/auth/me", None, headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert basic.status_code == 401
    assert api.patch(f"/api/accounts/{api.accounts[Role.MEMBER]}", {"active": False}).is_success
    assert api.get("/api/me", Role.MEMBER).status_code == 401
    api.client.cookies.clear()
    assert _login(api.client, "member", PASSWORD).status_code == 401  # type: ignore[attr-defined]


def test_repeated_failures_are_throttled_even_with_the_right_password(api: Api) -> None:
    throttle: LoginThrottle = api.client.app.state.login_throttle  # type: ignore[attr-defined]
    api.client.cookies.clear()
    for _ in range(throttle.user_free):
        response = _login(api.client, "admin", "wrong-password")
        assert response.status_code == 401  # type: ignore[attr-defined]
    blocked = _login(api.client, "admin", PASSWORD)
    assert blocked.status_code == 429  # type: ignore[attr-defined]
    assert int(blocked.headers["retry-after"]) > 0  # type: ignore[attr-defined]
    assert "Trop de tentatives" in blocked.json()["detail"]  # type: ignore[attr-defined]
    # Other users of the same address are not locked out by one person's mistakes.
    assert _login(api.client, "fabmanager", PASSWORD).status_code == 200  # type: ignore[attr-defined]


def test_login_throttle_per_user_per_address_and_forgetting() -> None:
    now = [0.0]
    throttle = LoginThrottle(user_free=2, address_free=3, forget_s=100.0, clock=lambda: now[0])
    assert throttle.begin("Alice", "10.0.0.1") == 0
    assert throttle.retry_after("alice", "10.0.0.1") == 0
    assert throttle.begin("alice", "10.0.0.2") == 0
    assert throttle.retry_after("alice", "10.0.0.9") > 0  # the user, from anywhere
    assert throttle.retry_after("bob", "10.0.0.1") == 0
    assert throttle.begin("bob", "10.0.0.1") == 0
    assert throttle.begin("carol", "10.0.0.1") == 0
    assert throttle.retry_after("dave", "10.0.0.1") > 0  # the address, for anyone
    assert throttle.retry_after("dave", "10.0.0.3") == 0
    now[0] = 101.0
    assert throttle.retry_after("dave", "10.0.0.1") == 0
    assert throttle.retry_after("alice", "10.0.0.9") == 0


def test_login_rehashes_passwords_hashed_with_older_parameters(api: Api) -> None:
    old = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    with api.db() as s:
        account = s.get(Account, api.accounts[Role.MEMBER])
        assert account is not None
        account.password_hash = old.hash(PASSWORD)
        s.commit()
    api.client.cookies.clear()
    assert _login(api.client, "member", PASSWORD).status_code == 200  # type: ignore[attr-defined]
    with api.db() as s:
        stored = s.scalar(select(Account.password_hash).where(Account.username == "member"))
    assert stored is not None
    assert not CHEAP_HASHER.check_needs_rehash(stored)
    assert stored.startswith("$argon2id$")


def test_create_account_for_the_cli(api: Api) -> None:
    with api.db() as s:
        account = create_account(
            s, "new.admin", "violet-kettle-maple-42", "admin", hasher=CHEAP_HASHER
        )
        s.commit()
        assert account.role is Role.ADMIN
        assert "violet-kettle-maple-42" not in account.password_hash
        assert CHEAP_HASHER.verify(account.password_hash, "violet-kettle-maple-42")
        with pytest.raises(WeakPasswordError, match="au moins 12"):
            create_account(s, "weak", "short", Role.ADMIN, hasher=CHEAP_HASHER)
        with pytest.raises(ValueError, match="déjà utilisé"):
            create_account(s, "new.admin", "another-password", Role.ADMIN, hasher=CHEAP_HASHER)
        with pytest.raises(ValueError, match="Rôle inconnu"):
            create_account(s, "x-user", "another-password", "root", hasher=CHEAP_HASHER)
        with pytest.raises(ValueError, match="introuvable"):
            create_account(s, "y-user", "another-password", "admin", 999_999, hasher=CHEAP_HASHER)
        with pytest.raises(ValueError, match="Identifiant invalide"):
            create_account(s, "a b", "another-password", "admin", hasher=CHEAP_HASHER)
    api.client.cookies.clear()
    assert _login(api.client, "new.admin", "violet-kettle-maple-42").status_code == 200  # type: ignore[attr-defined]
