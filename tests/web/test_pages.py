"""The web pages' role matrix: every page route × every role against a hand-written table.

Like ``tests/hub/api/test_roles.py`` for the API: ``EXPECTED`` is the inventory of the
web UI, written by hand. A new page without an entry, or a page whose roles change,
fails here. Then every page is called as every role (and anonymous): anonymous is sent
to the login page (GET) or refused (POST), a role outside the table gets the French
403 page, a role inside gets anything but a refusal or a server error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, time
from pathlib import Path

import pytest

from hub.api.app import api_routes
from hub.api.deps import guard_of
from hub.db.models import (
    Alert,
    Machine,
    MachineKind,
    Member,
    Quota,
    Role,
    Slot,
    SlotException,
    Training,
    Zone,
)
from hub.web.core import csrf_token
from tests.hub.api.conftest import Api, build_api

PUBLIC = "public"
ALL = "admin animator coordinator fabmanager member"
LIVE = "admin animator coordinator fabmanager"
FLOOR = "admin animator fabmanager"
MANAGE = "admin fabmanager"
REPORTS = "admin coordinator fabmanager"
ADMIN = "admin"

EXPECTED: dict[str, str] = {
    "GET /": PUBLIC,
    "GET /connexion": PUBLIC,
    "POST /connexion": PUBLIC,
    "POST /deconnexion": ALL,
    "GET /plancher": LIVE,
    "GET /plancher/flux": LIVE,
    "POST /alertes/{alert_id}/vu": FLOOR,
    "POST /alertes/{alert_id}/resolu": FLOOR,
    "GET /machines/{machine_id}": LIVE,
    "GET /machines/{machine_id}/flux": LIVE,
    "GET /machines/{machine_id}/confirmer": LIVE,
    "POST /machines/{machine_id}/session": FLOOR,
    "POST /machines/{machine_id}/commande": FLOOR,
    "GET /kiosk/{machine_id}": PUBLIC,
    "GET /kiosk/{machine_id}/flux": PUBLIC,
    "GET /kiosques": ADMIN,
    "POST /kiosques": ADMIN,
    "POST /kiosques/{token_id}/revoquer": ADMIN,
    "GET /membres": MANAGE,
    "GET /membres/nouveau": ADMIN,
    "POST /membres/nouveau": ADMIN,
    "GET /membres/{member_id}": MANAGE,
    "POST /membres/{member_id}": ADMIN,
    "POST /membres/{member_id}/formations": MANAGE,
    "POST /membres/{member_id}/formations/{training_id}/retirer": MANAGE,
    "POST /membres/{member_id}/badges/{badge_id}/revoquer": MANAGE,
    "POST /membres/{member_id}/badges/associer": MANAGE,
    "GET /membres/{member_id}/badges/attente/{token}": MANAGE,
    "POST /membres/{member_id}/badges/attente/{token}/annuler": MANAGE,
    "GET /membres/{member_id}/effacer": ADMIN,
    "POST /membres/{member_id}/effacer": ADMIN,
    "GET /membres/{member_id}/export": ADMIN,
    "GET /creneaux": LIVE,
    "POST /creneaux/creneaux": ADMIN,
    "GET /creneaux/creneaux/{slot_id}": ADMIN,
    "POST /creneaux/creneaux/{slot_id}": ADMIN,
    "POST /creneaux/creneaux/{slot_id}/supprimer": ADMIN,
    "POST /creneaux/exceptions": ADMIN,
    "POST /creneaux/exceptions/{exception_id}/supprimer": ADMIN,
    "POST /creneaux/quotas": ADMIN,
    "POST /creneaux/quotas/{quota_id}": ADMIN,
    "POST /creneaux/quotas/{quota_id}/supprimer": ADMIN,
    "GET /rapports": REPORTS,
    "GET /mon-temps": PUBLIC,
    "POST /mon-temps/code": PUBLIC,
    "POST /mon-temps/sortir": PUBLIC,
    "GET /mon-temps/codes": FLOOR,
    "POST /mon-temps/codes": FLOOR,
}
#: Event streams never end: their roles are checked, they are not walked here.
STREAMS = re.compile(r"/flux$")


def _pages(api: Api) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path, methods, route in api_routes(api.client.app):  # type: ignore[arg-type]
        if not str(route.endpoint.__module__).startswith("hub.web"):
            continue
        guards = guard_of(route.dependencies)
        roles = {r.value for r in guards[0].roles} if guards else {PUBLIC}
        assert len(guards) <= 1, path
        for method in methods:
            found[f"{method} {path}"] = roles
    return found


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Api]:
    yield from build_api(f"sqlite:///{tmp_path / 'hub.db'}")


def test_every_page_is_in_the_inventory_with_its_roles(web: Api) -> None:
    pages = _pages(web)
    assert pages.keys() - EXPECTED.keys() == set(), "pages missing from EXPECTED"
    assert EXPECTED.keys() - pages.keys() == set(), "EXPECTED lists pages that do not exist"
    for key, roles in pages.items():
        assert roles == set(EXPECTED[key].split()), key


def _seed(api: Api) -> dict[str, str]:
    with api.db() as s:
        s.add_all([Zone(id="fablab", name="FabLab"), Training(id="laser", name="Laser")])
        s.flush()
        s.add(
            Machine(
                id="laser-1", name="Laser", kind=MachineKind.LASER, zone_id="fablab", edge_id="e1"
            )
        )
        victim = Member(display_name="Victime V.", birth_year=2010, birth_month=2)
        slot = Slot(zone_id="fablab", weekday=1, start=time(14), end=time(16))
        exc = SlotException(day=date(2099, 1, 1), kind="closure")
        quota = Quota(zone_id="fablab", age_group="9-15", daily_min=60)
        alert = Alert(kind="machine_offline", machine_id="laser-1")
        s.add_all([victim, slot, exc, quota, alert])
        s.commit()
        return {
            "machine_id": "laser-1",
            "member_id": str(victim.id),
            "training_id": "laser",
            "badge_id": "999",
            "token": "pas-un-jeton",
            "token_id": "999",
            "slot_id": str(slot.id),
            "exception_id": str(exc.id),
            "quota_id": str(quota.id),
            "alert_id": str(alert.id),
        }


def test_every_page_times_every_role(web: Api) -> None:
    params = _seed(web)
    checked = 0
    order = sorted(EXPECTED, key=lambda k: (k == "POST /deconnexion", "effacer" in k))
    for role in (None, Role.MEMBER, Role.COORDINATOR, Role.ANIMATOR, Role.FABMANAGER, Role.ADMIN):
        for key in order:
            method, template = key.split(" ", 1)
            if STREAMS.search(template):
                continue
            path = re.sub(r"\{(\w+)\}", lambda m: params[m.group(1)], template)
            data = {"csrf": csrf_token(web.settings, web.tokens[role])} if role else {}
            answer = web.call(
                method,
                path,
                role,
                data=data if method == "POST" else None,
                follow_redirects=False,
            )
            allowed = set(EXPECTED[key].split())
            if PUBLIC in allowed:
                assert answer.status_code < 500, (key, role, answer.text)
            elif role is None:
                expected = 303 if method == "GET" else 401
                assert answer.status_code == expected, (key, answer.status_code)
                if method == "GET":
                    assert answer.headers["location"].startswith("/connexion")
            elif role.value in allowed:
                assert answer.status_code not in (401, 403), (key, role, answer.text[:300])
                assert answer.status_code < 500, (key, role, answer.text[:300])
            else:
                assert answer.status_code == 403, (key, role, answer.status_code)
                assert "Accès refusé" in answer.text, (key, role)
                assert "Victime" not in answer.text
            checked += 1
    assert checked > 5 * len(EXPECTED)
