"""The admin pages in a real Chromium, against a real hub, broker and edge agent.

Enrolment by tapping a simulated reader, an edited slot refusing the next badge on
the kiosk with the policy's sentence, who may see what (a coordinator sees no name
anywhere, an animator cannot open the members pages), the report page and its CSV.
Screenshots of the members page, the calendar and the report page are saved as test
artifacts and for the README (docs/screenshots/).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import expect
from sqlalchemy import select

from hub.db.engine import make_engine, make_sessionmaker
from hub.db.models import Badge, Member, Role, Slot, UsageSession, Zone
from protocol.ids import badge_hash
from tests.web.conftest import (
    INES_UID,
    SECRET,
    YANIS_UID,
    Floor,
    login,
    shot,
    wait_until,
)

NEW_UID = "0B00000000000042"
NAMES = ("Inès", "Benali", "Yanis", "Morel", "Sam ", "Nadia")


def _db(floor: Floor) -> Any:
    return make_sessionmaker(make_engine(floor.settings.database_url))


def _create_nadia(page: Any, floor: Floor) -> int:
    page.goto(f"{floor.url}/membres/nouveau")
    page.get_by_label("Prénom").fill("Nadia")
    page.get_by_label("Initiale du nom").fill("k")
    page.get_by_label("Année de naissance").fill("2014")
    page.get_by_label("Mois de naissance").select_option("6")
    page.get_by_label("Date de l'autorisation signée").fill("2025-09-10")
    page.get_by_role("button", name="Enregistrer le membre").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Nadia K.")
    found = re.search(r"/membres/(\d+)", page.url)
    assert found is not None, page.url
    return int(found.group(1))


def test_enrol_a_badge_by_tapping_a_reader(page: Any, floor: Floor) -> None:
    login(page, floor, Role.ADMIN)
    member_id = _create_nadia(page, floor)
    expect(page.locator("body")).to_contain_text("enregistrée par admin")

    page.get_by_label("Lecteur où passer le badge").select_option("pc-2")
    page.get_by_role("button", name="Associer un badge").click()
    expect(page.get_by_role("heading", name="Associer un badge à Nadia")).to_be_visible()
    expect(page.locator(".outcome")).to_have_text("En attente du badge…")
    shot(page, "membre-associer-badge")
    floor.badge("pc-2", NEW_UID)
    expect(page.locator(".outcome")).to_have_text("Badge associé.", timeout=20_000)
    assert NEW_UID not in page.content()
    digest = badge_hash(SECRET.encode(), NEW_UID)
    assert digest not in page.content()
    with _db(floor)() as s:
        badge = s.scalar(select(Badge).where(Badge.hash == digest))
        assert badge is not None
        assert badge.member_id == member_id
    # The captured tap did not open the machine; the next one does, for Nadia.
    assert "pc-2" not in floor.server.hub.live.open_sessions()
    wait_until(lambda: digest in floor.server.hub.directory.badges, 10, "directory reloaded")
    floor.badge("pc-2", NEW_UID)
    floor.wait_session("pc-2")

    # A badge someone already holds is refused with its owner's first name.
    page.goto(f"{floor.url}/membres/{member_id}")
    page.get_by_label("Lecteur où passer le badge").select_option("vinyle-1")
    page.get_by_role("button", name="Associer un badge").click()
    expect(page.locator(".outcome")).to_have_text("En attente du badge…")
    floor.badge("vinyle-1", INES_UID)
    expect(page.locator(".outcome")).to_have_text(
        "Ce badge est déjà associé à Inès : il n'a pas été associé.", timeout=20_000
    )
    with _db(floor)() as s:
        owners = s.scalars(
            select(Badge.member_id).where(Badge.hash == badge_hash(SECRET.encode(), INES_UID))
        ).all()
        assert len(owners) == 1
        assert owners[0] != member_id

    page.goto(f"{floor.url}/membres/{member_id}")
    expect(page.locator("#badges")).to_contain_text("associé sur pc-2")
    shot(page, "membre", readme=True)
    page.goto(f"{floor.url}/membres")
    expect(page.locator("table")).to_contain_text("Nadia K.")
    shot(page, "membres", readme=True)


def _kiosk(browser: Any, floor: Floor, admin: Any, machine: str) -> Any:
    admin.goto(f"{floor.url}/kiosques")
    admin.get_by_label("Machine").select_option(machine)
    admin.get_by_role("button", name="Créer l'adresse d'appairage").click()
    url = admin.locator("#adresse-appairage").inner_text()
    context = browser.new_context(viewport={"width": 1024, "height": 600}, locale="fr-FR")
    screen = context.new_page()
    screen.goto(url)
    expect(screen.locator("#kiosk-screen")).to_have_attribute("data-state", "libre")
    return screen


def test_an_edited_slot_refuses_the_next_badge_on_the_kiosk(
    page: Any, browser: Any, floor: Floor
) -> None:
    login(page, floor, Role.ADMIN)
    screen = _kiosk(browser, floor, page, "pc-1")
    try:
        tz = floor.settings.tz
        now = datetime.now(tz)
        with _db(floor)() as s:
            slot = s.scalars(
                select(Slot).where(Slot.zone_id == "gaming", Slot.weekday == now.weekday())
            ).one()
        start_h = (now.hour + 2) % 24
        page.goto(f"{floor.url}/creneaux")
        expect(page.locator("svg.week")).to_have_count(2)
        page.goto(f"{floor.url}/creneaux/creneaux/{slot.id}")
        page.get_by_label("Début").fill(f"{start_h:02d}:00")
        page.get_by_label("Fin").fill(f"{(start_h + 1) % 24:02d}:00")
        page.get_by_label("Nom du créneau").fill("Soirée e-sport")
        page.get_by_role("button", name="Enregistrer le créneau").click()
        expect(page.locator(".flash.applied")).to_have_text("Créneau modifié.")
        expect(page.locator("svg.week").last).to_contain_text("Soirée e-sport")

        floor.badge("pc-1", YANIS_UID)
        expect(screen.locator("#kiosk-screen")).to_have_attribute("data-state", "refuse")
        detail = screen.locator("#kiosk-detail")
        expect(detail).to_have_text(re.compile(r"^Ce n'est pas ton créneau\. Ton prochain"))
        last = floor.server.hub.live.last_decision("pc-1")
        assert last is not None
        assert last[1].code == "outside_slot"
        assert detail.inner_text() == last[1].message
        if start_h > now.hour:  # not past midnight: the new slot is the next one
            assert f"aujourd'hui à {start_h}h00" in last[1].message
    finally:
        screen.context.close()


def _add_slot(page: Any, zone: str, day: str, start: str, end: str, label: str, *ages: str) -> None:
    form = page.locator("#ajout form")
    form.get_by_label("Zone").select_option(label=zone)
    form.get_by_label("Jour").select_option(label=day)
    form.get_by_label("Début").fill(start)
    form.get_by_label("Fin").fill(end)
    form.get_by_label("Nom du créneau").fill(label)
    for age in ages:
        form.get_by_label(f"{age} ans").check()
    if "9-15" in ages:
        form.get_by_label("Un animateur doit être présent").check()
    form.get_by_role("button", name="Ajouter le créneau").click()
    expect(page.locator(".flash.applied")).to_have_text("Créneau ajouté.")


def test_the_calendar_of_a_zone_week_with_its_rules(page: Any, floor: Floor) -> None:
    with _db(floor)() as s:
        s.add(Zone(id="atelier", name="Atelier bois"))
        s.commit()
    login(page, floor, Role.ADMIN)
    page.goto(f"{floor.url}/creneaux")
    _add_slot(page, "Atelier bois", "mercredi", "14:00", "17:30", "Atelier 9/15", "9-15")
    _add_slot(page, "Atelier bois", "samedi", "10:00", "12:30", "Atelier 16/25", "16-25")
    _add_slot(page, "Atelier bois", "jeudi", "18:30", "21:00", "Soirée adultes", "26+")
    # A wrong slot says so next to its end time, and keeps what was typed.
    _form = page.locator("#ajout form")
    _form.get_by_label("Début").fill("16:00")
    _form.get_by_label("Fin").fill("16:00")
    _form.get_by_label("Nom du créneau").fill("Trop court")
    _form.get_by_role("button", name="Ajouter le créneau").click()
    expect(page.locator("#err-end")).to_contain_text("Le créneau doit avoir une durée")
    expect(page.locator("#slot-end")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#slot-label")).to_have_value("Trop court")

    monday = date.today() - timedelta(days=date.today().weekday())
    exceptions = page.locator("#exceptions form.inline-form")
    exceptions.get_by_label("Date").fill((monday + timedelta(days=5)).isoformat())
    exceptions.get_by_label("Zone").select_option(label="Atelier bois")
    exceptions.get_by_label("Motif").fill("Inventaire")
    exceptions.get_by_role("button", name="Ajouter l'exception").click()
    expect(page.locator("#exceptions")).to_contain_text("Inventaire")
    quota = page.locator("#quotas form.inline-form")
    quota.get_by_label("Zone").select_option(label="Salle de jeux")
    quota.get_by_label("Âge").select_option(label="9-15 ans")
    quota.get_by_label("Par jour (min)").fill("90")
    quota.get_by_label("Pause après (min)").fill("60")
    quota.get_by_label("Durée de pause (min)").fill("10")
    quota.get_by_role("button", name="Ajouter le quota").click()
    expect(page.locator(".flash.applied")).to_have_text("Quota enregistré.")
    grid = page.locator("svg.week").first
    expect(grid).to_contain_text("Atelier 9/15")
    expect(grid).to_contain_text("Fermé")
    shot(page, "creneaux", readme=True)


def test_a_coordinator_sees_no_name_anywhere(page: Any, floor: Floor) -> None:
    floor.badge("vinyle-1", YANIS_UID)
    floor.wait_session("vinyle-1")
    login(page, floor, Role.COORDINATOR)
    expect(page).to_have_url(re.compile(r"/rapports"))
    seen = 0
    for path in ("/rapports", "/rapports?par=age_group", "/plancher", "/creneaux", "/mon-temps"):
        page.goto(f"{floor.url}{path}")
        page.wait_for_load_state()
        body = page.locator("body").inner_text()
        for name in NAMES:
            assert name not in body, (path, name)
        seen += 1
    for path in ("/membres", "/membres/1", "/machines/vinyle-1"):
        page.goto(f"{floor.url}{path}")
        body = page.locator("body").inner_text()
        for name in NAMES:
            assert name not in body, (path, name)
    page.goto(f"{floor.url}/membres")
    expect(page.get_by_role("heading", name="Accès refusé")).to_be_visible()
    assert seen == 5


def test_an_animator_cannot_reach_the_members_page(page: Any, floor: Floor) -> None:
    login(page, floor, Role.ANIMATOR)
    nav = page.get_by_role("navigation", name="Navigation principale")
    expect(nav).not_to_contain_text("Membres")
    expect(nav).to_contain_text("Créneaux")
    response = page.goto(f"{floor.url}/membres")
    assert response is not None
    assert response.status == 403
    expect(page.get_by_role("heading", name="Accès refusé")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("Benali")
    with _db(floor)() as s:
        ines = s.scalar(select(Member.id).where(Member.display_name == "Inès Benali"))
    response = page.goto(f"{floor.url}/membres/{ines}")
    assert response is not None
    assert response.status == 403


def _seed_history(floor: Floor) -> None:
    """Ten weeks of sessions of 15 people (two adults: a group too small to show)."""
    ages = [("9-15", 2013)] * 7 + [("16-25", 2005)] * 6 + [("26+", 1980)] * 2
    kinds = [("printer-1", "printer"), ("pc-1", "gaming_pc"), ("vinyle-1", "generic")]
    now = datetime.now(UTC)
    with _db(floor)() as s:
        people = [
            Member(display_name=f"Historique{i} H.", birth_year=year, birth_month=1)
            for i, (_, year) in enumerate(ages)
        ]
        s.add_all(people)
        s.flush()
        for week in range(10):
            for i, (member, (group, _)) in enumerate(zip(people, ages, strict=True)):
                if (week + i) % 3 == 0:
                    continue
                machine, kind = kinds[(week + i) % 3]
                start = now - timedelta(weeks=9 - week, days=1 + i % 3, hours=2)
                used = 1800 + 600 * ((week * 7 + i * 3) % 9)
                s.add(
                    UsageSession(
                        id=f"hist-{week}-{i}",
                        edge_id="pi-web",
                        machine_id=machine,
                        zone_id="gaming" if kind == "gaming_pc" else "fablab",
                        member_id=member.id,
                        age_group=group,
                        programmes=["fablab-9-15"] if group == "9-15" else [],
                        machine_kind=kind,
                        started_at=start,
                        ended_at=start + timedelta(seconds=used),
                        used_s=used,
                    )
                )
        s.commit()


def test_the_report_page_and_its_csv(page: Any, floor: Floor) -> None:
    _seed_history(floor)
    login(page, floor, Role.COORDINATOR)
    page.goto(f"{floor.url}/rapports?par=machine_kind")
    expect(
        page.get_by_role("heading", name="Heures par semaine et par tranche d'âge")
    ).to_be_visible()
    expect(page.locator("table.totals")).to_be_visible()
    with page.expect_download() as info:
        page.get_by_role("link", name="Télécharger en CSV").click()
    download = info.value
    assert re.match(r"fabrique-usage-machine_kind-\d{8}-\d{8}\.csv$", download.suggested_filename)
    content = Path(download.path()).read_text(encoding="utf-8-sig")
    assert content.splitlines()[0].startswith("site;du;au;type_machine;type_machine_libelle;")
    for name in NAMES:
        assert name not in content
    page.goto(f"{floor.url}/rapports?par=age_group")
    bars = page.locator("svg.chart rect title")
    expect(bars.first).to_contain_text("9-15 ans")
    assert bars.count() >= 5
    for title in bars.all_text_contents():
        assert "26+" not in title  # two adults: too few to show
    expect(page.locator("tr.hidden-groups")).to_contain_text("< 5 participants chacun")
    shot(page, "rapports", readme=True)


def test_mon_temps_with_a_code_an_animator_gives(page: Any, browser: Any, floor: Floor) -> None:
    login(page, floor, Role.ANIMATOR)
    page.goto(f"{floor.url}/mon-temps/codes")
    page.get_by_label("Prénom du membre").fill("Inè")
    page.get_by_role("button", name="Chercher").click()
    page.get_by_role("button", name="Donner un code à Inès").click()
    code = page.locator(".the-code").inner_text().replace(" ", "")
    assert re.fullmatch(r"\d{6}", code)
    tablet = browser.new_context(viewport={"width": 1024, "height": 768}, locale="fr-FR")
    try:
        kid = tablet.new_page()
        kid.goto(f"{floor.url}/mon-temps")
        kid.get_by_label("Mon code (6 chiffres)").fill(code)
        kid.get_by_role("button", name="Voir mon temps").click()
        expect(kid.get_by_role("heading", level=1)).to_have_text("Bonjour Inès !")
        expect(kid.locator("body")).to_contain_text("Mes prochains créneaux")
        expect(kid.locator("body")).not_to_contain_text("Yanis")
        shot(kid, "mon-temps")
        kid.get_by_role("button", name="C'est fini, fermer ma page").click()
        expect(kid.get_by_label("Mon code (6 chiffres)")).to_be_visible()
        kid.get_by_label("Mon code (6 chiffres)").fill(code)
        kid.get_by_role("button", name="Voir mon temps").click()
        expect(kid.locator("[role=alert]")).to_contain_text("Ce code ne marche pas")
    finally:
        tablet.close()
