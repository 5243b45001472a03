"""The kiosk in a real Chromium: pairing, first names only when paired, Arabic RTL."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from hub.db.models import Role
from tests.web.conftest import INES_UID, UNKNOWN_UID, Floor, login, shot

KIOSK_VIEWPORT = {"width": 1024, "height": 600}  # a 7" screen


def _pair(page: Any, floor: Floor, machine: str) -> str:
    login(page, floor, Role.ADMIN)
    page.goto(f"{floor.url}/kiosques")
    page.get_by_label("Machine").select_option(machine)
    page.get_by_label("Nom de l'écran (facultatif)").fill(f"tablette {machine}")
    page.get_by_role("button", name="Créer l'adresse d'appairage").click()
    url = page.locator("#adresse-appairage").inner_text()
    assert re.search(rf"/kiosk/{machine}\?appairage=[\w-]{{20,}}$", url), url
    return url


def test_a_paired_kiosk_shows_the_first_name_and_an_unpaired_one_nobody(
    page: Any, browser: Any, floor: Floor
) -> None:
    url = _pair(page, floor, "pc-1")
    kiosk = browser.new_context(viewport=KIOSK_VIEWPORT, locale="fr-FR")
    stranger = browser.new_context(viewport=KIOSK_VIEWPORT, locale="fr-FR")
    try:
        screen = kiosk.new_page()
        screen.goto(url)
        expect(screen).to_have_url(re.compile(r"/kiosk/pc-1\?lang=fr$"))  # token dropped
        expect(screen.locator("#kiosk-screen")).to_have_attribute("data-state", "libre")
        expect(screen.locator("#kiosk-sentence")).to_have_text("Libre")
        other = stranger.new_page()
        other.goto(f"{floor.url}/kiosk/pc-1")
        expect(other.locator(".kiosk-unpaired")).to_be_visible()
        floor.badge("pc-1", INES_UID)
        expect(screen.locator("#kiosk-sentence")).to_have_text(
            re.compile(r"^Inès — jusqu'à \d{1,2}h\d\d$")
        )
        expect(screen.locator(".countdown")).to_have_text(re.compile(r"\d"))
        shot(screen, "kiosque-fr", readme=True)
        expect(other.locator("#kiosk-screen")).to_have_attribute(
            "data-state", re.compile("occupe|fin")
        )
        expect(other.locator("body")).not_to_contain_text("Inès")
        expect(other.locator("#kiosk-sentence")).to_have_text(re.compile(r"^Occupée"))
        # Revoked: the paired screen shows nobody's name any more (after a reload).
        page.goto(f"{floor.url}/kiosques")
        page.get_by_role("button", name="Révoquer").first.click()
        screen.reload()
        expect(screen.locator("#kiosk-sentence")).to_have_text(re.compile(r"^Occupée"))
        expect(screen.locator("body")).not_to_contain_text("Inès")
    finally:
        kiosk.close()
        stranger.close()


def test_the_kiosk_in_arabic_reads_right_to_left_with_the_refusal(
    browser: Any, floor: Floor
) -> None:
    context = browser.new_context(viewport=KIOSK_VIEWPORT, locale="ar")
    try:
        screen = context.new_page()
        screen.goto(f"{floor.url}/kiosk/vinyle-1")
        screen.get_by_role("link", name="العربية").click()
        expect(screen.locator("html")).to_have_attribute("dir", "rtl")
        expect(screen.locator("html")).to_have_attribute("lang", "ar")
        expect(screen.locator("#kiosk-sentence")).to_have_text("متاحة")
        floor.badge("vinyle-1", UNKNOWN_UID)
        expect(screen.locator("#kiosk-screen")).to_have_attribute("data-state", "refuse")
        expect(screen.locator("#kiosk-sentence")).to_have_text("البطاقة مرفوضة")
        expect(screen.locator("#kiosk-detail")).to_have_text(
            "بطاقة غير معروفة: اذهب إلى أحد المنشطين لتسجيلها."
        )
        shot(screen, "kiosque-ar", readme=True)
        screen.get_by_role("link", name="English").click()
        expect(screen.locator("html")).to_have_attribute("dir", "ltr")
        expect(screen.locator("#kiosk-detail")).to_have_text(
            "Unknown badge: ask an animator to register it."
        )
        screen.get_by_role("link", name="Français").click()
        expect(screen.locator("#kiosk-detail")).to_have_text(
            "Badge inconnu : passe voir un animateur pour l'enregistrer."
        )
    finally:
        context.close()
