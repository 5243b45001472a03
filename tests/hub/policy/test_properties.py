"""Invariants of the engine over random requests (hypothesis).

The oracle for "inside a slot" is deliberately naive (local wall time against the
weekly table), independent of the calendar module: the reference world has no
exceptions and no slot near a daylight-saving change, where the two must agree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import event, given, settings
from hypothesis import strategies as st

from hub.policy.calendar import clear_cache
from hub.policy.engine import Code, age_at, age_group, decide
from hub.policy.model import AccessQuery, LiveView, MemberView, UsageView
from hub.policy.texts import MAX_MESSAGE_LEN
from tests.hub.policy.world import (
    BADGES,
    CFG,
    MACHINES,
    MEMBERS,
    PARIS,
    SLOTS,
    badge,
    make_directory,
    session,
)

DIRECTORY = make_directory()
NAMES = [
    "ines",
    "ines-old",
    "lucas",
    "sofia",
    "yanis",
    "amina",
    "karim",
    "theo",
    "nora",
    "malo",
    "lea",
]
MACHINE_IDS = sorted(MACHINES)

uniform_instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
)


@st.composite
def near_slots(draw: st.DrawFn) -> datetime:
    """An instant within an hour of a slot's start or end, on a day of that slot."""
    s = draw(st.sampled_from(SLOTS))
    week = draw(st.integers(0, 51))
    day = date(2026, 1, 5) + timedelta(weeks=week, days=s.weekday)  # 5 Jan 2026 is a Monday
    edge = draw(st.sampled_from([s.start, s.end]))
    offset = timedelta(seconds=draw(st.integers(-3600, 3600)))
    return datetime.combine(day, edge, tzinfo=PARIS).astimezone(UTC) + offset


instants = st.one_of(uniform_instants, near_slots())


def member_of(name: str) -> MemberView:
    return MEMBERS[BADGES[badge(name)].member_id]


def slot_end_now(m: MemberView, zone: str, now: datetime) -> datetime | None:
    """End of the weekly slot of ``m`` containing ``now``, computed naively (or None)."""
    local = now.astimezone(PARIS)
    group = age_group(age_at(m.birth_year, m.birth_month, local.date()), CFG)
    for s in SLOTS:
        if s.zone_id != zone or s.weekday != local.weekday():
            continue
        if s.age_groups and group not in s.age_groups:
            continue
        if s.programmes and s.programmes.isdisjoint(m.programmes):
            continue
        if s.start <= local.time().replace(tzinfo=None) < s.end:
            return datetime.combine(local.date(), s.end, tzinfo=PARIS).astimezone(UTC)
    return None


@st.composite
def lives(draw: st.DrawFn, member_id: int, now: datetime) -> LiveView:
    sessions: list[UsageView] = []
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 6]))):
        machine = draw(st.sampled_from(MACHINE_IDS))
        ago = draw(st.integers(0, 8 * 24 * 60))
        length = draw(st.integers(1, 180))
        start = now - timedelta(minutes=ago)
        end = start + timedelta(minutes=length)
        open_ = end >= now
        sessions.append(
            session(
                member_id, machine, start, None if open_ else end, length, sid=f"s{len(sessions)}"
            )
        )
    # Mostly a quiet room, so that grants are common enough to check their invariants.
    quiet = draw(st.integers(0, 3)) > 0
    others = set() if quiet else draw(st.sets(st.sampled_from(MACHINE_IDS), max_size=4))
    open_sessions = {
        mid: session(999, mid, now - timedelta(minutes=5), None, 5, sid=f"o-{mid}")
        for mid in others
    }
    return LiveView(
        machines_offline=frozenset()
        if quiet
        else draw(st.frozensets(st.sampled_from(MACHINE_IDS), max_size=2)),
        open_sessions=open_sessions,
        staff_present={"fablab": frozenset({6})} if draw(st.booleans()) else {},
        member_sessions=tuple(sessions),
        recent_denials=0 if quiet else draw(st.integers(0, 10)),
    )


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, AccessQuery, LiveView]:
    # Members who can be granted something are drawn more often.
    name = draw(
        st.sampled_from(NAMES) | st.sampled_from(["ines", "yanis", "amina", "nora", "lea", "sofia"])
    )
    machine = draw(st.sampled_from(MACHINE_IDS))
    now = draw(instants)
    q = AccessQuery(
        badge=badge(name), machine_id=machine, edge_id=MACHINES[machine].edge_id, now=now
    )
    live = draw(lives(BADGES[badge(name)].member_id, now))
    return name, q, live


@settings(max_examples=400, deadline=None)
@given(requests())
def test_grant_invariants(request: tuple[str, AccessQuery, LiveView]) -> None:
    name, q, live = request
    d = decide(q, DIRECTORY, live, CFG)
    m = member_of(name)
    event(d.code)
    assert 0 < len(d.message) < MAX_MESSAGE_LEN
    if not d.granted:
        assert d.ends_at is None
        assert d.warn_at == ()
        return
    assert d.ends_at is not None
    assert d.ends_at > q.now
    assert list(d.warn_at) == sorted(set(d.warn_at))
    assert all(q.now < w < d.ends_at for w in d.warn_at)
    assert live.recent_denials < CFG.attempt_limit
    machine = MACHINES[q.machine_id]
    if m.is_staff:
        assert d.code == Code.GRANTED_STAFF
        assert d.ends_at <= q.now + timedelta(minutes=CFG.staff_max_min)
        return
    # Never grant outside an open slot to a non-staff member (minors included).
    end = slot_end_now(m, machine.zone_id, q.now)
    assert end is not None, f"granted outside any slot: {q.now.astimezone(PARIS)}"
    assert d.ends_at <= end
    assert d.code == Code.GRANTED
    assert d.member_id == m.id


@settings(max_examples=200, deadline=None)
@given(requests())
def test_decide_is_deterministic(request: tuple[str, AccessQuery, LiveView]) -> None:
    _, q, live = request
    first = decide(q, DIRECTORY, live, CFG)
    assert decide(q, DIRECTORY, live, CFG) == first
    clear_cache()
    assert decide(q, make_directory(), live, CFG) == first


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    st.sampled_from(MACHINE_IDS),
    instants,
)
def test_unknown_badge_is_never_granted(hash_: str, machine: str, now: datetime) -> None:
    if hash_ in BADGES:
        return
    q = AccessQuery(badge=hash_, machine_id=machine, edge_id=MACHINES[machine].edge_id, now=now)
    d = decide(q, DIRECTORY, LiveView(), CFG)
    assert not d.granted
    assert d.code == Code.UNKNOWN_BADGE
    assert d.member_id is None


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(2026, 3, 28), max_value=datetime(2026, 3, 30), timezones=st.just(UTC)
    )
    | st.datetimes(
        min_value=datetime(2026, 10, 24), max_value=datetime(2026, 10, 26), timezones=st.just(UTC)
    )
)
def test_dst_nights_never_grant_outside_the_wall_clock_slot(now: datetime) -> None:
    """Around both changes, a Sunday 02:30-03:30 slot grants only when the clock reads it.

    On the fall-back night the window runs from the first 02:30 to 03:30, so the
    second pass through 02:00-02:30 (``fold == 1``) is inside it too.
    """
    from tests.hub.policy.world import SUN, slot

    directory = make_directory(slots=(slot("fablab", SUN, "02:30", "03:30"),))
    d = decide(AccessQuery(badge("nora"), "printer-1", "edge-fab", now), directory, LiveView(), CFG)
    local = now.astimezone(PARIS)
    on_clock = local.weekday() == SUN and (
        (2, 30) <= (local.hour, local.minute) < (3, 30) or (local.fold == 1 and local.hour == 2)
    )
    # 03:00-03:30 CEST on spring-forward night is the only part of the slot that exists.
    assert d.granted == on_clock
    if d.granted:
        assert d.ends_at is not None
        assert d.ends_at.astimezone(PARIS).strftime("%H:%M") == "03:30"
