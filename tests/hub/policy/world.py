"""A small, readable FabLab for policy tests.

Zones ``fablab`` (capacity 12) and ``gaming`` (capacity 3). Machines: ``printer-1`` and
``laser-1`` (training ``laser``, 16+, staff-only offline) on edge ``edge-fab``;
``pc-1``..``pc-4`` on edge ``edge-game``. Gaming quotas: 9-15 get 90 min a day,
300 a week, a 10-minute break after 60 minutes; 16-25 get 180 min a day.

Weekly slots, the same in both zones: Wednesday 14-17 for 9-15, Tuesday and Thursday
17-20 for 16-25, Saturday 10-18 for anyone. The fablab also has Monday 18-20 for the
``fab1625`` programme and Friday 17-19 for anyone with an animator.

Reference week: Monday 13 April 2026 to Sunday 19 April 2026 (Paris is UTC+2).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from hub.policy.model import (
    AccessQuery,
    BadgeView,
    Directory,
    ExceptionView,
    MachineView,
    MemberView,
    PolicyConfig,
    QuotaView,
    SlotView,
    UsageView,
    ZoneView,
)
from protocol.messages import OfflineRule

PARIS = ZoneInfo("Europe/Paris")
CFG = PolicyConfig()

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def paris(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    """An unambiguous Paris wall time as an aware UTC datetime."""
    return datetime(y, mo, d, h, mi, s, tzinfo=PARIS).astimezone(UTC)


def badge(name: str) -> str:
    """A deterministic 64-hex badge hash for a readable name."""
    return hashlib.sha256(name.encode()).hexdigest()


def member(
    mid: int,
    first_name: str,
    born: tuple[int, int],
    *,
    status: str = "active",
    role: str = "member",
    consent: bool = True,
    programmes: frozenset[str] = frozenset(),
    trainings: dict[str, date | None] | None = None,
) -> MemberView:
    return MemberView(
        id=mid,
        first_name=first_name,
        birth_year=born[0],
        birth_month=born[1],
        status=status,
        role=role,
        consent_at=date(2025, 9, 1) if consent else None,
        programmes=programmes,
        trainings=trainings or {},
    )


MEMBERS = {
    m.id: m
    for m in (
        member(1, "Inès", (2013, 9)),  # 12: 9-15
        member(2, "Lucas", (2011, 6), consent=False),  # 14, no consent
        member(3, "Sofia", (2011, 4), consent=False, trainings={"laser": None}),  # 15 this month
        member(4, "Yanis", (2010, 4), trainings={"laser": date(2027, 1, 1)}),  # 16 this month
        member(
            5,
            "Amina",
            (2006, 1),
            programmes=frozenset({"fab1625"}),
            trainings={"laser": date(2026, 4, 14)},
        ),
        member(6, "Karim", (1995, 2), role="animator"),
        member(7, "Théo", (2012, 1), status="suspended"),
        member(8, "Nora", (1990, 7)),  # 35: 26+
        member(9, "Malo", (2011, 5), consent=False),  # 14 until May 2026
        member(10, "Léa", (2012, 3)),  # 14: 9-15, no laser training
    )
}

BADGES = {
    b.hash: b
    for b in (
        BadgeView(badge("ines"), 1, False),
        BadgeView(badge("ines-old"), 1, True),
        BadgeView(badge("lucas"), 2, False),
        BadgeView(badge("sofia"), 3, False),
        BadgeView(badge("yanis"), 4, False),
        BadgeView(badge("amina"), 5, False),
        BadgeView(badge("karim"), 6, False),
        BadgeView(badge("theo"), 7, False),
        BadgeView(badge("nora"), 8, False),
        BadgeView(badge("malo"), 9, False),
        BadgeView(badge("lea"), 10, False),
    )
}


def machine(
    mid: str,
    zone: str,
    edge: str,
    kind: str,
    *,
    min_age: int | None = None,
    rule: OfflineRule = OfflineRule.ALLOW,
    trainings: frozenset[str] = frozenset(),
) -> MachineView:
    return MachineView(
        id=mid,
        name=mid.upper(),
        kind=kind,
        zone_id=zone,
        edge_id=edge,
        min_age=min_age,
        offline_rule=rule,
        maintenance=False,
        required_trainings=trainings,
    )


MACHINES = {
    m.id: m
    for m in (
        machine("printer-1", "fablab", "edge-fab", "printer"),
        machine(
            "laser-1",
            "fablab",
            "edge-fab",
            "laser",
            min_age=16,
            rule=OfflineRule.STAFF_ONLY,
            trainings=frozenset({"laser"}),
        ),
        *(machine(f"pc-{i}", "gaming", "edge-game", "gaming_pc") for i in range(1, 5)),
    )
}

ZONES = {
    "fablab": ZoneView("fablab", "FabLab", 12),
    "gaming": ZoneView("gaming", "Salle de jeu", 3),
}


def slot(
    zone: str,
    weekday: int,
    start: str,
    end: str,
    *,
    groups: frozenset[str] = frozenset(),
    programmes: frozenset[str] = frozenset(),
    animator: bool = False,
    label: str = "",
) -> SlotView:
    return SlotView(
        zone_id=zone,
        weekday=weekday,
        start=time.fromisoformat(start),
        end=time.fromisoformat(end),
        label=label or f"{zone} {weekday} {start}",
        age_groups=groups,
        programmes=programmes,
        animator_required=animator,
    )


def exception(
    day: date,
    kind: str,
    start: str | None = None,
    end: str | None = None,
    *,
    zone: str | None = "fablab",
    groups: frozenset[str] = frozenset(),
    programmes: frozenset[str] = frozenset(),
    animator: bool = False,
) -> ExceptionView:
    return ExceptionView(
        zone_id=zone,
        day=day,
        kind=kind,
        start=time.fromisoformat(start) if start else None,
        end=time.fromisoformat(end) if end else None,
        label=kind,
        age_groups=groups,
        programmes=programmes,
        animator_required=animator,
    )


YOUNG = frozenset({"9-15"})
OLDER = frozenset({"16-25"})

SLOTS = (
    *(
        s
        for zone in ("fablab", "gaming")
        for s in (
            slot(zone, WED, "14:00", "17:00", groups=YOUNG),
            slot(zone, TUE, "17:00", "20:00", groups=OLDER),
            slot(zone, THU, "17:00", "20:00", groups=OLDER),
            slot(zone, SAT, "10:00", "18:00"),
        )
    ),
    slot("fablab", MON, "18:00", "20:00", programmes=frozenset({"fab1625"})),
    slot("fablab", FRI, "17:00", "19:00", animator=True),
)

QUOTAS = {
    ("gaming", "9-15"): QuotaView("gaming", "9-15", 90, 300, 60, 10),
    ("gaming", "16-25"): QuotaView("gaming", "16-25", 180, None, None, None),
}


def make_directory(**changes: object) -> Directory:
    """The reference world, with any field replaced."""
    directory = Directory(
        members=MEMBERS,
        badges=BADGES,
        machines=MACHINES,
        zones=ZONES,
        slots=SLOTS,
        exceptions=(),
        quotas=QUOTAS,
        version=1,
        training_names={"laser": "Découpe laser"},
    )
    return replace(directory, **changes)  # type: ignore[arg-type]


def with_machine(directory: Directory, machine_id: str, **changes: object) -> Directory:
    """``directory`` with one machine changed."""
    machines = dict(directory.machines)
    machines[machine_id] = replace(machines[machine_id], **changes)  # type: ignore[arg-type]
    return replace(directory, machines=machines)


def with_member(directory: Directory, member_id: int, **changes: object) -> Directory:
    """``directory`` with one member changed."""
    members = dict(directory.members)
    members[member_id] = replace(members[member_id], **changes)  # type: ignore[arg-type]
    return replace(directory, members=members)


def query(who: str, machine_id: str, now: datetime) -> AccessQuery:
    edge = MACHINES[machine_id].edge_id if machine_id in MACHINES else "edge-fab"
    return AccessQuery(badge=badge(who), machine_id=machine_id, edge_id=edge, now=now)


def session(
    member_id: int | None,
    machine_id: str,
    start: datetime,
    end: datetime | None,
    used_min: float,
    sid: str = "",
) -> UsageView:
    return UsageView(
        session_id=sid or f"s-{machine_id}-{start.timestamp():.0f}",
        member_id=member_id,
        machine_id=machine_id,
        zone_id=MACHINES[machine_id].zone_id,
        started_at=start,
        ended_at=end,
        used_s=used_min * 60,
    )
