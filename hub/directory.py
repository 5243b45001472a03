"""Build the policy engine's immutable :class:`~hub.policy.model.Directory` from the store.

The engine decides from plain frozen views so that a decision never touches SQL
(it runs in the MQTT network thread, thousands of times a second). The hub rebuilds
the whole directory whenever an admin changes reference data and swaps the
reference atomically; readers keep using the previous one until they look again.
Nobody mutates a directory once built (its mappings are typed read-only); they are
plain dicts so that a directory can be pickled to the snapshot compiler process.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.db.models import (
    Badge,
    Machine,
    Member,
    Quota,
    Slot,
    SlotException,
    Training,
    Zone,
)
from hub.policy.model import (
    BadgeView,
    Directory,
    ExceptionView,
    MachineView,
    MemberView,
    PolicyConfig,
    QuotaView,
    SlotView,
    ZoneView,
)
from hub.settings import HubSettings

logger = logging.getLogger(__name__)


def policy_config(settings: HubSettings) -> PolicyConfig:
    """The policy tunables that come from the hub's settings."""
    return PolicyConfig(
        tz=settings.tz,
        attempt_limit=settings.attempt_limit,
        attempt_window_s=settings.attempt_window_s,
    )


def _member_view(member: Member, validity: dict[str, int | None]) -> MemberView:
    trainings: dict[str, date | None] = {}
    for mt in member.trainings:
        expires = mt.expires_on
        if expires is None:
            days = validity.get(mt.training_id)
            if days is not None:
                expires = mt.granted_on + timedelta(days=days)
        trainings[mt.training_id] = expires
    return MemberView(
        id=member.id,
        first_name=member.first_name,
        birth_year=member.birth_year,
        birth_month=member.birth_month,
        status=member.status.value,
        role=member.role.value,
        consent_at=member.consent_at,
        programmes=frozenset(member.programme_ids),
        trainings=trainings,
    )


def load_directory(session: Session, version: int) -> Directory:
    """Read every piece of reference data and return it as one immutable directory.

    Revoked badges are kept (flagged) so that the engine can say "badge revoked"
    rather than "unknown badge". A training without an explicit expiry date expires
    ``validity_days`` after it was granted, when the training has a validity.
    """
    validity = {t.id: t.validity_days for t in session.scalars(select(Training))}
    members = {m.id: _member_view(m, validity) for m in session.scalars(select(Member))}
    badges = {
        b.hash: BadgeView(hash=b.hash, member_id=b.member_id, revoked=b.revoked_at is not None)
        for b in session.scalars(select(Badge))
    }
    machines = {
        m.id: MachineView(
            id=m.id,
            name=m.name,
            kind=m.kind.value,
            zone_id=m.zone_id,
            edge_id=m.edge_id,
            min_age=m.min_age,
            offline_rule=m.offline_rule,
            maintenance=m.maintenance,
            required_trainings=frozenset(m.required_trainings),
        )
        for m in session.scalars(select(Machine))
    }
    zones = {
        z.id: ZoneView(id=z.id, name=z.name, capacity=z.capacity)
        for z in session.scalars(select(Zone))
    }
    slots = tuple(
        SlotView(
            zone_id=s.zone_id,
            weekday=s.weekday,
            start=s.start,
            end=s.end,
            label=s.label,
            age_groups=frozenset(s.age_groups or ()),
            programmes=frozenset(s.programmes or ()),
            animator_required=s.animator_required,
        )
        for s in session.scalars(select(Slot).order_by(Slot.zone_id, Slot.weekday, Slot.start))
    )
    exceptions = tuple(
        ExceptionView(
            zone_id=e.zone_id,
            day=e.day,
            kind=e.kind.value,
            start=e.start,
            end=e.end,
            label=e.label,
            age_groups=frozenset(e.age_groups or ()),
            programmes=frozenset(e.programmes or ()),
            animator_required=e.animator_required,
        )
        for e in session.scalars(select(SlotException).order_by(SlotException.day))
    )
    quotas = {
        (q.zone_id, q.age_group): QuotaView(
            zone_id=q.zone_id,
            age_group=q.age_group,
            daily_min=q.daily_min,
            weekly_min=q.weekly_min,
            break_after_min=q.break_after_min,
            break_min=q.break_min,
        )
        for q in session.scalars(select(Quota))
    }
    logger.debug(
        "directory v%d: %d members, %d badges, %d machines",
        version,
        len(members),
        len(badges),
        len(machines),
    )
    return Directory(
        members=members,
        badges=badges,
        machines=machines,
        zones=zones,
        slots=slots,
        exceptions=exceptions,
        quotas=quotas,
        version=version,
        training_names={t.id: t.name for t in session.scalars(select(Training))},
    )
