"""App-level behaviour: health, OpenAPI, French errors, and no 5xx on hostile input.

The fuzz test builds request bodies and path values from the app's own OpenAPI schema
(field names right, values hostile: huge numbers, NUL bytes, wrong types, long strings)
and checks that every answer is a precise 4xx or a success, never a server error,
on both SQLite and PostgreSQL (which refuses out-of-range integers and NUL bytes).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import OperationalError

from hub.api.deps import get_db
from hub.db.models import Role
from tests.hub.api.conftest import Api, build_api


def test_health_needs_no_credentials(api: Api) -> None:
    response = api.get("/api/health", None)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_health_reports_a_dead_database(api: Api) -> None:
    class DeadSession:
        def execute(self, *args: Any, **kwargs: Any) -> None:
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    app = api.client.app
    app.dependency_overrides[get_db] = lambda: DeadSession()  # type: ignore[attr-defined]
    try:
        response = api.get("/api/health", None)
    finally:
        app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert response.status_code == 503
    assert response.json() == {"detail": "Base de données indisponible"}


def test_openapi_documents_every_operation(api: Api) -> None:
    schema = api.get("/openapi.json").json()
    tags = {t["name"] for t in schema["tags"]}
    operations = [
        (path, method, op) for path, item in schema["paths"].items() for method, op in item.items()
    ]
    assert len(operations) > 60
    for path, method, op in operations:
        assert op.get("summary"), (method, path)
        assert op.get("tags"), (method, path)
        assert set(op["tags"]) <= tags, (method, path)
        assert "Roles:" in op.get("description", ""), (method, path)
    members = schema["paths"]["/api/members"]["get"]["description"]
    assert members.endswith("Roles: admin, animator, fabmanager.")
    docs = api.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert "'/openapi.json'" in docs.text


PRODUCTION = {
    "demo": False,
    "site_secret": "9b2e7c41f0a85d36e1c4b7a2908f5d3e61",
    "session_secret": "4d8a1f6e2c09b73a5e8d1c4f7b2a6e90d3",
}


@pytest.mark.parametrize(
    ("overrides", "anonymous", "member", "admin"),
    [
        pytest.param({"api_docs": None}, 200, 200, 200, id="demo-default-public"),
        pytest.param({"api_docs": None, **PRODUCTION}, 401, 403, 200, id="prod-default-admin"),
        pytest.param({"api_docs": "public", **PRODUCTION}, 200, 200, 200, id="public"),
        pytest.param({"api_docs": "off"}, 404, 404, 404, id="off"),
    ],
)
def test_documentation_follows_the_api_docs_setting(
    tmp_path: Path, overrides: dict[str, Any], anonymous: int, member: int, admin: int
) -> None:
    with contextmanager(build_api)(f"sqlite:///{tmp_path / 'hub.db'}", **overrides) as api:
        for path in ("/docs", "/openapi.json"):
            assert api.get(path, None).status_code == anonymous, path
            assert api.get(path, Role.MEMBER).status_code == member, path
            assert api.get(path, Role.ADMIN).status_code == admin, path
        assert api.get("/redoc", Role.ADMIN).status_code == 404  # one documentation UI
        if anonymous == 401:
            assert api.get("/openapi.json", None).json() == {"detail": "Authentification requise"}
            refused = api.get("/docs", Role.FABMANAGER).json()
            assert refused == {"detail": "Votre rôle ne permet pas cette action"}
        if admin == 200:
            schema = api.get("/openapi.json", Role.ADMIN).json()
            assert "/api/members" in schema["paths"]
            assert "/docs" not in schema["paths"]
            assert "/openapi.json" not in schema["paths"]


def test_framework_errors_are_french(api: Api) -> None:
    assert api.call("PUT", "/api/zones").json() == {"detail": "Méthode non autorisée"}
    invalid_json = api.call(
        "POST", "/api/zones", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert invalid_json.status_code == 422
    assert invalid_json.json()["detail"][0]["msg"] == "JSON invalide"
    missing = api.post("/api/zones", {"name": "FabLab"}).json()["detail"]
    assert missing == [{"loc": ["body", "id"], "msg": "Champ obligatoire", "type": "missing"}]
    not_object = api.post("/api/zones", [1, 2]).json()["detail"]
    assert not_object[0]["msg"] == "Objet JSON attendu"


# --------------------------------------------------------------------------- fuzzing

HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.sampled_from([0, 1, -1, 2**31, 2**31 - 1, 10**20]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "a\x00b",
            "x" * 300,
            "fablab",
            "9-15",
            "14:00",
            "25:61",
            "2030-02-30",
            "2025-03-01T10:00:00",
            "0001-01-01T00:00:00+14:00",
            "04:A2",
            "laser",
            "admin",
        ]
    ),
    st.lists(st.sampled_from(["fablab", "9-15", "a\x00", "X" * 40, "laser"]), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _bodies(schema: dict[str, Any], ref: str | None) -> st.SearchStrategy[Any]:
    if ref is None:
        return st.just(None)
    component = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    names = [*sorted(component.get("properties", {})), "unexpected"]
    return st.one_of(
        st.dictionaries(st.sampled_from(names), HOSTILE, max_size=len(names)),
        HOSTILE,
    )


def _operations(api: Api) -> list[tuple[str, str, str | None]]:
    schema = api.get("/openapi.json").json()
    result = []
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if path in ("/api/auth/logout",):
                continue
            content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            body = content.get("schema", {})
            ref = body.get("$ref") or next(
                (s["$ref"] for s in body.get("anyOf", []) if "$ref" in s), None
            )
            result.append((method.upper(), path, ref))
    return result


PATH_VALUES = st.sampled_from(
    ["fablab", "1", "0", "-1", "99999999999999999999", "2147483648", "abc", "a%00b", "x" * 70]
)


def test_hostile_input_never_causes_a_server_error(api: Api) -> None:
    schema = api.get("/openapi.json").json()
    operations = _operations(api)
    api.post("/api/zones", {"id": "fablab", "name": "FabLab"})
    api.post("/api/trainings", {"id": "laser", "name": "Laser"})
    api.post("/api/members", {"display_name": "Cible", "birth_year": 2010, "birth_month": 1})

    @settings(
        max_examples=250,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        method, template, ref = data.draw(st.sampled_from(operations))
        path = re.sub(r"\{\w+\}", lambda _: data.draw(PATH_VALUES), template)
        query = data.draw(
            st.dictionaries(
                st.sampled_from(
                    [
                        "limit",
                        "offset",
                        "since",
                        "until",
                        "by",
                        "member_id",
                        "zone_id",
                        "state",
                        "q",
                        "erase",
                        "status",
                    ]
                ),
                st.one_of(st.text(max_size=12), PATH_VALUES),
                max_size=3,
            )
        )
        body = data.draw(_bodies(schema, ref)) if method in ("POST", "PATCH") else None
        kwargs: dict[str, Any] = {"params": query}
        if body is not None:
            kwargs["json"] = body
        response = api.call(method, path, Role.ADMIN, **kwargs)
        assert response.status_code < 500, (method, path, query, body, response.text)
        if response.status_code >= 400:
            assert response.json()["detail"], (method, path)

    run()
