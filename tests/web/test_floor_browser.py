"""The live floor and the machine page in a real Chromium, against a real hub and edge."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from hub.db.models import Role
from tests.web.conftest import INES_UID, YANIS_UID, Floor, login, shot, wait_until


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


def _progress(page: Any) -> float:
    value = page.locator("#tile-printer-1 progress").get_attribute("value")
    return float(value or "nan")


def test_a_printers_progress_moves_on_the_floor(page: Any, floor: Floor) -> None:
    login(page, floor, Role.ANIMATOR)
    floor.start_print("printer-1", "porte-cles.gcode", 240.0)
    bar = page.locator("#tile-printer-1 progress")
    expect(bar).to_be_visible(timeout=20_000)
    first = _progress(page)
    page.wait_for_function(
        f"() => parseFloat(document.querySelector('#tile-printer-1 progress')"
        f".getAttribute('value')) > {first}",
        timeout=20_000,
    )
    assert _progress(page) > first
    # Nobody badged: the printer runs without a session, said live on the tile.
    expect(page.locator("#tile-printer-1")).to_have_attribute("data-state", "sans-session")
    # The file name is not on tele/+ (it can name a child): staff read it from the
    # job's own record (job_started, journaled to the hub only).
    expect(page.locator("#tile-printer-1 .file")).to_have_text("porte-cles.gcode")
    expect(page.locator("#tile-printer-1")).to_contain_text("°C")


def test_end_a_session_from_the_machine_page(page: Any, floor: Floor) -> None:
    login(page, floor, Role.FABMANAGER)
    floor.badge("vinyle-1", YANIS_UID)
    floor.wait_session("vinyle-1")
    page.goto(f"{floor.url}/machines/vinyle-1")
    busy = re.compile("occupe|fin")  # "fin": the day's grant ends within 5 minutes
    expect(page.locator("#tile-vinyle-1")).to_have_attribute("data-state", busy)
    expect(page.locator("#tile-vinyle-1")).to_contain_text("Yanis")
    page.get_by_role("link", name="Terminer la session").click()
    expect(page.get_by_role("heading", name="Terminer la session")).to_be_visible()
    page.get_by_role("button", name="Confirmer").click()
    # The page waited for the edge's answer: it says what happened, not "sent".
    expect(page.locator("#resultat")).to_have_text("Fait : la session est terminée.")
    expect(page.locator("#tile-vinyle-1")).to_have_attribute("data-state", "libre")
    shot(page, "machine", readme=True)
    wait_until(lambda: floor.state("vinyle-1") == "idle", 10, "the edge ended the session")
    page.reload()
    expect(page.locator("table")).to_contain_text("par l'équipe")
    # Nothing to end any more: the action is refused with its reason.
    page.goto(f"{floor.url}/machines/vinyle-1/confirmer?action=end")
    page.get_by_role("button", name="Confirmer").click()
    expect(page.locator("#resultat")).to_contain_text("Refusé : aucune session en cours")


def test_a_command_the_printer_refuses_shows_why(page: Any, floor: Floor) -> None:
    login(page, floor, Role.ANIMATOR)
    # No print on printer-1 (the progress test's print is over): the edge asks the
    # printer, which refuses; the page says so.
    printer = floor.agent.unit("printer-1").follower.printer
    wait_until(lambda: not printer.snapshot.job_active, 30, "printer-1 has no job")
    page.goto(f"{floor.url}/machines/printer-1/confirmer?action=pause")
    page.get_by_role("button", name="Confirmer").click()
    expect(page.locator("#resultat")).to_have_text(
        "Refusé : Aucune impression en cours : rien à mettre en pause."
    )


def test_a_coordinator_sees_no_name_and_cannot_act(page: Any, floor: Floor) -> None:
    floor.badge("pc-2", YANIS_UID)
    floor.wait_session("pc-2")
    login(page, floor, Role.COORDINATOR)
    expect(page).to_have_url(re.compile(r"/rapports$"))
    page.goto(f"{floor.url}/plancher")
    expect(page.locator("#tile-pc-2")).to_have_attribute("data-state", re.compile("occupe|fin"))
    expect(page.locator("main")).not_to_contain_text("Yanis")
    expect(page.locator("#alertes")).to_have_count(0)
    page.goto(f"{floor.url}/machines/pc-2")
    expect(page.locator("main")).not_to_contain_text("Yanis")
    expect(page.get_by_role("link", name="Terminer la session")).to_have_count(0)
    # The server refuses the action itself, whatever the page shows.
    csrf = page.evaluate("document.querySelector('input[name=csrf]').value")
    answer = page.request.post(
        f"{floor.url}/machines/pc-2/session",
        form={"action": "end", "csrf": csrf},
        headers={"Origin": floor.url},
    )
    assert answer.status == 403
    assert "Accès refusé" in answer.text()
    assert floor.state("pc-2") == "active"
