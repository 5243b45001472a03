"""The role matrix: every route × every role (and anonymous) against an independent table.

``EXPECTED`` is written here by hand, not derived from ``hub.api.auth.MATRIX``: it is the
inventory of the API (OWASP API9). A new route without an entry here, or a route whose
roles change, fails these tests.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import APIRouter

from hub.api.app import PUBLIC_ROUTES, api_routes, check_role_matrix
from hub.api.deps import guard_of
from hub.db.models import Badge, Member, Role, StaffPresence
from hub.web import PUBLIC_PAGES
from protocol.messages import utcnow
from tests.hub.api.conftest import ROLES, Api, add_session

ALL = "admin fabmanager animator coordinator member"
STAFF_COORD = "admin fabmanager animator coordinator"
FLOOR = "admin fabmanager animator"
MANAGE = "admin fabmanager"
REPORTS = "admin fabmanager coordinator"
ADMIN = "admin"

EXPECTED: dict[str, str] = {
    "POST /api/auth/logout": ALL,
    "GET /api/auth/me": ALL,
    "GET /api/me": ALL,
    "GET /api/live/machines": STAFF_COORD,
    "GET /api/edges": FLOOR,
    "GET /api/alerts": FLOOR,
    "POST /api/alerts/{alert_id}/resolve": FLOOR,
    "GET /api/presence": FLOOR,
    "POST /api/presence": FLOOR,
    "DELETE /api/presence": FLOOR,
    "GET /api/sessions": FLOOR,
    "GET /api/sessions/{session_id}": FLOOR,
    "POST /api/sessions/{session_id}/end": FLOOR,
    "POST /api/sessions/{session_id}/extend": FLOOR,
    "GET /api/jobs": MANAGE,
    "GET /api/usage/totals": REPORTS,
    "GET /api/usage/report.csv": REPORTS,
    "GET /api/machines": STAFF_COORD,
    "POST /api/machines": ADMIN,
    "GET /api/machines/{machine_id}": STAFF_COORD,
    "PATCH /api/machines/{machine_id}": ADMIN,
    "DELETE /api/machines/{machine_id}": ADMIN,
    "POST /api/machines/{machine_id}/maintenance": FLOOR,
    "POST /api/machines/{machine_id}/commands": FLOOR,
    "GET /api/members": FLOOR,
    "POST /api/members": ADMIN,
    "GET /api/members/{member_id}": FLOOR,
    "PATCH /api/members/{member_id}": ADMIN,
    "DELETE /api/members/{member_id}": ADMIN,
    "POST /api/members/{member_id}/erase": ADMIN,
    "GET /api/members/{member_id}/export": ADMIN,
    "GET /api/members/{member_id}/trainings": FLOOR,
    "POST /api/members/{member_id}/trainings/{training_id}": MANAGE,
    "DELETE /api/members/{member_id}/trainings/{training_id}": MANAGE,
    "GET /api/badges": MANAGE,
    "POST /api/badges": MANAGE,
    "GET /api/badges/{badge_id}": MANAGE,
    "PATCH /api/badges/{badge_id}": MANAGE,
    "POST /api/badges/{badge_id}/revoke": MANAGE,
    "DELETE /api/badges/{badge_id}": ADMIN,
    **{
        f"{method} /api/{resource}{suffix}": roles
        for resource, key in (
            ("zones", "zone_id"),
            ("programmes", "programme_id"),
            ("trainings", "training_id"),
            ("slots", "slot_id"),
            ("slot-exceptions", "exception_id"),
            ("quotas", "quota_id"),
        )
        for method, suffix, roles in (
            ("GET", "", STAFF_COORD),
            ("POST", "", ADMIN),
            ("GET", f"/{{{key}}}", STAFF_COORD),
            ("PATCH", f"/{{{key}}}", ADMIN),
            ("DELETE", f"/{{{key}}}", ADMIN),
        )
    },
    "POST /api/zones/{zone_id}/quotas/recommended": MANAGE,
    "GET /api/audit": ADMIN,
    "GET /api/accounts": ADMIN,
    "POST /api/accounts": ADMIN,
    "GET /api/accounts/{account_id}": ADMIN,
    "PATCH /api/accounts/{account_id}": ADMIN,
    "DELETE /api/accounts/{account_id}": ADMIN,
    # The documentation, as in production (``api_docs = "admin"``).
    "GET /docs": ADMIN,
    "GET /openapi.json": ADMIN,
}


def _seed(api: Api) -> dict[str, str]:
    """Objects every path parameter can point at; the victims belong to no test account."""
    for path, body in (
        ("/api/zones", {"id": "fablab", "name": "FabLab"}),
        ("/api/programmes", {"id": "fablab-9-15", "name": "FabLab 9/15"}),
        ("/api/trainings", {"id": "laser", "name": "Laser", "validity_days": 365}),
        (
            "/api/machines",
            {
                "id": "laser-1",
                "name": "Laser",
                "kind": "laser",
                "zone_id": "fablab",
                "edge_id": "edge-1",
            },
        ),
    ):
        assert api.post(path, body).status_code == 201, path
    slot = api.post(
        "/api/slots", {"zone_id": "fablab", "weekday": 2, "start": "14:00", "end": "18:00"}
    ).json()
    exc = api.post(
        "/api/slot-exceptions", {"day": "2030-12-25", "kind": "closure", "label": "Noël"}
    ).json()
    quota = api.post("/api/quotas", {"zone_id": "fablab", "age_group": "9-15", "daily_min": 60})
    victim = api.post(
        "/api/members",
        {
            "display_name": "Victime",
            "birth_year": 2012,
            "birth_month": 3,
            "consent_at": "2024-01-01",
        },
    ).json()
    api.post(f"/api/members/{victim['id']}/trainings/laser", None)
    badge = api.post("/api/badges", {"member_id": victim["id"], "uid": "04:A2:2B:1C"}).json()
    account = api.post(
        "/api/accounts",
        {"username": "victim", "password": "plum-orbit-cactus-88", "role": "member"},
    ).json()
    add_session(api, "sess-1", member_id=victim["id"], ended=False)
    with api.db() as s:
        from hub.db.models import Alert

        alert = Alert(kind="machine_offline", machine_id="laser-1", detail="test")
        s.add(alert)
        for role in ROLES:
            s.add(
                StaffPresence(
                    member_id=api.members[role],
                    zone_id="fablab",
                    since=utcnow(),
                    until=utcnow().replace(year=2100),
                )
            )
        s.commit()
        alert_id = alert.id
        assert s.get(Badge, badge["id"]) is not None
        assert s.get(Member, victim["id"]) is not None
    return {
        "zone_id": "fablab",
        "programme_id": "fablab-9-15",
        "training_id": "laser",
        "machine_id": "laser-1",
        "slot_id": str(slot["id"]),
        "exception_id": str(exc["id"]),
        "quota_id": str(quota.json()["id"]),
        "member_id": str(victim["id"]),
        "badge_id": str(badge["id"]),
        "account_id": str(account["id"]),
        "session_id": "sess-1",
        "alert_id": str(alert_id),
    }


def _is_page(route: Any) -> bool:
    """Web UI pages (hub.web) have their own inventory in tests/web/test_pages.py."""
    return str(route.endpoint.__module__).startswith("hub.web")


def _routes(api: Api) -> list[tuple[str, str]]:
    app = api.client.app
    return [
        (method, path)
        for path, methods, route in api_routes(app)  # type: ignore[arg-type]
        if not _is_page(route)
        for method in sorted(methods)
    ]


def test_every_route_has_an_entry_in_the_inventory(sqlite_api: Api) -> None:
    routes = {f"{m} {p}" for m, p in _routes(sqlite_api)}
    public = {f"{m} {p}" for m, p in PUBLIC_ROUTES - PUBLIC_PAGES}
    assert routes - public - EXPECTED.keys() == set(), "routes missing from EXPECTED"
    assert EXPECTED.keys() - routes == set(), "EXPECTED lists routes that do not exist"
    assert public <= routes


def test_every_route_declares_exactly_one_capability(sqlite_api: Api) -> None:
    for path, methods, route in api_routes(sqlite_api.client.app):  # type: ignore[arg-type]
        if _is_page(route):
            continue
        guards = guard_of(route.dependencies)
        if all((m, path) in PUBLIC_ROUTES for m in methods):
            assert guards == [], path
        else:
            assert len(guards) == 1, f"{methods} {path}"
            expected = {Role(r) for r in EXPECTED[f"{next(iter(methods))} {path}"].split()}
            assert set(guards[0].roles) == expected, path


def test_every_route_times_every_role(sqlite_api: Api) -> None:
    """Anonymous: 401 everywhere; a role outside the matrix: 403; inside: anything else."""
    api = sqlite_api
    params = _seed(api)
    checked = 0
    # Logout last (it revokes the token); least privileged roles first, so that admin's
    # deletions come last.
    routes = sorted(_routes(api), key=lambda r: r == ("POST", "/api/auth/logout"))
    for role in (None, Role.MEMBER, Role.COORDINATOR, Role.ANIMATOR, Role.FABMANAGER, Role.ADMIN):
        for method, template in routes:
            path = re.sub(r"\{(\w+)\}", lambda m: params[m.group(1)], template)
            body: dict[str, Any] | None = {} if method in ("POST", "PATCH") else None
            response = api.call(method, path, role, json=body)
            key = f"{method} {template}"
            if (method, template) in PUBLIC_ROUTES:
                assert response.status_code not in (401, 403), key
                continue
            allowed = {Role(r) for r in EXPECTED[key].split()}
            if role is None:
                assert response.status_code == 401, (key, response.text)
                assert response.headers.get("www-authenticate") == "Bearer"
            elif role in allowed:
                assert response.status_code not in (401, 403), (key, role, response.text)
                assert response.status_code < 500, (key, role, response.text)
            else:
                assert response.status_code == 403, (key, role, response.text)
                assert response.json()["detail"] == "Votre rôle ne permet pas cette action"
            checked += 1
    assert checked == 6 * len(EXPECTED)


def test_an_unguarded_route_is_refused_at_build_time(sqlite_api: Api) -> None:
    app = sqlite_api.client.app
    router = APIRouter()

    @router.get("/api/oops")
    def oops() -> dict[str, str]:
        return {}

    @router.get("/pages/oops")  # outside /api too: a future web page must declare its roles
    def page() -> dict[str, str]:
        return {}

    app.include_router(router)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match=r"/api/oops has 0 role guards.*/pages/oops has 0"):
        check_role_matrix(app)  # type: ignore[arg-type]
