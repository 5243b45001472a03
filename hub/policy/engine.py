"""The access policy: a pure function from a badge request to a decision.

:func:`decide` applies the checks of DESIGN §4 in a fixed order and returns the first
refusal, or a grant carrying its end time, warning times and break rule. It reads
only its arguments (no clock, no database, no MQTT), so the hub can call it thousands
of times a second and tests can pin every boundary. Each outcome has a stable
:class:`Code` (logged, counted, shown in the UI) and a plain-French message from
:mod:`hub.policy.texts`.

Order of the checks (the first that fails decides):

1. ``too_many_attempts`` — evaluated *first*, although DESIGN §4 lists it last: a
   badge throttled for repeated denials must learn nothing more, otherwise a cloned
   or guessed badge could be used to probe which hashes exist, which members are
   suspended or which machines are free (badge enumeration).
2. ``unknown_machine``, 3. ``unknown_badge``, 4. ``badge_revoked``/``member_suspended``,
5. ``consent_missing``, 6. ``machine_maintenance``/``machine_offline``/``machine_busy``
   — staff stop here and are granted (``granted_staff``),
7. ``training_missing``/``training_expired``, 8. ``too_young``, 9. ``outside_slot``,
10. ``animator_required``, 11. ``zone_full``, 12. ``quota_exhausted``,
13. ``break_required``; otherwise ``granted``.

All calendar reasoning happens on the local day of ``query.now`` in ``cfg.tz``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from hub.policy import texts
from hub.policy.calendar import Window, local_date, local_midnight, next_window, open_windows
from hub.policy.model import (
    AccessQuery,
    Decision,
    Directory,
    LiveView,
    MemberView,
    PolicyConfig,
    QuotaView,
    UsageView,
)

logger = logging.getLogger(__name__)

#: Age group of an age no configured band covers (only slots open to any age admit it).
UNBANDED = "other"


class Code(enum.StrEnum):
    """Stable reason codes of a decision; never rename one (UI, logs, reports use them)."""

    TOO_MANY_ATTEMPTS = "too_many_attempts"
    UNKNOWN_MACHINE = "unknown_machine"
    UNKNOWN_BADGE = "unknown_badge"
    BADGE_REVOKED = "badge_revoked"
    MEMBER_SUSPENDED = "member_suspended"
    CONSENT_MISSING = "consent_missing"
    MACHINE_MAINTENANCE = "machine_maintenance"
    MACHINE_OFFLINE = "machine_offline"
    MACHINE_BUSY = "machine_busy"
    RUNNING_WITHOUT_SESSION = "running_without_session"
    TRAINING_MISSING = "training_missing"
    TRAINING_EXPIRED = "training_expired"
    TOO_YOUNG = "too_young"
    OUTSIDE_SLOT = "outside_slot"
    ANIMATOR_REQUIRED = "animator_required"
    ZONE_FULL = "zone_full"
    QUOTA_EXHAUSTED = "quota_exhausted"
    BREAK_REQUIRED = "break_required"
    GRANTED = "granted"
    GRANTED_STAFF = "granted_staff"


# --------------------------------------------------------------------------- ages


def age_at(birth_year: int, birth_month: int, on: date) -> int:
    """Age in whole years on day ``on``.

    Only the birth year and month are stored (data minimisation), so during the birth
    month the birthday counts as passed: someone born in March 2010 is 16 from
    1 March 2026.
    """
    return on.year - birth_year - (1 if on.month < birth_month else 0)


def age_group(age: int, cfg: PolicyConfig) -> str:
    """Name of the first configured band containing ``age`` (:data:`UNBANDED` if none)."""
    for band in cfg.age_bands:
        if band.contains(age):
            return band.name
    return UNBANDED


# --------------------------------------------------------------------------- usage


@dataclass(frozen=True, slots=True)
class Usage:
    """Seconds used in a zone on the local day and ISO week of a reference day."""

    today_s: float
    week_s: float


def zone_usage(
    sessions: Iterable[UsageView], zone_id: str, today: date, cfg: PolicyConfig
) -> Usage:
    """Usage of ``zone_id`` on local ``today`` and its ISO week, by session start day.

    A session counts entirely on the day it started (its ``used_s`` is what the edge
    metered; open sessions count what they have used so far).
    """
    week = today.isocalendar()[:2]
    today_s = week_s = 0.0
    for s in sessions:
        if s.zone_id != zone_id:
            continue
        day = local_date(s.started_at, cfg.tz)
        if day.isocalendar()[:2] == week:
            week_s += max(s.used_s, 0.0)
            if day == today:
                today_s += max(s.used_s, 0.0)
    return Usage(today_s, week_s)


#: Below this many seconds of quota left, a request is refused rather than granted.
MIN_QUOTA_GRANT_S = 60.0


def quota_remaining_s(quota: QuotaView | None, usage: Usage) -> float | None:
    """Seconds left before the daily or weekly cap; None when there is no cap."""
    if quota is None:
        return None
    left: list[float] = []
    if quota.daily_min is not None:
        left.append(quota.daily_min * 60 - usage.today_s)
    if quota.weekly_min is not None:
        left.append(quota.weekly_min * 60 - usage.week_s)
    return min(left) if left else None


def continuous_play(
    sessions: Iterable[UsageView], zone_id: str, now: datetime, break_min: int
) -> tuple[float, datetime | None]:
    """Seconds of uninterrupted play in ``zone_id`` up to ``now``, and when it last stopped.

    Sessions chain while each pause between them is shorter than ``break_min``; the
    play time of a chain is the sum of its sessions' metered ``used_s`` (pauses do not
    count, but neither do they reset it). An open session is still playing (it ends
    "now"). Returns ``(0, None)`` when the last chain ended at least ``break_min`` ago.
    """
    gap = timedelta(minutes=break_min)
    spans = sorted(
        (s.started_at, s.ended_at if s.ended_at is not None else now, max(s.used_s, 0.0))
        for s in sessions
        if s.zone_id == zone_id
    )
    chain_s = 0.0
    last_end: datetime | None = None
    for start, end, used in spans:
        if last_end is None or start - last_end >= gap:
            chain_s = used
            last_end = end
        else:
            chain_s += used
            last_end = max(last_end, end)
    if last_end is None or now - last_end >= gap:
        return 0.0, None
    return chain_s, last_end


# --------------------------------------------------------------------------- decide


@dataclass(frozen=True, slots=True)
class _Who:
    """What a decision says about the requester, once known."""

    member: MemberView | None = None
    group: str | None = None
    zone_id: str | None = None

    def deny(self, code: Code, message: str, **params: str | int | datetime | None) -> Decision:
        """A refusal carrying what is known of the requester (for logs and the UI), and
        the variable parts of its message (``params``, for screens in other languages)."""
        return Decision(
            granted=False,
            code=code.value,
            message=message,
            member_id=self.member.id if self.member else None,
            first_name=self.member.first_name if self.member else None,
            staff=self.member.is_staff if self.member else False,
            age_group=self.group,
            zone_id=self.zone_id,
            params=tuple(sorted(params.items())),
        )


def _warnings(ends_at: datetime, now: datetime, cfg: PolicyConfig) -> tuple[datetime, ...]:
    """Warning instants before ``ends_at`` that are still ahead, earliest first."""
    instants = {ends_at - timedelta(minutes=m) for m in cfg.warn_before_min}
    return tuple(sorted(w for w in instants if w > now))


def _current_window(
    windows: list[Window], now: datetime, staff_here: bool
) -> tuple[Window | None, bool]:
    """The window the member is in now, and whether only animator-led ones contain now.

    Prefers a window without animator requirement; with an animator present, the one
    that lasts longest.
    """
    inside = [w for w in windows if w.contains(now)]
    if not inside:
        return None, False
    free = [w for w in inside if not w.animator_required]
    if free:
        return max(free, key=lambda w: w.end), False
    if not staff_here:
        return None, True
    return max(inside, key=lambda w: w.end), False


def _window_end(current: Window, windows: list[Window], staff_here: bool) -> datetime:
    """End of ``current`` extended through the windows that continue it without a gap.

    An animator-led window continues the session only if an animator is present now.
    """
    end = current.end
    for w in windows:  # sorted by start
        if w.start > end:
            break
        if w.end > end and (staff_here or not w.animator_required):
            end = w.end
    return end


def decide(query: AccessQuery, directory: Directory, live: LiveView, cfg: PolicyConfig) -> Decision:
    """Decide whether ``query.badge`` may start a session on ``query.machine_id`` now.

    Pure and deterministic: the same arguments always give the same decision.
    """
    now = query.now
    if now.tzinfo is None:
        logger.warning("access query with a naive time %s: taken as UTC", now)
        now = now.replace(tzinfo=UTC)

    # 1. Throttle first: a throttled badge learns nothing (see the module docstring).
    if live.recent_denials >= cfg.attempt_limit:
        return _Who().deny(Code.TOO_MANY_ATTEMPTS, texts.too_many_attempts())

    # 2. The machine must exist and belong to the asking edge.
    machine = directory.machines.get(query.machine_id)
    if machine is None or machine.edge_id != query.edge_id:
        return _Who().deny(Code.UNKNOWN_MACHINE, texts.unknown_machine())

    # 3-4. Who is this?
    badge = directory.badges.get(query.badge)
    member = directory.members.get(badge.member_id) if badge is not None else None
    if badge is None or member is None:
        return _Who(zone_id=machine.zone_id).deny(Code.UNKNOWN_BADGE, texts.unknown_badge())
    today = local_date(now, cfg.tz)
    age = age_at(member.birth_year, member.birth_month, today)
    group = age_group(age, cfg)
    who = _Who(member, group, machine.zone_id)
    if badge.revoked:
        return who.deny(Code.BADGE_REVOKED, texts.badge_revoked())
    if member.status != "active":
        return who.deny(Code.MEMBER_SUSPENDED, texts.member_suspended())

    # 5. Parental consent, for everyone under the age of digital consent.
    if age < cfg.consent_age and member.consent_at is None:
        return who.deny(Code.CONSENT_MISSING, texts.consent_missing())

    # 6. The machine itself.
    if machine.maintenance:
        return who.deny(Code.MACHINE_MAINTENANCE, texts.machine_maintenance())
    if machine.id in live.machines_offline:
        return who.deny(Code.MACHINE_OFFLINE, texts.machine_offline())
    open_session = live.open_sessions.get(machine.id)
    if open_session is not None and open_session.member_id != member.id:
        return who.deny(Code.MACHINE_BUSY, texts.machine_busy())
    if machine.id in live.machines_foreign and not member.is_staff:
        # A job nobody badged for holds the machine: staff sort it out first.
        return who.deny(Code.RUNNING_WITHOUT_SESSION, texts.running_without_session())

    if member.is_staff:
        return _grant_staff(member, group, machine.zone_id, now, today, cfg)

    # 7. Trainings, in a stable order so the message is stable too.
    for training in sorted(machine.required_trainings):
        if training not in member.trainings:
            name = directory.training_names.get(training, training)
            return who.deny(Code.TRAINING_MISSING, texts.training_missing(name), training=name)
        valid_until = member.trainings[training]
        if valid_until is not None and valid_until < today:
            name = directory.training_names.get(training, training)
            return who.deny(Code.TRAINING_EXPIRED, texts.training_expired(name), training=name)

    # 8. Minimum age of the machine.
    if machine.min_age is not None and age < machine.min_age:
        return who.deny(Code.TOO_YOUNG, texts.too_young(machine.min_age), min_age=machine.min_age)

    # 9-10. The member's slot, and its animator.
    zone_id = machine.zone_id
    windows = open_windows(
        zone_id,
        today - timedelta(days=1),
        today + timedelta(days=1),
        directory,
        cfg,
        age_group=group,
        programmes=member.programmes,
    )
    staff_here = bool(live.staff_present.get(zone_id))
    window, needs_animator = _current_window(windows, now, staff_here)
    if window is None and needs_animator:
        return who.deny(Code.ANIMATOR_REQUIRED, texts.animator_required())
    if window is None:
        upcoming = next_window(
            zone_id, now, directory, cfg, age_group=group, programmes=member.programmes
        )
        start = upcoming.start if upcoming else None
        return who.deny(Code.OUTSIDE_SLOT, texts.outside_slot(start, now, cfg), next_start=start)

    # 11. Room capacity: open sessions on the zone's other machines.
    zone = directory.zones.get(zone_id)
    if zone is not None and zone.capacity is not None:
        busy = sum(
            1 for mid, s in live.open_sessions.items() if mid != machine.id and s.zone_id == zone_id
        )
        if busy >= zone.capacity:
            return who.deny(Code.ZONE_FULL, texts.zone_full(zone.capacity), capacity=zone.capacity)

    # 12. Daily and weekly caps.
    quota = directory.quotas.get((zone_id, group))
    usage = zone_usage(live.member_sessions, zone_id, today, cfg)
    remaining = quota_remaining_s(quota, usage)
    # Less than a minute left counts as used up: a 20-second grant helps nobody.
    if quota is not None and remaining is not None and remaining < MIN_QUOTA_GRANT_S:
        daily_out = (
            quota.daily_min is not None and quota.daily_min * 60 - usage.today_s < MIN_QUOTA_GRANT_S
        )
        if daily_out and quota.daily_min is not None:
            message = texts.quota_daily(quota.daily_min)
            period, minutes = "day", quota.daily_min
        else:
            message = texts.quota_weekly(quota.weekly_min or 0)
            period, minutes = "week", quota.weekly_min or 0
        return who.deny(Code.QUOTA_EXHAUSTED, message, period=period, minutes=minutes)

    # 13. Forced breaks.
    break_at: datetime | None = None
    break_after = quota.break_after_min if quota is not None and quota.break_min else None
    break_min = quota.break_min if quota is not None and quota.break_after_min else None
    if break_after and break_min:
        played_s, last_end = continuous_play(live.member_sessions, zone_id, now, break_min)
        if last_end is not None and played_s >= break_after * 60:
            until = last_end + timedelta(minutes=break_min)
            return who.deny(Code.BREAK_REQUIRED, texts.break_required(until, now, cfg), until=until)
        break_at = now + timedelta(seconds=break_after * 60 - played_s)

    # Grant: the earliest of slot end, quota end, closing time and break time.
    ends = [
        _window_end(window, windows, staff_here),
        _closing_time(zone_id, today, now, directory, cfg),
    ]
    if remaining is not None:
        ends.append(now + timedelta(seconds=remaining))
    if break_at is not None:
        ends.append(break_at)
    ends_at = min(ends)
    return Decision(
        granted=True,
        code=Code.GRANTED.value,
        message=texts.granted(member.first_name, ends_at, now, cfg),
        member_id=member.id,
        first_name=member.first_name,
        staff=False,
        ends_at=ends_at,
        warn_at=_warnings(ends_at, now, cfg),
        break_after_min=break_after if break_at is not None else None,
        break_min=break_min if break_at is not None else None,
        break_at=break_at if break_at is not None and break_at <= ends_at else None,
        age_group=group,
        zone_id=zone_id,
    )


def _closing_time(
    zone_id: str, today: date, now: datetime, directory: Directory, cfg: PolicyConfig
) -> datetime:
    """End of the zone's last window of the day, whoever it is for (a safety bound)."""
    windows = open_windows(zone_id, today, today, directory, cfg, age_group=None, programmes=None)
    ends = [w.end for w in windows if w.end > now]
    return max(ends) if ends else now + timedelta(days=1)


def _grant_staff(
    member: MemberView, group: str, zone_id: str, now: datetime, today: date, cfg: PolicyConfig
) -> Decision:
    """Staff may use any working machine, until their cap or the end of the local day."""
    ends_at = min(
        now + timedelta(minutes=cfg.staff_max_min),
        local_midnight(today + timedelta(days=1), cfg.tz),
    )
    return Decision(
        granted=True,
        code=Code.GRANTED_STAFF.value,
        message=texts.granted_staff(member.first_name, ends_at, now, cfg),
        ends_at=ends_at,
        warn_at=_warnings(ends_at, now, cfg),
        member_id=member.id,
        first_name=member.first_name,
        staff=True,
        age_group=group,
        zone_id=zone_id,
    )
