"""Issue 13: the API against an attacker on the LAN (bodies, throttle, headers, secrets
at rest, audit). The hostile-input walk over every route is in ``test_schemathesis.py``."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select

from hub.api.auth import LoginThrottle, PasswordChecker, pi_password_hasher
from hub.api.headers import DOCS_CSP, STRICT_CSP
from hub.api.proxy import TrustedProxies
from hub.audit import AuditTrail, Event
from hub.db.models import Account, AuditEvent, Role
from protocol.files import exposed_secrets, private_file, write_private
from protocol.ids import badge_hash
from tests.hub.api.conftest import PASSWORD, Api, add_session, build_api


@contextmanager
def _api(path: Path, **overrides: Any) -> Iterator[Api]:
    yield from build_api(f"sqlite:///{path / 'hub.db'}", **overrides)


def _login(api: Api, username: str, password: str, **kw: Any) -> Any:
    api.client.cookies.clear()
    return api.client.post(
        "/api/auth/login", json={"username": username, "password": password}, **kw
    )


# ------------------------------------------------------------------ 1. bodies


def test_an_anonymous_body_is_refused_before_it_is_parsed(sqlite_api: Api) -> None:
    # Today FastAPI parses the body before the role guard runs: broken JSON got a 422.
    response = sqlite_api.call(
        "POST",
        "/api/members",
        None,
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "Authentification requise"
    bad_token = sqlite_api.call(
        "POST", "/api/members", None, json={}, headers={"Authorization": "Bearer nope"}
    )
    assert bad_token.status_code == 401


def test_bodies_are_bounded_with_a_french_413(sqlite_api: Api) -> None:
    big = {"display_name": "x" * 70_000, "birth_year": 2000, "birth_month": 1}
    response = sqlite_api.post("/api/members", big)
    assert response.status_code == 413
    assert "Requête trop volumineuse" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"display_name": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'", "birth_year": 2000, "birth_month": 1}'

    streamed = sqlite_api.call(
        "POST", "/api/members", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert "Requête trop volumineuse" in streamed.json()["detail"]
    login = _login(sqlite_api, "admin", "p" * 5000)  # the login's bound is 4 KiB
    assert login.status_code == 413
    assert sqlite_api.post(
        "/api/members", {"display_name": "Ok", "birth_year": 2000, "birth_month": 1}
    ).is_success


# ------------------------------------------------------------------ 2. throttle race


class CountingHasher(PasswordHasher):
    """Counts verifications and the most that ran at once."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.calls = 0
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(0.05)  # hashing takes time: let the guesses overlap
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1


def test_fifty_parallel_guesses_get_the_allowed_tries_only(sqlite_api: Api) -> None:
    hasher = CountingHasher()
    app: Any = sqlite_api.client.app
    app.state.password_checker = PasswordChecker(hasher)
    throttle: LoginThrottle = app.state.login_throttle

    def guess(i: int) -> int:
        response = sqlite_api.client.post(
            "/api/auth/login", json={"username": "admin", "password": f"guess-{i}"}
        )
        return int(response.status_code)

    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(guess, range(50)))
    assert hasher.calls <= throttle.user_free, codes  # 44 of 50 got through before
    assert codes.count(401) == hasher.calls
    assert codes.count(429) == 50 - hasher.calls
    assert hasher.peak <= 2  # at most two hashes in memory at once


def test_the_hashing_cost_fits_a_pi_and_old_hashes_are_upgraded(sqlite_api: Api) -> None:
    hasher = pi_password_hasher()
    assert (hasher.memory_cost, hasher.time_cost, hasher.parallelism) == (19 * 1024, 2, 1)
    app: Any = sqlite_api.client.app
    app.state.password_checker = PasswordChecker(hasher)
    with sqlite_api.db() as s:
        account = s.get(Account, sqlite_api.accounts[Role.MEMBER])
        assert account is not None
        account.password_hash = PasswordHasher().hash(PASSWORD)  # argon2-cffi's 64 MiB
        s.commit()
    assert _login(sqlite_api, "member", PASSWORD).status_code == 200
    with sqlite_api.db() as s:
        stored = s.scalar(select(Account.password_hash).where(Account.username == "member"))
    assert stored is not None
    assert "m=19456,t=2,p=1" in stored


# ------------------------------------------------------------------ 3. delays, not lockout


def test_failures_grow_delays_up_to_a_cap_instead_of_locking_out() -> None:
    now = [0.0]
    throttle = LoginThrottle(user_free=5, max_delay_s=60.0, clock=lambda: now[0])
    for _ in range(5):
        assert throttle.begin("admin", "10.0.0.66") == 0
    waits = []
    for _ in range(10):
        wait = throttle.begin("admin", "10.0.0.66")
        assert wait > 0
        waits.append(wait)
        now[0] += wait
        assert throttle.begin("admin", "10.0.0.66") == 0  # admitted again after the delay
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(waits) == 60.0  # never a 5-minute lockout, however long the attack


def test_an_attacker_elsewhere_does_not_delay_the_admin_at_their_desk() -> None:
    now = [0.0]
    throttle = LoginThrottle(user_free=5, clock=lambda: now[0])
    assert throttle.begin("admin", "10.0.0.5") == 0
    throttle.succeeded("admin", "10.0.0.5")  # the admin's usual desk: a known-good pair
    for _ in range(20):
        throttle.begin("admin", "10.9.9.9")
    assert throttle.begin("admin", "10.9.9.9") > 0
    assert throttle.begin("admin", "10.0.0.5") == 0


def test_one_address_behind_the_router_cannot_lock_out_everyone() -> None:
    now = [0.0]
    throttle = LoginThrottle(address_free=30, max_delay_s=60.0, clock=lambda: now[0])
    for i in range(30):
        assert throttle.begin(f"user{i}", "192.168.1.1") == 0
    wait = throttle.begin("alice", "192.168.1.1")
    assert 0 < wait <= 60.0
    now[0] += wait
    assert throttle.begin("alice", "192.168.1.1") == 0


def test_forwarded_for_is_believed_only_from_trusted_proxies(tmp_path: Path) -> None:
    proxies = TrustedProxies(["10.0.0.1", "172.16.0.0/12"])
    assert proxies.client("10.0.0.1", "203.0.113.7") == "203.0.113.7"
    assert proxies.client("10.0.0.1", "1.2.3.4, 203.0.113.7, 172.16.5.5") == "203.0.113.7"
    assert proxies.client("10.0.0.2", "203.0.113.7") == "10.0.0.2"
    assert TrustedProxies([]).client("127.0.0.1", "203.0.113.7") == "127.0.0.1"


def test_rotating_forwarded_for_does_not_dodge_the_address_delay(sqlite_api: Api) -> None:
    app: Any = sqlite_api.client.app
    app.state.login_throttle = LoginThrottle(address_free=3)
    codes = [
        _login(
            sqlite_api, f"nobody{i}", "wrong-password", headers={"X-Forwarded-For": f"10.1.0.{i}"}
        ).status_code
        for i in range(6)
    ]
    assert codes[:3] == [401, 401, 401]
    assert set(codes[3:]) == {429}  # the client's own address counts, not its header


def test_a_trusted_proxy_gives_the_client_address_and_https(tmp_path: Path) -> None:
    with _api(tmp_path, trusted_proxies=["127.0.0.1"]) as api:
        proxied = TestClient(api.client.app, client=("127.0.0.1", 4000))
        response = proxied.post(
            "/api/auth/login",
            json={"username": "admin", "password": "wrong-password"},
            headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
        )
        assert response.status_code == 401
        assert response.headers["strict-transport-security"].startswith("max-age=")
        with api.db() as s:
            event = s.scalar(select(AuditEvent).where(AuditEvent.action == "login.failed"))
        assert event is not None
        assert event.address == "203.0.113.9"


# ------------------------------------------------------------------ 4. headers


def test_security_headers_on_every_answer(sqlite_api: Api) -> None:
    for response in (
        sqlite_api.get("/api/health", None),
        sqlite_api.get("/api/members"),
        sqlite_api.get("/api/nowhere"),
        sqlite_api.get(f"/api/members/{sqlite_api.members[Role.MEMBER]}/export"),
    ):
        h = response.headers
        assert h["content-security-policy"] == STRICT_CSP
        for directive in (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
        ):
            assert directive in h["content-security-policy"]
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "same-origin"
        assert h["cache-control"] == "no-store"
        assert "strict-transport-security" not in h  # plain HTTP: no HSTS
        assert "server" not in h
    docs = sqlite_api.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-security-policy"] == DOCS_CSP


def test_uvicorn_sends_no_server_header_and_ignores_proxy_headers() -> None:
    from hub.main import uvicorn_config
    from hub.settings import HubSettings

    config = uvicorn_config(object(), HubSettings(demo=True))  # type: ignore[arg-type]
    assert config.server_header is False
    assert config.proxy_headers is False


# ------------------------------------------------------------------ 5. passwords


@pytest.mark.parametrize(
    "password",
    ["aaaaaaaaaa", "aaaaaaaaaaaaaaaa", "password1234", "azertyuiop123", "admin-admin-admin"],
)
def test_weak_passwords_are_refused_with_the_way_to_a_good_one(
    sqlite_api: Api, password: str
) -> None:
    response = sqlite_api.post(
        "/api/accounts", {"username": "new.admin", "password": password, "role": "admin"}
    )
    assert response.status_code == 422, password
    [error] = response.json()["detail"]
    assert error["msg"].startswith("Mot de passe trop faible")
    assert "secrets.token_urlsafe" in error["msg"]


# ------------------------------------------------------------------ 6. files at rest


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_hub_database_and_its_wal_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with _api(tmp_path) as api:
            assert api.post("/api/zones", {"id": "fablab", "name": "FabLab"}).is_success
            files = [tmp_path / n for n in ("hub.db", "hub.db-wal", "hub.db-shm")]
            assert all(f.exists() for f in files)
            assert [_mode(f) for f in files] == [0o600] * 3
    finally:
        os.umask(old)


def test_private_files_lose_others_access_and_keep_a_service_group(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "new" / "journal.db"
        private_file(fresh)
        assert _mode(fresh) == 0o600
        shared = tmp_path / "policy.json"
        shared.write_text("{}")
        shared.chmod(0o644)
        private_file(shared)
        assert _mode(shared) == 0o640  # others' bit gone, a service group may read
        cache = tmp_path / "cache" / "policy.json"
        write_private(cache, b"{}")
        assert _mode(cache) == 0o600
        assert cache.read_bytes() == b"{}"
    finally:
        os.umask(old)


def test_a_readable_secret_holding_config_is_warned_about(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('site_secret = "x"\n')
    config.chmod(0o644)
    warning = exposed_secrets(config)
    assert warning is not None
    assert "chmod 0600" in warning
    config.chmod(0o600)
    assert exposed_secrets(config) is None
    plain = tmp_path / "plain.toml"
    plain.write_text('site = "x"\n')
    plain.chmod(0o644)
    assert exposed_secrets(plain) is None


def test_an_erased_badge_hash_is_gone_from_the_database_files(tmp_path: Path) -> None:
    with _api(tmp_path) as api:
        member = api.post(
            "/api/members", {"display_name": "Cible", "birth_year": 2000, "birth_month": 1}
        ).json()
        uid = "04A22B1C5D8081"
        assert api.post("/api/badges", {"member_id": member["id"], "uid": uid}).status_code == 201
        digest = badge_hash(api.settings.site_secret_bytes, uid)
        for i in range(5):
            add_session(api, f"s-{i}", member_id=member["id"], badge_hash=digest)
        files = [tmp_path / n for n in ("hub.db", "hub.db-wal", "hub.db-shm")]
        assert any(digest.encode() in f.read_bytes() for f in files if f.exists())
        assert api.post(f"/api/members/{member['id']}/erase", None).status_code == 204
        for f in files:
            if f.exists():
                assert digest.encode() not in f.read_bytes(), f.name


# ------------------------------------------------------------------ 7. audit


def test_failed_logins_are_audited_with_username_and_address_never_the_password(
    sqlite_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO"):
        assert _login(sqlite_api, "admin", "Wrong-Secret-Pw-1").status_code == 401
    assert "admin" in caplog.text
    assert "testclient" in caplog.text
    assert "Wrong-Secret-Pw-1" not in caplog.text
    assert _login(sqlite_api, "admin", PASSWORD).status_code == 200
    events = sqlite_api.get("/api/audit", params={"actor": "admin"}).json()["items"]
    failed = next(e for e in events if e["action"] == "login.failed")
    assert (failed["address"], failed["outcome"], failed["status"]) == ("testclient", "failed", 401)
    assert any(e["action"] == "login" and e["outcome"] == "ok" for e in events)
    assert "Wrong-Secret-Pw-1" not in str(events)


def test_staff_actions_are_audited_and_readable_by_admins_only(sqlite_api: Api) -> None:
    api = sqlite_api
    target = api.accounts[Role.ANIMATOR]
    assert api.patch(f"/api/accounts/{target}", {"role": "fabmanager"}).is_success
    member = api.post(
        "/api/members", {"display_name": "Léa Martin", "birth_year": 2010, "birth_month": 1}
    ).json()
    assert api.get(f"/api/members/{member['id']}/export").is_success
    assert api.post(f"/api/members/{member['id']}/erase", None).status_code == 204
    add_session(api, "s-open", member_id=None, ended=False)
    api.post("/api/sessions/s-open/end", {}, Role.FABMANAGER)
    body = api.get("/api/audit").json()
    actions = {e["action"]: e for e in body["items"]}
    role = actions["update_account"]
    assert (role["actor"], role["actor_role"]) == ("admin", "admin")
    assert role["target"] == f"account_id={target}"
    assert "role=fabmanager" in role["detail"]
    assert actions["export_member"]["target"] == f"member_id={member['id']}"
    assert actions["erase_member"]["outcome"] == "ok"
    assert actions["end_session"]["actor"] == "fabmanager"
    assert "Léa" not in str(body)  # no member's data
    assert "Martin" not in str(body)
    for role_ in (Role.FABMANAGER, Role.COORDINATOR, Role.MEMBER):  # animator: revoked
        assert api.get("/api/audit", role_).status_code == 403
    assert api.get("/api/audit", None).status_code == 401


def test_audit_events_are_purged_on_their_own_retention(sqlite_api: Api) -> None:
    now = [datetime.now(UTC)]
    trail = AuditTrail(sqlite_api.db, retention_days=30, purge_every_s=0, clock=lambda: now[0])
    trail.write(
        [Event(action="login", outcome="ok", actor="admin", at=now[0] - timedelta(days=40))]
    )
    trail.write([Event(action="login", outcome="ok", actor="admin", at=now[0] - timedelta(days=2))])
    with sqlite_api.db() as s:
        ages = sorted((now[0] - e.at).days for e in s.scalars(select(AuditEvent)))
    assert ages == [2]  # the second write purged the 40-day-old event
    # The app's trail keeps settings.audit_retention_days.
    assert sqlite_api.client.app.state.audit.retention == timedelta(  # type: ignore[attr-defined]
        days=sqlite_api.settings.audit_retention_days
    )
