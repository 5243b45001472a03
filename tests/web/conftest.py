"""The web UI's end-to-end rig: a real hub, broker, edge agent and Chromium.

* :class:`Floor` seeds a small site in a SQLite store (a FabLab with a simulated 3D
  printer and a generic machine, a gaming room with two PCs; members and one login
  per role), serves the real hub (:class:`hub.main.HubServer`: service and API, with
  the web UI) against the test's Mosquitto, and runs the real edge agent in this
  process with simulated readers, relays, PC locks and printer. :meth:`Floor.badge`
  taps a badge on a machine's simulated reader; :meth:`Floor.restart_hub` stops and
  serves the hub again on the same port.
* ``browser`` is Debian's Chromium (``/usr/bin/chromium``) driven by Playwright; no
  browser is ever downloaded. ``page`` is a fresh context per test; ``login`` signs a
  page in through the login form. :func:`shot` saves a screenshot under
  ``test-artifacts/web/``.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from hub.api.auth import create_account
from hub.db.engine import make_engine, make_sessionmaker, transaction
from hub.db.migrate import upgrade
from hub.db.models import (
    Badge,
    Machine,
    MachineKind,
    Member,
    Role,
    Slot,
    Zone,
)
from hub.main import HubServer
from hub.settings import HubSettings
from protocol.ids import badge_hash
from protocol.messages import OfflineRule
from tests.conftest import Broker, free_port

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

SECRET = "web-test-site-secret-0123456789ab"
PASSWORD = "mot de passe du test"
CHROMIUM = os.environ.get("FABRIQUE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

#: Badge UIDs of the seeded people.
INES_UID = "0A00000000000001"
YANIS_UID = "0A00000000000002"
STAFF_UID = "0E00000000000001"
UNKNOWN_UID = "0F00000000000009"

ROLE_LOGINS = {
    Role.ADMIN: "admin",
    Role.FABMANAGER: "fabmanager",
    Role.ANIMATOR: "animateur",
    Role.COORDINATOR: "coordination",
}


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {what}")
        time.sleep(0.05)


def seed_floor(db_url: str) -> None:
    """The site of the web tests (always open: the tests do not depend on the hour)."""
    upgrade(db_url)
    engine = make_engine(db_url)
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    try:
        with transaction(make_sessionmaker(engine)) as s:
            s.add_all([Zone(id="fablab", name="FabLab"), Zone(id="gaming", name="Salle de jeux")])
            s.flush()
            for zone in ("fablab", "gaming"):
                for weekday in range(7):
                    s.add(Slot(zone_id=zone, weekday=weekday, start=dtime(0), end=dtime(0)))
            for mid, name, kind, zone in (
                ("printer-1", "Prusa MK4", MachineKind.PRINTER, "fablab"),
                ("vinyle-1", "Découpe vinyle", MachineKind.GENERIC, "fablab"),
                ("pc-1", "PC 1", MachineKind.GAMING_PC, "gaming"),
                ("pc-2", "PC 2", MachineKind.GAMING_PC, "gaming"),
            ):
                s.add(
                    Machine(
                        id=mid,
                        name=name,
                        kind=kind,
                        zone_id=zone,
                        edge_id="pi-web",
                        offline_rule=OfflineRule.ALLOW,
                    )
                )
            ines = Member(
                display_name="Inès Benali",
                birth_year=2013,
                birth_month=3,
                consent_at=date(2025, 9, 1),
            )
            yanis = Member(display_name="Yanis Morel", birth_year=2004, birth_month=7)
            sam = Member(
                display_name="Sam Animateur", birth_year=1990, birth_month=5, role=Role.ANIMATOR
            )
            ines.badges.append(Badge(hash=badge_hash(SECRET.encode(), INES_UID)))
            yanis.badges.append(Badge(hash=badge_hash(SECRET.encode(), YANIS_UID)))
            sam.badges.append(Badge(hash=badge_hash(SECRET.encode(), STAFF_UID)))
            s.add_all([ines, yanis, sam])
            s.flush()
            for role, username in ROLE_LOGINS.items():
                create_account(s, username, PASSWORD, role, hasher=hasher)
    finally:
        engine.dispose()


def edge_machines() -> list[dict[str, Any]]:
    reader = {"kind": "reader.sim", "options": {"debounce_s": 0}}
    relay = {"kind": "actuator.sim", "options": {"load_w": 120.0}}
    return [
        {
            "id": "printer-1",
            "kind": "printer",
            "reader": reader,
            "actuator": relay,
            "printer": {"kind": "printer.simulated", "options": {"speed": 30.0}},
        },
        {"id": "vinyle-1", "kind": "generic", "reader": reader, "actuator": relay},
        {"id": "pc-1", "kind": "gaming_pc", "reader": reader, "pc": {"kind": "pc.sim"}},
        {"id": "pc-2", "kind": "gaming_pc", "reader": reader, "pc": {"kind": "pc.sim"}},
    ]


@dataclass
class Floor:
    """The running site of a test module (see the module docstring)."""

    settings: HubSettings
    server: HubServer
    agent: Any
    workdir: Path

    @property
    def url(self) -> str:
        return self.server.url

    def badge(self, machine: str, uid: str) -> None:
        """Tap ``uid`` on ``machine``'s simulated reader."""
        from devices.readers import DebouncedReader, SimulatedReader

        reader = self.agent.unit(machine).reader
        inner = reader.reader if isinstance(reader, DebouncedReader) else reader
        assert isinstance(inner, SimulatedReader)
        inner.present(uid)

    def wait_session(self, machine: str) -> None:
        """Until the hub's ledger holds the machine's open session."""
        wait_until(
            lambda: machine in self.server.hub.live.open_sessions(), 20, f"session on {machine}"
        )

    def state(self, machine: str) -> str:
        return str(self.agent.view(machine).session.state.value)

    def start_print(self, machine: str, name: str, seconds: float) -> None:
        from devices.octoprint.simulated import SimulatedPrinter
        from edge.kinds.printer import PrinterFollower

        follower = self.agent.unit(machine).follower
        assert isinstance(follower, PrinterFollower)
        printer = follower.printer
        assert isinstance(printer, SimulatedPrinter)
        printer.run_threadsafe(printer.start_job(name, seconds, 1500.0))

    def stop_hub(self) -> None:
        self.server.stop()

    def start_hub(self) -> None:
        self.server = HubServer(self.settings, run_migrations=False, snapshot_workers=0)
        self.server.start()

    def online(self) -> None:
        wait_until(lambda: self.agent.hub_online, 30, "edge sees the hub")
        wait_until(lambda: self.agent.policy_version, 30, "edge has a policy snapshot")


@pytest.fixture(scope="module")
def floor(mosquitto: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Floor]:
    from edge.agent import Agent
    from edge.settings import EdgeSettings
    from protocol.signing import demo_edge_key

    workdir = tmp_path_factory.mktemp("web")
    db_url = f"sqlite:///{workdir / 'hub.db'}"
    seed_floor(db_url)
    site = f"w-{uuid.uuid4().hex[:10]}"
    settings = HubSettings(
        site=site,
        demo=True,
        site_name="La Fabrique (tests)",
        database_url=db_url,
        site_secret=SECRET,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_client_id=f"hub-{site}",
        http_host="127.0.0.1",
        http_port=free_port(),
        api_docs="admin",
        ack_interval_s=0.05,
    )
    server = HubServer(settings, run_migrations=False, snapshot_workers=0)
    server.start()
    edge = EdgeSettings(
        site=site,
        edge_id="pi-web",
        site_secret=SECRET,
        edge_key=demo_edge_key(SECRET.encode(), "pi-web").hex(),  # the demo hub's fallback
        mqtt={"host": mosquitto.host, "port": mosquitto.port, "reconnect_max_s": 1},
        journal={"path": str(workdir / "edge" / "journal.db"), "resend_s": 2.0},
        feedback={"console": False},
        machines=edge_machines(),
        drain_timeout_s=2.0,
        tele_interval_s=1.0,
    )
    agent = Agent(edge)
    agent.start()
    rig = Floor(settings, server, agent, workdir)
    try:
        rig.online()
        yield rig
    finally:
        agent.stop()
        rig.server.stop()


# --------------------------------------------------------------------------- Chromium


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run scripts/test (it installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) sized like a 10" tablet."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="fr-FR", timezone_id="Europe/Paris"
    )
    context.set_default_timeout(15_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def login(page: Any, floor: Floor, role: Role) -> None:
    """Sign in through the login form as the seeded account of ``role``."""
    page.goto(f"{floor.url}/connexion")
    page.get_by_label("Identifiant").fill(ROLE_LOGINS[role])
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_load_state()


def shot(page: Any, name: str, *, readme: bool = False) -> Path:
    """Save a screenshot as a test artifact (and for the README when ``readme``)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if readme:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
    return path


def utc_now() -> datetime:
    return datetime.now(UTC)
