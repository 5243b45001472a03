"""Login per role, offline /docs and the connection-lost banner, in a real Chromium."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import expect

from hub.db.models import Role
from tests.web.conftest import PASSWORD, ROLE_LOGINS, Floor, login, shot

HOMES = {
    Role.ADMIN: ("/plancher", {"Plancher", "Membres", "Kiosques", "API"}),
    Role.FABMANAGER: ("/plancher", {"Plancher", "Membres"}),
    Role.ANIMATOR: ("/plancher", {"Plancher"}),
    Role.COORDINATOR: ("/rapports", {"Rapports"}),
}


def test_each_role_lands_where_it_belongs(page: Any, floor: Floor) -> None:
    page.goto(f"{floor.url}/")
    expect(page).to_have_url(re.compile(r"/connexion$"))
    page.get_by_label("Identifiant").fill("admin")
    page.get_by_label("Mot de passe").fill("pas le bon mot de passe")
    page.get_by_role("button", name="Se connecter").click()
    expect(page.get_by_role("alert")).to_have_text("Identifiant ou mot de passe incorrect")
    expect(page.get_by_label("Identifiant")).to_have_value("admin")  # kept
    for role, (home, nav) in HOMES.items():
        page.context.clear_cookies()
        login(page, floor, role)
        expect(page).to_have_url(re.compile(re.escape(home) + "$"))
        items = set(page.locator("header.top nav a").all_inner_texts())
        assert nav <= items, (role, items)
        expect(page.locator("header.top")).to_contain_text(ROLE_LOGINS[role])
    # An animator cannot open the admins' pages: the French 403 page.
    page.context.clear_cookies()
    login(page, floor, Role.ANIMATOR)
    assert "Kiosques" not in page.locator("header.top nav").inner_text()
    answer = page.goto(f"{floor.url}/kiosques")
    assert answer is not None
    assert answer.status == 403
    expect(page.get_by_role("heading", name="Accès refusé")).to_be_visible()
    page.get_by_role("button", name="Se déconnecter").click()
    expect(page).to_have_url(re.compile(r"/connexion$"))
    page.goto(f"{floor.url}/plancher")
    expect(page).to_have_url(re.compile(r"/connexion\?suite=/plancher$"))
    page.get_by_label("Identifiant").fill(ROLE_LOGINS[Role.ANIMATOR])
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    expect(page).to_have_url(re.compile(r"/plancher$"))


def test_api_docs_render_offline_for_admins_only(page: Any, floor: Floor) -> None:
    hub = urlsplit(floor.url).netloc
    outside: list[str] = []

    def only_the_hub(route: Any) -> None:
        if urlsplit(route.request.url).netloc == hub:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.context.route("**/*", only_the_hub)
    answer = page.goto(f"{floor.url}/docs")
    assert answer is not None
    assert answer.status == 401  # not logged in
    login(page, floor, Role.ADMIN)
    page.goto(f"{floor.url}/docs")
    # 1.5 MB of JavaScript to parse and the schema to build: slow on a busy machine.
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("fabrique", timeout=30_000)
    expect(page.locator(".opblock-tag").first).to_be_visible()
    assert outside == []
    shot(page, "docs")


def test_the_banner_shows_while_the_hub_is_down_and_goes_when_it_is_back(
    page: Any, floor: Floor
) -> None:
    login(page, floor, Role.FABMANAGER)
    banner = page.locator("#connexion-perdue")
    expect(page.locator("body")).to_have_attribute("data-live", "open")
    expect(banner).to_be_hidden()
    floor.stop_hub()
    try:
        expect(banner).to_be_visible(timeout=20_000)
        expect(banner).to_contain_text("Connexion au hub perdue")
        shot(page, "plancher-connexion-perdue")
    finally:
        floor.start_hub()
    expect(banner).to_be_hidden(timeout=30_000)
    expect(page.locator("body")).to_have_attribute("data-live", "open")
    expect(page.locator("#tile-pc-1")).to_be_visible()
