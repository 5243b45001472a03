"""Seed a hub store with the demo site of :mod:`fabrique.demo.data`, idempotently.

Running it again adds only what is missing (rows an admin edited are left alone),
moves the "Créneau démo" special opening to the current hours, and gives the
``admin`` account a new random password, returned so the demo can print it.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from argon2 import PasswordHasher
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from fabrique.demo import data
from hub.api.auth import create_account, revoke_tokens
from hub.db.engine import transaction
from hub.db.models import (
    Account,
    Badge,
    ExceptionKind,
    Machine,
    MachineKind,
    MachineTraining,
    Member,
    MemberProgramme,
    MemberTraining,
    Programme,
    Quota,
    Role,
    Slot,
    SlotException,
    Training,
    Zone,
)
from hub.settings import HubSettings
from protocol.ids import badge_hash
from protocol.messages import OfflineRule, utcnow

logger = logging.getLogger(__name__)

ADMIN_USERNAME = "admin"
#: Argon2id at OWASP's minimum (19 MiB, 2 passes) for the demo's random, per-start
#: passwords: four logins are hashed at every start, on machines that may be busy; the
#: hub rehashes each with its own parameters at the first login.
DEMO_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
#: One demo login per staff role (username, role), passwords renewed at each start.
DEMO_LOGINS = (
    (ADMIN_USERNAME, Role.ADMIN),
    ("fabmanager", Role.FABMANAGER),
    ("coordination", Role.COORDINATOR),
    ("animateur", Role.ANIMATOR),
)


@dataclass(frozen=True, slots=True)
class SeedResult:
    """What the seeding did, for the console."""

    admin_username: str
    admin_password: str
    members_added: int
    opening: tuple[datetime, datetime]
    #: (username, role, password) of every demo login, admin first.
    logins: tuple[tuple[str, Role, str], ...] = ()


def seed_demo(
    factory: sessionmaker[Session], settings: HubSettings, *, now: datetime | None = None
) -> SeedResult:
    """Write the demo site into the (migrated) store; safe to run on every start."""
    now = now or utcnow()
    local_now = now.astimezone(settings.tz)
    today = local_now.date()
    with transaction(factory) as session:
        _reference(session)
        added = _people(session, settings, today)
        _slots(session)
        opening = _demo_opening(session, local_now)
        _quotas(session)
        logins = tuple(
            (username, role, _login(session, username, role)) for username, role in DEMO_LOGINS
        )
        password = logins[0][2]
    logger.info("demo store seeded (%d members added)", added)
    return SeedResult(ADMIN_USERNAME, password, added, opening, logins)


def _reference(session: Session) -> None:
    for zid, (name, capacity) in data.ZONES.items():
        if session.get(Zone, zid) is None:
            session.add(Zone(id=zid, name=name, capacity=capacity))
    for tid, (name, validity) in data.TRAININGS.items():
        if session.get(Training, tid) is None:
            session.add(Training(id=tid, name=name, validity_days=validity))
    for pid, name in data.PROGRAMMES.items():
        if session.get(Programme, pid) is None:
            session.add(Programme(id=pid, name=name))
    session.flush()
    for m in data.MACHINES:
        if session.get(Machine, m.id) is not None:
            continue
        session.add(
            Machine(
                id=m.id,
                name=m.name,
                kind=MachineKind(m.kind),
                zone_id=m.zone,
                edge_id=m.edge,
                min_age=m.min_age,
                offline_rule=OfflineRule(m.offline_rule),
                maintenance=False,
                trainings=[MachineTraining(training_id=t) for t in m.trainings],
            )
        )
    session.flush()


def _people(session: Session, settings: HubSettings, today: date) -> int:
    secret = settings.site_secret_bytes
    added = 0
    for person in data.PEOPLE:
        digest = badge_hash(secret, person.uid)
        if session.scalar(select(Badge.id).where(Badge.hash == digest)) is not None:
            continue
        consent = today - timedelta(days=120) if person.consent and person.age < 15 else None
        trainings = []
        for tid, days_ago in person.trainings.items():
            granted = today - timedelta(days=days_ago)
            validity = data.TRAININGS[tid][1]
            expires = granted + timedelta(days=validity) if validity is not None else None
            trainings.append(
                MemberTraining(training_id=tid, granted_on=granted, expires_on=expires)
            )
        member = Member(
            display_name=person.name,
            birth_year=data.birth_year(person.age, person.birth_month, today),
            birth_month=person.birth_month,
            role=Role(person.role),
            consent_at=consent,
            programmes=[MemberProgramme(programme_id=p) for p in person.programmes],
            trainings=trainings,
            badges=[Badge(hash=digest, label="badge de démo")],
        )
        session.add(member)
        added += 1
    session.flush()
    return added


def _slots(session: Session) -> None:
    existing = {
        (s.zone_id, s.weekday, s.start, s.end, s.label) for s in session.scalars(select(Slot))
    }
    for s in data.SLOTS:
        if (s.zone, s.weekday, s.start, s.end, s.label) in existing:
            continue
        session.add(
            Slot(
                zone_id=s.zone,
                weekday=s.weekday,
                start=s.start,
                end=s.end,
                label=s.label,
                age_groups=list(s.age_groups),
                programmes=list(s.programmes),
                animator_required=s.animator_required,
            )
        )


def _demo_opening(session: Session, local_now: datetime) -> tuple[datetime, datetime]:
    """Open every zone to everyone from the last hour to six hours ahead (local time).

    Exceptions are per local day, so an opening that crosses midnight is two rows.
    """
    session.execute(delete(SlotException).where(SlotException.label == data.DEMO_OPENING_LABEL))
    start = local_now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    if start.date() != local_now.date():
        start = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    end = local_now + timedelta(hours=6)
    day_start = start
    while day_start < end:
        midnight = (day_start + timedelta(days=1)).replace(hour=0, minute=0, second=0)
        day_end = min(end, midnight)
        session.add(
            SlotException(
                zone_id=None,
                day=day_start.date(),
                kind=ExceptionKind.OPENING,
                start=day_start.time().replace(second=0, microsecond=0),
                # No end: until midnight, so the next day's row continues the window.
                end=None if day_end == midnight else day_end.time().replace(microsecond=0),
                label=data.DEMO_OPENING_LABEL,
                age_groups=[],
                programmes=[],
                animator_required=False,
            )
        )
        day_start = day_end
    return start, end


def _quotas(session: Session) -> None:
    for q in data.QUOTAS:
        found = session.scalar(
            select(Quota).where(Quota.zone_id == q.zone, Quota.age_group == q.age_group)
        )
        if found is None:
            session.add(
                Quota(
                    zone_id=q.zone,
                    age_group=q.age_group,
                    daily_min=q.daily_min,
                    break_after_min=q.break_after_min,
                    break_min=q.break_min,
                )
            )


def _login(session: Session, username: str, role: Role) -> str:
    """Create the login or give it a new password; return the password (demo only)."""
    password = secrets.token_urlsafe(12)
    account = session.scalar(select(Account).where(Account.username == username))
    if account is None:
        create_account(session, username, password, role, hasher=DEMO_HASHER)
    else:
        account.password_hash = DEMO_HASHER.hash(password)
        account.active = True
        account.role = role
        revoke_tokens(session, account.id)
    return password
