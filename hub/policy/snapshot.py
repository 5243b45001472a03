"""The offline policy snapshot of one edge (DESIGN §3, "Offline decisions").

When the hub does not answer within its deadline, an edge decides alone from the
last snapshot the hub retained on ``edge/{edge}/policy``. :func:`compile_snapshot`
builds it from the same reference data the engine decides from: for every badge that
may use one of the edge's machines in the coming days, the windows in which it may
(and on which machines), its remaining quota per zone, and whether it is staff.

The snapshot mirrors :func:`hub.policy.engine.decide` as far as an edge can apply it
without live state: revoked badges, suspended members, missing parental consent,
maintenance, missing or expired trainings and minimum ages are settled here, day by
day (a member can turn 16 or lose a training during the week). Animator presence,
zone capacity, breaks and busy machines cannot be known offline and are not encoded.
Member windows list only machines whose offline rule is ``allow``; staff get one
window over the ``allow`` and ``staff_only`` machines.

The content is stable between compilations while nothing relevant changes (windows
are not clipped to ``now``; the horizon is a local midnight), so the service can
compare :func:`snapshot_fingerprint` values and republish only on a real change. The
result is unsigned: the service signs it with :func:`protocol.signing.sign_snapshot`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from hub.policy.calendar import local_date, local_midnight, open_windows
from hub.policy.engine import age_at, age_group, quota_remaining_s, zone_usage
from hub.policy.model import Directory, MachineView, MemberView, PolicyConfig, UsageView
from protocol.ids import BADGE_HASH_PATTERN, is_ident
from protocol.messages import (
    OfflineRule,
    PolicySnapshot,
    SnapshotEntry,
    SnapshotMachine,
    SnapshotWindow,
)
from protocol.signing import canonical_json

logger = logging.getLogger(__name__)

_BADGE_RE = re.compile(BADGE_HASH_PATTERN)
#: Fields that change on every compilation and say nothing about who may do what.
_VOLATILE = frozenset({"version", "issued_at", "valid_until", "signature"})


@dataclass(slots=True)
class SnapshotMemo:
    """Work shared by a batch of edges compiled with the same inputs.

    ``entries`` maps (member id, shape of the edge's machines) to the member's entry
    computed on placeholder machine ids ``p0, p1…``; ``windows`` interns equal
    window tuples so that members with the same rights share one object.
    """

    entries: dict[tuple[int, tuple[Any, ...]], SnapshotEntry | None] = field(default_factory=dict)
    windows: dict[tuple[SnapshotWindow, ...], tuple[SnapshotWindow, ...]] = field(
        default_factory=dict
    )


def _shape(machine: MachineView) -> tuple[Any, ...]:
    """What of a machine decides who may use it offline (everything but its id)."""
    return (
        machine.zone_id,
        tuple(sorted(machine.required_trainings)),
        machine.min_age,
        machine.offline_rule,
        machine.maintenance,
    )


def _rename_windows(
    windows: tuple[SnapshotWindow, ...], ids: Sequence[str]
) -> tuple[SnapshotWindow, ...]:
    """``windows`` with placeholder machine ids ``p<i>`` replaced by ``ids[i]``.

    The windows were validated when built; rebuilding them without validation keeps
    the shared-entry shortcut cheap.
    """
    return tuple(
        SnapshotWindow.model_construct(
            start=w.start, end=w.end, machines=tuple(ids[int(m[1:])] for m in w.machines)
        )
        for w in windows
    )


@dataclass(frozen=True, slots=True)
class _Horizon:
    """The span of local days a snapshot covers."""

    now: datetime
    today: date
    days: tuple[date, ...]
    start: datetime  # local midnight of today
    end: datetime  # local midnight after the last day, never later than now + days


def compile_snapshot(
    edge_id: str,
    directory: Directory,
    sessions: Mapping[int, Sequence[UsageView]],
    cfg: PolicyConfig,
    *,
    now: datetime,
    version: int,
    days: int = 7,
    validity: timedelta = timedelta(hours=36),
    memo: SnapshotMemo | None = None,
) -> PolicySnapshot:
    """The unsigned offline snapshot of ``edge_id`` as of ``now``.

    ``sessions`` holds each member's recent sessions (by member id), from which the
    remaining quota of the day is computed. Windows cover the local days from today
    to ``days - 1`` days ahead. Reference data that the contract cannot carry (ids
    outside ``[a-z0-9-]``, malformed badge hashes) is skipped and logged.

    ``memo`` lets a batch of edges compiled with the same inputs (directory,
    sessions, configuration, ``now``) share their member entries: two hundred
    gaming PCs, one per edge, all alike, cost one computation per member, not two
    hundred. Never reuse a memo across different inputs.

    Raises:
        ValueError: the caller's own arguments break the contract (``edge_id`` not a
            valid id, ``version`` below 1, ``now`` not timezone-aware).
    """
    if now.tzinfo is None:
        raise ValueError("compile_snapshot needs an aware 'now'")
    days = max(days, 1)
    today = local_date(now, cfg.tz)
    horizon = _Horizon(
        now=now,
        today=today,
        days=tuple(today + timedelta(days=i) for i in range(days)),
        start=local_midnight(today, cfg.tz),
        end=min(local_midnight(today + timedelta(days=days), cfg.tz), now + timedelta(days=days)),
    )
    machines: list[MachineView] = []
    for machine in sorted(directory.machines.values(), key=lambda m: m.id):
        if machine.edge_id != edge_id:
            continue
        if not (is_ident(machine.id) and is_ident(machine.zone_id)):
            logger.warning(
                "machine %r (zone %r) has an invalid id: left out of the snapshot",
                machine.id,
                machine.zone_id,
            )
            continue
        machines.append(machine)
    # Member entries are computed on placeholders p0, p1… so edges whose machines are
    # alike in everything but their ids share them through ``memo``.
    shape = tuple(_shape(m) for m in machines)
    placeholders = [dataclasses.replace(m, id=f"p{i}") for i, m in enumerate(machines)]
    ids = [m.id for m in machines]

    memo = memo if memo is not None else SnapshotMemo()
    renamed: dict[int, tuple[SnapshotWindow, ...]] = {}  # id(interned windows) -> renamed
    by_member: dict[int, SnapshotEntry | None] = {}
    entries: list[SnapshotEntry] = []
    for badge in sorted(directory.badges.values(), key=lambda b: b.hash):
        if badge.revoked:
            continue
        if not _BADGE_RE.match(badge.hash):
            logger.warning(
                "badge of member %s has a malformed hash: left out of the snapshot", badge.member_id
            )
            continue
        if badge.member_id not in by_member:
            by_member[badge.member_id] = _shared_entry(
                badge.member_id, shape, placeholders, directory, sessions, cfg, horizon, memo
            )
        template = by_member[badge.member_id]
        if template is None:
            continue
        windows = renamed.get(id(template.windows))
        if windows is None:
            windows = renamed[id(template.windows)] = _rename_windows(template.windows, ids)
        entries.append(
            SnapshotEntry.model_construct(
                badge=badge.hash,
                staff=template.staff,
                windows=windows,
                quota_min=dict(template.quota_min),
            )
        )

    return PolicySnapshot(
        edge=edge_id,
        version=version,
        issued_at=now,
        valid_until=now + validity,
        machines=tuple(
            SnapshotMachine(machine=m.id, zone=m.zone_id, rule=m.offline_rule) for m in machines
        ),
        entries=tuple(entries),
    )


def snapshot_fingerprint(snapshot: PolicySnapshot) -> str:
    """SHA-256 of what the snapshot allows, ignoring version, times and signature.

    Two compilations with the same fingerprint grant exactly the same things, so the
    service republishes (and bumps the version) only when the fingerprint changes.
    """
    data = snapshot.model_dump(mode="json", exclude=set(_VOLATILE))
    return hashlib.sha256(canonical_json(data)).hexdigest()


# --------------------------------------------------------------------------- members


def _shared_entry(
    member_id: int,
    shape: tuple[Any, ...],
    placeholders: Sequence[MachineView],
    directory: Directory,
    sessions: Mapping[int, Sequence[UsageView]],
    cfg: PolicyConfig,
    horizon: _Horizon,
    memo: SnapshotMemo,
) -> SnapshotEntry | None:
    """The member's entry on placeholder machines, computed once per machine shape."""
    key = (member_id, shape)
    if key in memo.entries:
        return memo.entries[key]
    member = directory.members.get(member_id)
    entry = (
        _member_entry(member, placeholders, directory, sessions.get(member_id, ()), cfg, horizon)
        if member is not None
        else None
    )
    if entry is not None:
        interned = memo.windows.setdefault(entry.windows, entry.windows)
        if interned is not entry.windows:
            entry = entry.model_copy(update={"windows": interned})
    memo.entries[key] = entry
    return entry


def _consent_ok(member: MemberView, day: date, cfg: PolicyConfig) -> bool:
    return (
        member.consent_at is not None
        or age_at(member.birth_year, member.birth_month, day) >= cfg.consent_age
    )


def _may_use(member: MemberView, machine: MachineView, day: date) -> bool:
    """Trainings and minimum age of ``machine`` allow ``member`` on ``day``."""
    for training in machine.required_trainings:
        if training not in member.trainings:
            return False
        valid_until = member.trainings[training]
        if valid_until is not None and valid_until < day:
            return False
    age = age_at(member.birth_year, member.birth_month, day)
    return machine.min_age is None or age >= machine.min_age


def _member_entry(
    member: MemberView,
    machines: Sequence[MachineView],
    directory: Directory,
    sessions: Sequence[UsageView],
    cfg: PolicyConfig,
    horizon: _Horizon,
) -> SnapshotEntry | None:
    """The entry of ``member`` (badge left blank), or None if they may use nothing."""
    if member.status != "active":
        return None
    if member.is_staff:
        return _staff_entry(member, machines, cfg, horizon)

    groups = {
        day: age_group(age_at(member.birth_year, member.birth_month, day), cfg)
        for day in horizon.days
    }
    usable: dict[tuple[str, date], tuple[str, ...]] = {}
    for day in horizon.days:
        if not _consent_ok(member, day, cfg):
            continue
        for machine in machines:
            if machine.maintenance or machine.offline_rule != OfflineRule.ALLOW:
                continue
            if _may_use(member, machine, day):
                key = (machine.zone_id, day)
                usable[key] = (*usable.get(key, ()), machine.id)

    windows: list[SnapshotWindow] = []
    zones_used: set[str] = set()
    for zone_id in sorted({zone for zone, _ in usable}):
        for group in sorted(set(groups.values())):
            for window in open_windows(
                zone_id,
                horizon.today,
                horizon.days[-1],
                directory,
                cfg,
                age_group=group,
                programmes=member.programmes,
            ):
                if window.end <= horizon.now or window.start >= horizon.end:
                    continue
                day = max(local_date(window.start, cfg.tz), horizon.today)
                ids = usable.get((zone_id, day))
                if groups.get(day) != group or not ids:
                    continue
                windows.append(
                    SnapshotWindow(
                        start=window.start, end=min(window.end, horizon.end), machines=ids
                    )
                )
                zones_used.add(zone_id)
    if not windows:
        return None

    group_today = groups[horizon.today]
    quota_min: dict[str, int] = {}
    for zone_id in sorted(zones_used):
        remaining = quota_remaining_s(
            directory.quotas.get((zone_id, group_today)),
            zone_usage(sessions, zone_id, horizon.today, cfg),
        )
        if remaining is not None:
            quota_min[zone_id] = max(0, int(remaining // 60))
    windows.sort(key=lambda w: (w.start, w.end, w.machines))
    return SnapshotEntry(badge="0" * 64, staff=False, windows=tuple(windows), quota_min=quota_min)


def _staff_entry(
    member: MemberView, machines: Sequence[MachineView], cfg: PolicyConfig, horizon: _Horizon
) -> SnapshotEntry | None:
    """Staff may use every working machine not denied offline, over the whole horizon.

    Staff are listed on every edge that has machines, even when none is usable right
    now (all in maintenance): the flag alone lets the edge recognise them.
    """
    if not machines or not _consent_ok(member, horizon.today, cfg):
        return None
    ids = tuple(
        m.id
        for m in machines
        if not m.maintenance and m.offline_rule in (OfflineRule.ALLOW, OfflineRule.STAFF_ONLY)
    )
    windows = (SnapshotWindow(start=horizon.start, end=horizon.end, machines=ids),) if ids else ()
    return SnapshotEntry(badge="0" * 64, staff=True, windows=windows)
