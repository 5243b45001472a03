"""The demo seed: idempotent, and the people in it meet the policy as the demo intends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fabrique.demo import data
from fabrique.demo.seed import seed_demo
from hub.db.engine import make_engine, make_sessionmaker
from hub.db.migrate import upgrade
from hub.db.models import (
    Account,
    Badge,
    Machine,
    Member,
    Quota,
    Role,
    Slot,
    SlotException,
    Training,
    Zone,
)
from hub.directory import load_directory, policy_config
from hub.policy.calendar import open_windows
from hub.policy.engine import decide
from hub.policy.model import AccessQuery, Decision, LiveView
from hub.settings import HubSettings
from protocol.ids import badge_hash

# A Monday morning in Paris: no weekly slot is open, only the demo opening.
MONDAY_10H = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> HubSettings:
    return HubSettings(demo=True, database_url=f"sqlite:///{tmp_path / 'hub.db'}")


@pytest.fixture
def factory(settings: HubSettings) -> Iterator[sessionmaker[Session]]:
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def counts(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as s:
        return {
            model.__name__: s.scalar(select(func.count()).select_from(model)) or 0
            for model in (Zone, Training, Machine, Member, Badge, Slot, Quota, Account)
        }


def test_seed_is_idempotent_and_renews_the_admin_password(
    factory: sessionmaker[Session], settings: HubSettings
) -> None:
    first = seed_demo(factory, settings, now=MONDAY_10H)
    after_first = counts(factory)
    assert first.members_added == len(data.PEOPLE) >= 12
    assert after_first == {
        "Zone": 2,
        "Training": 2,
        "Machine": 7,
        "Member": len(data.PEOPLE),
        "Badge": len(data.PEOPLE),
        "Slot": len(data.SLOTS),
        "Quota": 2,
        "Account": 4,  # one login per staff role
    }
    second = seed_demo(factory, settings, now=MONDAY_10H + timedelta(days=1))
    assert second.members_added == 0
    assert counts(factory) == after_first
    assert second.admin_password != first.admin_password
    with factory() as s:
        account = s.scalar(select(Account).where(Account.username == "admin"))
        assert account is not None
        assert PasswordHasher().verify(account.password_hash, second.admin_password)
        roles = {a.username: (a.role, a.active) for a in s.scalars(select(Account)).all()}
        assert roles == {
            "admin": (Role.ADMIN, True),
            "fabmanager": (Role.FABMANAGER, True),
            "coordination": (Role.COORDINATOR, True),
            "animateur": (Role.ANIMATOR, True),
        }
        for username, _role, password in second.logins:
            row = s.scalar(select(Account).where(Account.username == username))
            assert row is not None
            assert PasswordHasher().verify(row.password_hash, password)
        # The demo opening moved to the new day: the old one is gone.
        openings = s.scalars(select(SlotException)).all()
        assert {o.day.isoformat() for o in openings} == {"2026-03-03"}
        assert all(o.label == data.DEMO_OPENING_LABEL and o.zone_id is None for o in openings)


def test_an_opening_across_midnight_is_split_per_day(
    factory: sessionmaker[Session], settings: HubSettings
) -> None:
    late = datetime(2026, 3, 2, 21, 30, tzinfo=UTC)  # 22:30 in Paris
    start, end = seed_demo(factory, settings, now=late).opening
    with factory() as s:
        rows = sorted(s.scalars(select(SlotException)).all(), key=lambda o: o.day)
    assert [(o.day.isoformat(), o.start, o.end) for o in rows] == [
        ("2026-03-02", start.time(), None),  # until midnight
        ("2026-03-03", time(0, 0), end.time().replace(microsecond=0)),
    ]
    # The two rows make one window: a grant at 23:30 does not stop at midnight.
    with factory() as s:
        directory = load_directory(s, version=1)
    windows = open_windows(
        "gaming",
        date(2026, 3, 2),
        date(2026, 3, 3),
        directory,
        policy_config(settings),
        age_group=None,
        programmes=None,
    )
    assert any(w.start <= late < w.end and w.end > late + timedelta(hours=2) for w in windows)


def _decide(
    factory: sessionmaker[Session], settings: HubSettings, who: str, machine: str, now: datetime
) -> Decision:
    uid = next(p.uid for p in data.PEOPLE if p.name.startswith(who)) if who else data.UNKNOWN_BADGE
    with factory() as s:
        directory = load_directory(s, version=1)
    edge = next(m.edge for m in data.MACHINES if m.id == machine)
    query = AccessQuery(
        badge=badge_hash(settings.site_secret_bytes, uid), machine_id=machine, edge_id=edge, now=now
    )
    return decide(query, directory, LiveView(), policy_config(settings))


@pytest.mark.parametrize(
    ("who", "machine", "code"),
    [
        ("Rayan", "pc-01", "consent_missing"),
        ("Karim", "laser-1", "training_expired"),
        ("Chloé", "laser-1", "training_missing"),
        ("Yanis", "printer-1", "training_missing"),
        ("", "pc-02", "unknown_badge"),
        ("Amina", "laser-1", "granted"),
        ("Inès", "printer-2", "granted"),
        ("Julien", "pc-03", "granted"),
        ("Fatou", "laser-1", "granted_staff"),
    ],
)
def test_demo_people_meet_the_policy_as_intended(
    factory: sessionmaker[Session], settings: HubSettings, who: str, machine: str, code: str
) -> None:
    seed_demo(factory, settings, now=MONDAY_10H)
    decision = _decide(factory, settings, who, machine, MONDAY_10H + timedelta(minutes=5))
    assert decision.code == code, decision.message
    assert decision.message


def test_gaming_quota_and_breaks_for_the_youngest(
    factory: sessionmaker[Session], settings: HubSettings
) -> None:
    seed_demo(factory, settings, now=MONDAY_10H)
    decision = _decide(factory, settings, "Lina", "pc-01", MONDAY_10H + timedelta(minutes=5))
    assert decision.granted
    assert decision.ends_at is not None
    assert decision.ends_at - (MONDAY_10H + timedelta(minutes=5)) <= timedelta(minutes=90)
    assert (decision.break_after_min, decision.break_min) == (50, 10)


def test_weekly_slots_apply_outside_the_demo_opening(
    factory: sessionmaker[Session], settings: HubSettings
) -> None:
    seed_demo(factory, settings, now=MONDAY_10H)
    next_monday = MONDAY_10H + timedelta(days=7)
    closed = _decide(factory, settings, "Inès", "pc-01", next_monday)
    assert closed.code == "outside_slot"
    wednesday_15h = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)
    assert _decide(factory, settings, "Inès", "pc-01", wednesday_15h).granted
    # The FabLab 16/25 slot admits its programme only.
    tuesday_18h = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)
    assert _decide(factory, settings, "Amina", "laser-1", tuesday_18h).granted
    assert _decide(factory, settings, "Nadia", "printer-1", tuesday_18h).code == "outside_slot"
