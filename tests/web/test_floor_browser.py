"""The live floor and the machine page in a real Chromium, against a real hub and edge."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from hub.db.models import Role
from tests.web.conftest import INES_UID, Floor, login, shot


def test_a_badge_turns_the_tile_busy_without_reload(page: Any, floor: Floor) -> None:
    login(page, floor, Role.FABMANAGER)
    expect(page).to_have_url(re.compile(r"/plancher$"))
    tile = page.locator("#tile-pc-1")
    expect(tile).to_have_attribute("data-state", "libre")
    expect(page.locator("body")).to_have_attribute("data-live", "open")
    page.evaluate("window.__noReload = true")
    floor.badge("pc-1", INES_UID)
    expect(page.locator("#tile-pc-1")).to_have_attribute("data-state", re.compile("occupe|fin"))
    expect(page.locator("#tile-pc-1")).to_contain_text("Inès")
    assert page.evaluate("window.__noReload") is True  # the same document: no reload
    shot(page, "plancher", readme=True)
