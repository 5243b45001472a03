"""Issue 13, case 8: Schemathesis over every route of the OpenAPI schema, as an admin.

In process (ASGI, no server), on SQLite. Every generated call must answer below 500, and
every 4xx must carry a French ``detail`` (a sentence, or FastAPI's list of field errors
with French messages). The admin's token is issued afresh for each call, so a fuzzed
password change or logout cannot silently turn the rest of the run into 401s: a 401 is
retried once with a fresh token.

``FABRIQUE_FUZZ_EXAMPLES`` sets the examples per operation and generation mode (positive
and negative; default 10).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET
from sqlalchemy import select

from hub.api.auth import create_account, issue_token
from hub.db.models import Account, Role
from tests.hub.api.conftest import CHEAP_HASHER, PASSWORD, Api, build_api

EXAMPLES = int(os.environ.get("FABRIQUE_FUZZ_EXAMPLES", "10"))

#: What FastAPI, Starlette and pydantic say in English when a handler forgot French.
ENGLISH = re.compile(
    r"\b(Input should|Field required|should be|is not|are not|must be|not found|"
    r"There was an error|Not authenticated|Value error|Extra inputs|Unable to|invalid)\b",
    re.IGNORECASE,
)
PHRASES = {s.phrase.lower() for s in HTTPStatus}


def _english(message: str) -> bool:
    return message.strip().lower() in PHRASES or bool(ENGLISH.search(message))


def assert_french_detail(response: Any) -> None:
    body = response.json()
    assert isinstance(body, dict), body
    assert "detail" in body, body
    detail = body["detail"]
    if isinstance(detail, str):
        assert detail.strip(), body
        assert not _english(detail), detail
    else:
        assert isinstance(detail, list), body
        assert detail, body
        for error in detail:
            assert error["msg"].strip(), error
            assert not _english(error["msg"]), error


def test_the_french_check_catches_english() -> None:
    class Fake:
        def __init__(self, body: Any) -> None:
            self.body = body

        def json(self) -> Any:
            return self.body

    for english in ("Not Found", "Method Not Allowed", "There was an error parsing the body"):
        with pytest.raises(AssertionError):
            assert_french_detail(Fake({"detail": english}))
    with pytest.raises(AssertionError):
        assert_french_detail(Fake({"detail": [{"msg": "Field required"}]}))
    assert_french_detail(Fake({"detail": "Ressource introuvable"}))


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    # In memory-backed storage when there is one: thousands of fsyncs are not the point.
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(dir=shm) as folder:
            yield from build_api(f"sqlite:///{Path(folder) / 'hub.db'}")
        return
    path: Path = tmp_path_factory.mktemp("fuzz") / "hub.db"
    yield from build_api(f"sqlite:///{path}")


def admin_token(api: Api) -> str:
    """A fresh admin token (recreating or reactivating the account if a call undid it)."""
    with api.db() as s:
        account = s.scalar(select(Account).where(Account.username == "admin"))
        if account is None:
            account = create_account(s, "admin", PASSWORD, Role.ADMIN, hasher=CHEAP_HASHER)
        account.active = True
        account.role = Role.ADMIN
        token, _ = issue_token(s, api.settings, account)
        s.commit()
    return token


@pytest.fixture(scope="module")
def api_schema(fuzz_api: Api) -> Any:
    fuzz_api.post("/api/zones", {"id": "fablab", "name": "FabLab"})
    fuzz_api.post("/api/trainings", {"id": "laser", "name": "Laser"})
    fuzz_api.post("/api/members", {"display_name": "Cible", "birth_year": 2010, "birth_month": 1})
    auth = {"Authorization": f"Bearer {admin_token(fuzz_api)}"}
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_api.client.app, headers=auth)


def send(api: Api, case: Any, token: str) -> Any:
    """Send a generated case through the app's TestClient (not Schemathesis's own
    ``requests`` transport, which another dependency's urllib3 replacement can break)."""
    headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
    headers["Authorization"] = f"Bearer {token}"
    kwargs: dict[str, Any] = {"params": case.query or None, "headers": headers}
    if case.body is not NOT_SET:
        media = case.media_type or "application/json"
        if isinstance(case.body, bytes | str) or "json" not in media:
            body = case.body if isinstance(case.body, bytes | str) else json.dumps(case.body)
            kwargs["content"] = body
            headers.setdefault("Content-Type", media)
        else:
            kwargs["json"] = case.body
    return api.client.request(case.method, case.formatted_path, **kwargs)


def test_every_route_answers_below_500_and_in_french(api_schema: Any, fuzz_api: Api) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 50  # the whole schema, not an empty walk
    failures: list[str] = []
    calls = 0
    token = [admin_token(fuzz_api)]

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],  # report the first failure unshrunk
                suppress_health_check=list(HealthCheck),
            )
            def walk(case: Any) -> None:
                nonlocal calls
                calls += 1
                fuzz_api.client.cookies.clear()
                response = send(fuzz_api, case, token[0])
                if response.status_code == 401 and case.path != "/api/auth/login":
                    token[0] = admin_token(fuzz_api)  # a fuzzed call revoked it
                    response = send(fuzz_api, case, token[0])
                where = f"{case.method} {case.formatted_path} {case.query} {case.body!r}"
                assert response.status_code < 500, (where, response.text[:300])
                if 400 <= response.status_code < 500:
                    assert_french_detail(response)

            try:
                walk()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                continue
            except Exception as err:  # keep walking: report every broken route at once
                failures.append(f"{operation.label} ({mode.value}): {err!s:.600}")
    print(f"{calls} calls over {len(operations)} operations")
    assert not failures, "\n".join(failures)
