"""Kiosk pairing tokens (stored hashed, bound to one machine, revocable) and form CSRF."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.db.models import KioskToken, Machine, MachineKind, Role, Zone
from hub.web.core import csrf_token
from hub.web.kiosk import KIOSK_COOKIE, kiosk_digest
from tests.hub.api.conftest import Api, build_api


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Api]:
    for api in build_api(f"sqlite:///{tmp_path / 'hub.db'}"):
        with api.db() as s:
            s.add(Zone(id="fablab", name="FabLab"))
            s.flush()
            for mid in ("laser-1", "printer-1"):
                s.add(
                    Machine(
                        id=mid, name=mid, kind=MachineKind.GENERIC, zone_id="fablab", edge_id="e1"
                    )
                )
            s.commit()
        yield api


def _pair(web: Api, machine: str) -> str:
    csrf = csrf_token(web.settings, web.tokens[Role.ADMIN])
    answer = web.call(
        "POST", "/kiosques", Role.ADMIN, data={"csrf": csrf, "machine_id": machine, "label": "t"}
    )
    assert answer.status_code == 201, answer.text
    found = re.search(r"/kiosk/[\w-]+\?appairage=([\w-]+)", answer.text)
    assert found is not None
    return found.group(1)


def test_a_pairing_token_is_stored_hashed_and_bound_to_its_machine(web: Api) -> None:
    token = _pair(web, "laser-1")
    with web.db() as s:
        rows = s.scalars(select(KioskToken)).all()
        assert [r.token_hash for r in rows] == [kiosk_digest(web.settings, token)]
        assert token not in rows[0].token_hash
    web.client.cookies.clear()
    paired = web.client.get(f"/kiosk/laser-1?appairage={token}", follow_redirects=False)
    assert paired.status_code == 303
    assert paired.headers["location"] == "/kiosk/laser-1?lang=fr"
    cookie = paired.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "Path=/kiosk/laser-1" in cookie
    assert "samesite=strict" in cookie.lower()
    # Another machine's kiosk does not accept it; an unknown token is refused.
    other = web.client.get(f"/kiosk/printer-1?appairage={token}", follow_redirects=False)
    assert other.status_code == 403
    assert (
        web.client.get("/kiosk/laser-1?appairage=nope", follow_redirects=False).status_code == 403
    )
    web.client.cookies.set(KIOSK_COOKIE, token)
    assert "non appairé" not in web.client.get("/kiosk/laser-1").text
    web.client.cookies.clear()
    assert "non appairé" in web.client.get("/kiosk/laser-1").text


def test_a_revoked_token_pairs_nothing_any_more(web: Api) -> None:
    token = _pair(web, "laser-1")
    with web.db() as s:
        token_id = s.scalars(select(KioskToken.id)).one()
    csrf = csrf_token(web.settings, web.tokens[Role.ADMIN])
    answer = web.call(
        "POST", f"/kiosques/{token_id}/revoquer", Role.ADMIN, data={"csrf": csrf},
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303
    web.client.cookies.clear()
    web.client.cookies.set(KIOSK_COOKIE, token)
    assert "non appairé" in web.client.get("/kiosk/laser-1").text
    web.client.cookies.clear()
    refused = web.client.get(f"/kiosk/laser-1?appairage={token}", follow_redirects=False)
    assert refused.status_code == 403


def test_forms_without_their_token_or_from_elsewhere_are_refused(web: Api) -> None:
    data = {"machine_id": "laser-1", "label": "x"}
    assert web.call("POST", "/kiosques", Role.ADMIN, data=data).status_code == 403
    wrong = web.call("POST", "/kiosques", Role.ADMIN, data={**data, "csrf": "0" * 40})
    assert wrong.status_code == 403
    csrf = csrf_token(web.settings, web.tokens[Role.ADMIN])
    foreign = web.call(
        "POST", "/kiosques", Role.ADMIN, data={**data, "csrf": csrf},
        headers={"Origin": "http://evil.example"},
    )  # fmt: skip
    assert foreign.status_code == 403
    assert "Formulaire refusé" in foreign.text
    with web.db() as s:
        assert s.scalars(select(KioskToken)).all() == []
