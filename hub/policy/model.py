"""Plain, immutable views the policy engine decides from.

The engine (:mod:`hub.policy.engine`) is a pure function of an
:class:`AccessQuery`, a :class:`Directory` (reference data: who, which machine,
which slots, which quotas) and a :class:`LiveView` (what is happening now: open
sessions, machines online, staff present, recent usage and denials). Nothing here
touches the database or MQTT: the hub builds these views from its store and its
live state, and tests build them by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from protocol.messages import OfflineRule

STAFF_ROLES = frozenset({"animator", "fabmanager", "admin"})


@dataclass(frozen=True, slots=True)
class AgeBand:
    """An age group: ``name`` covers ages ``low`` to ``high`` inclusive (None: open)."""

    name: str
    low: int | None
    high: int | None

    def contains(self, age: int) -> bool:
        return (self.low is None or age >= self.low) and (self.high is None or age <= self.high)


DEFAULT_AGE_BANDS: tuple[AgeBand, ...] = (
    AgeBand("under-9", None, 8),
    AgeBand("9-15", 9, 15),
    AgeBand("16-25", 16, 25),
    AgeBand("26+", 26, None),
)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Tunables of the policy that are configuration, not data."""

    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Paris"))
    age_bands: tuple[AgeBand, ...] = DEFAULT_AGE_BANDS
    #: Below this age a guardian's consent is required (15 in France, GDPR art. 8).
    consent_age: int = 15
    #: Warnings before the end of a session, in minutes.
    warn_before_min: tuple[int, ...] = (10, 2)
    #: Longest staff session (staff have no slot end).
    staff_max_min: int = 8 * 60
    #: Denials per window after which a badge is throttled.
    attempt_limit: int = 8
    attempt_window_s: float = 60.0
    #: How far ahead to look for the next slot when refusing "outside slot".
    next_slot_horizon_days: int = 14


@dataclass(frozen=True, slots=True)
class MemberView:
    id: int
    first_name: str
    birth_year: int
    birth_month: int
    status: str  # "active" | "suspended"
    role: str  # "member" | "animator" | "fabmanager" | "coordinator" | "admin"
    consent_at: date | None
    programmes: frozenset[str]
    #: training id -> last valid day (None: never expires).
    trainings: Mapping[str, date | None]

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES


@dataclass(frozen=True, slots=True)
class BadgeView:
    hash: str
    member_id: int
    revoked: bool


@dataclass(frozen=True, slots=True)
class MachineView:
    id: str
    name: str
    kind: str  # a protocol.kinds.MachineKind value
    zone_id: str
    edge_id: str
    min_age: int | None
    offline_rule: OfflineRule
    maintenance: bool
    required_trainings: frozenset[str]


@dataclass(frozen=True, slots=True)
class ZoneView:
    id: str
    name: str
    capacity: int | None


@dataclass(frozen=True, slots=True)
class SlotView:
    """Weekly window in local time; ``end`` <= ``start`` means it ends after midnight."""

    zone_id: str
    weekday: int  # 0 = Monday
    start: time
    end: time
    label: str
    age_groups: frozenset[str]  # empty: any
    programmes: frozenset[str]  # empty: any
    animator_required: bool


@dataclass(frozen=True, slots=True)
class ExceptionView:
    """Closure (start/end None = whole day) or special opening, on one local day."""

    zone_id: str | None  # None: every zone
    day: date
    kind: str  # "closure" | "opening"
    start: time | None
    end: time | None
    label: str
    age_groups: frozenset[str]
    programmes: frozenset[str]
    animator_required: bool


@dataclass(frozen=True, slots=True)
class QuotaView:
    zone_id: str
    age_group: str
    daily_min: int | None
    weekly_min: int | None
    break_after_min: int | None
    break_min: int | None


@dataclass(frozen=True, slots=True)
class Directory:
    """Reference data, rebuilt from the store whenever an admin changes something."""

    members: Mapping[int, MemberView]
    badges: Mapping[str, BadgeView]
    machines: Mapping[str, MachineView]
    zones: Mapping[str, ZoneView]
    slots: tuple[SlotView, ...]
    exceptions: tuple[ExceptionView, ...]
    #: (zone id, age group) -> quota.
    quotas: Mapping[tuple[str, str], QuotaView]
    version: int = 0
    #: Training id -> the name members know it by ("Découpe laser"), for messages.
    training_names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UsageView:
    """A recent or open usage session of a member, as the policy sees it (for quotas,
    breaks and busy machines; not the edge's ``SessionView`` of a machine's state)."""

    session_id: str
    member_id: int | None
    machine_id: str
    zone_id: str
    started_at: datetime
    ended_at: datetime | None  # None: still open
    used_s: float


@dataclass(frozen=True, slots=True)
class LiveView:
    """What is happening now, as far as the hub knows."""

    #: Machine ids reported offline (edge offline, or state "offline"/"fault").
    machines_offline: frozenset[str] = frozenset()
    #: Machine ids running a job nobody badged for (``MachineDetail.foreign_job``).
    machines_foreign: frozenset[str] = frozenset()
    #: Open sessions by machine id.
    open_sessions: Mapping[str, UsageView] = field(default_factory=dict)
    #: Staff member ids present, by zone id.
    staff_present: Mapping[str, frozenset[int]] = field(default_factory=dict)
    #: The member's sessions of the last 8 days (open ones included).
    member_sessions: tuple[UsageView, ...] = ()
    #: Denials of this badge within the attempt window.
    recent_denials: int = 0


@dataclass(frozen=True, slots=True)
class AccessQuery:
    badge: str
    machine_id: str
    edge_id: str
    now: datetime  # aware


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's verdict. ``code`` is stable; ``message`` is plain French."""

    granted: bool
    code: str
    message: str
    member_id: int | None = None
    first_name: str | None = None
    staff: bool = False
    ends_at: datetime | None = None
    warn_at: tuple[datetime, ...] = ()
    break_after_min: int | None = None
    break_min: int | None = None
    #: When the forced break starts (continuous play counted over the zone), if
    #: within the grant; the grant then ends there.
    break_at: datetime | None = None
    age_group: str | None = None
    zone_id: str | None = None
    #: The variable parts of ``message`` (training, min_age, next_start, capacity,
    #: minutes, period, until), so screens can say it in another language.
    params: tuple[tuple[str, str | int | datetime | None], ...] = ()
