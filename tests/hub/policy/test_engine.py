"""Table-driven tests of the policy engine: one case per code, and the boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import pytest

from hub.policy.engine import Code, age_at, age_group, continuous_play, decide
from hub.policy.model import AgeBand, Directory, LiveView, PolicyConfig
from hub.policy.texts import MAX_MESSAGE_LEN
from tests.hub.policy.world import (
    CFG,
    MACHINES,
    SAT,
    SUN,
    badge,
    exception,
    make_directory,
    paris,
    query,
    session,
    slot,
    with_machine,
    with_member,
)

BASE = make_directory()

# Reference instants (Paris wall time).
TUE_18 = paris(2026, 4, 14, 18)
WED_14 = paris(2026, 4, 15, 14)
WED_15 = paris(2026, 4, 15, 15)
FRI_18 = paris(2026, 4, 17, 18)
MON_9 = paris(2026, 4, 13, 9)


@dataclass(frozen=True)
class Case:
    id: str
    who: str
    machine: str
    now: datetime
    code: Code
    live: LiveView = field(default_factory=LiveView)
    directory: Directory = BASE
    edge: str | None = None
    #: Substring the message must contain (checks the "what next" part).
    says: str = ""


CASES = [
    Case(
        "throttled",
        "ines",
        "printer-1",
        WED_15,
        Code.TOO_MANY_ATTEMPTS,
        live=LiveView(recent_denials=8),
        says="attends une minute",
    ),
    Case(
        "throttled-even-unknown-machine",
        "nobody",
        "nope",
        WED_15,
        Code.TOO_MANY_ATTEMPTS,
        live=LiveView(recent_denials=9),
    ),
    Case(
        "below-throttle", "ines", "printer-1", WED_15, Code.GRANTED, live=LiveView(recent_denials=7)
    ),
    Case("unknown-machine", "ines", "nope", WED_15, Code.UNKNOWN_MACHINE, says="animateur"),
    Case("machine-of-another-edge", "ines", "pc-1", WED_15, Code.UNKNOWN_MACHINE, edge="edge-fab"),
    Case("unknown-badge", "stranger", "printer-1", WED_15, Code.UNKNOWN_BADGE, says="enregistrer"),
    Case(
        "badge-of-missing-member",
        "ghost",
        "printer-1",
        WED_15,
        Code.UNKNOWN_BADGE,
        directory=replace(
            BASE,
            badges={
                **BASE.badges,
                badge("ghost"): replace(
                    BASE.badges[badge("ines")], hash=badge("ghost"), member_id=99
                ),
            },
        ),
    ),
    Case("badge-revoked", "ines-old", "printer-1", WED_15, Code.BADGE_REVOKED),
    Case("member-suspended", "theo", "printer-1", WED_15, Code.MEMBER_SUSPENDED),
    Case("consent-missing-14", "lucas", "printer-1", WED_15, Code.CONSENT_MISSING, says="parents"),
    Case("consent-missing-14-until-birth-month", "malo", "printer-1", WED_15, Code.CONSENT_MISSING),
    Case(
        "consent-not-needed-from-birth-month-of-15",
        "malo",
        "printer-1",
        paris(2026, 5, 6, 15),
        Code.GRANTED,
    ),
    Case("consent-not-needed-at-15", "sofia", "printer-1", WED_15, Code.GRANTED),
    Case(
        "consent-missing-even-for-staff",
        "karim",
        "printer-1",
        WED_15,
        Code.CONSENT_MISSING,
        directory=with_member(BASE, 6, birth_year=2012, consent_at=None),
    ),
    Case(
        "maintenance",
        "ines",
        "printer-1",
        WED_15,
        Code.MACHINE_MAINTENANCE,
        directory=with_machine(BASE, "printer-1", maintenance=True),
    ),
    Case(
        "maintenance-stops-staff",
        "karim",
        "printer-1",
        WED_15,
        Code.MACHINE_MAINTENANCE,
        directory=with_machine(BASE, "printer-1", maintenance=True),
    ),
    Case(
        "offline",
        "ines",
        "printer-1",
        WED_15,
        Code.MACHINE_OFFLINE,
        live=LiveView(machines_offline=frozenset({"printer-1"})),
    ),
    Case(
        "busy",
        "ines",
        "printer-1",
        WED_15,
        Code.MACHINE_BUSY,
        live=LiveView(open_sessions={"printer-1": session(8, "printer-1", WED_14, None, 60)}),
    ),
    Case(
        "busy-anonymous",
        "ines",
        "printer-1",
        WED_15,
        Code.MACHINE_BUSY,
        live=LiveView(open_sessions={"printer-1": session(None, "printer-1", WED_14, None, 60)}),
    ),
    Case(
        "same-member-rebadge-is-not-busy",
        "ines",
        "printer-1",
        WED_15,
        Code.GRANTED,
        live=LiveView(open_sessions={"printer-1": session(1, "printer-1", WED_14, None, 60)}),
    ),
    Case(
        "running-without-session",
        "ines",
        "printer-1",
        WED_15,
        Code.RUNNING_WITHOUT_SESSION,
        live=LiveView(machines_foreign=frozenset({"printer-1"})),
    ),
    Case(
        "running-without-session-staff-may",
        "karim",
        "printer-1",
        WED_15,
        Code.GRANTED_STAFF,
        live=LiveView(machines_foreign=frozenset({"printer-1"})),
    ),
    Case("staff-anytime", "karim", "laser-1", MON_9, Code.GRANTED_STAFF),
    Case(
        "staff-busy",
        "karim",
        "laser-1",
        MON_9,
        Code.MACHINE_BUSY,
        live=LiveView(open_sessions={"laser-1": session(4, "laser-1", MON_9, None, 1)}),
    ),
    Case(
        "training-missing",
        "ines",
        "laser-1",
        TUE_18,
        Code.TRAINING_MISSING,
        says="formation « Découpe laser »",
    ),
    Case(
        "training-expired-yesterday",
        "amina",
        "laser-1",
        paris(2026, 4, 16, 18),
        Code.TRAINING_EXPIRED,
        says="« Découpe laser » a expiré",
    ),
    Case("training-expiring-today-is-valid", "amina", "laser-1", TUE_18, Code.GRANTED),
    Case("too-young", "sofia", "laser-1", paris(2026, 4, 18, 11), Code.TOO_YOUNG, says="16 ans"),
    Case("turning-16-this-month-may-use-laser", "yanis", "laser-1", TUE_18, Code.GRANTED),
    Case(
        "outside-slot",
        "ines",
        "printer-1",
        TUE_18,
        Code.OUTSIDE_SLOT,
        says="Ton prochain créneau : demain à 14h00.",
    ),
    Case("slot-start-is-inside", "ines", "printer-1", WED_14, Code.GRANTED),
    Case(
        "slot-end-is-outside",
        "ines",
        "printer-1",
        paris(2026, 4, 15, 17),
        Code.OUTSIDE_SLOT,
        says="vendredi à 17h00",
    ),
    Case(
        "wrong-age-group-slot",
        "yanis",
        "printer-1",
        WED_15,
        Code.OUTSIDE_SLOT,
        says="demain à 17h00",
    ),
    Case(
        "26-plus-only-open-slots",
        "nora",
        "printer-1",
        TUE_18,
        Code.OUTSIDE_SLOT,
        says="vendredi à 17h00",
    ),
    Case("programme-slot", "amina", "printer-1", paris(2026, 4, 13, 19), Code.GRANTED),
    Case(
        "programme-slot-not-mine", "yanis", "printer-1", paris(2026, 4, 13, 19), Code.OUTSIDE_SLOT
    ),
    Case(
        "no-slot-in-horizon",
        "ines",
        "printer-1",
        TUE_18,
        Code.OUTSIDE_SLOT,
        directory=make_directory(slots=()),
        says="Pas de créneau prévu pour toi dans les 14 prochains jours",
    ),
    Case(
        "animator-required", "ines", "printer-1", FRI_18, Code.ANIMATOR_REQUIRED, says="animateur"
    ),
    Case(
        "animator-present",
        "ines",
        "printer-1",
        FRI_18,
        Code.GRANTED,
        live=LiveView(staff_present={"fablab": frozenset({6})}),
    ),
    Case(
        "animator-in-another-zone",
        "ines",
        "printer-1",
        FRI_18,
        Code.ANIMATOR_REQUIRED,
        live=LiveView(staff_present={"gaming": frozenset({6})}),
    ),
    Case(
        "zone-full",
        "ines",
        "pc-1",
        WED_15,
        Code.ZONE_FULL,
        live=LiveView(
            open_sessions={
                f"pc-{i}": session(100 + i, f"pc-{i}", WED_14, None, 30) for i in (2, 3, 4)
            }
        ),
        says="3 places",
    ),
    Case(
        "zone-not-full-when-own-machine-counts",
        "ines",
        "pc-1",
        WED_15,
        Code.GRANTED,
        live=LiveView(
            open_sessions={
                "pc-1": session(1, "pc-1", paris(2026, 4, 15, 14, 50), None, 10),
                **{f"pc-{i}": session(100 + i, f"pc-{i}", WED_14, None, 30) for i in (2, 3)},
            },
            member_sessions=(session(1, "pc-1", paris(2026, 4, 15, 14, 50), None, 10),),
        ),
    ),
    Case(
        "quota-daily",
        "ines",
        "pc-1",
        paris(2026, 4, 18, 16),
        Code.QUOTA_EXHAUSTED,
        live=LiveView(
            member_sessions=(
                session(1, "pc-1", paris(2026, 4, 18, 10), paris(2026, 4, 18, 10, 50), 50),
                session(1, "pc-2", paris(2026, 4, 18, 12), paris(2026, 4, 18, 12, 40), 40),
            )
        ),
        says="tes 90 minutes d'aujourd'hui. Reviens demain",
    ),
    Case(
        "quota-daily-yesterday-does-not-count",
        "ines",
        "pc-1",
        paris(2026, 4, 18, 16),
        Code.GRANTED,
        live=LiveView(
            member_sessions=(session(1, "pc-1", WED_14, paris(2026, 4, 15, 15, 30), 90),)
        ),
    ),
    Case(
        "quota-weekly",
        "ines",
        "pc-1",
        paris(2026, 4, 18, 16),
        Code.QUOTA_EXHAUSTED,
        live=LiveView(
            member_sessions=tuple(
                session(1, "pc-1", paris(2026, 4, d, 14), paris(2026, 4, d, 15, 15), 75)
                for d in (13, 14, 15, 16)
            )
        ),
        says="tes 300 minutes de la semaine",
    ),
    Case(
        "quota-weekly-last-week-does-not-count",
        "ines",
        "pc-1",
        paris(2026, 4, 18, 16),
        Code.GRANTED,
        live=LiveView(
            member_sessions=tuple(
                session(1, "pc-1", paris(2026, 4, d, 14), paris(2026, 4, d, 15, 30), 90)
                for d in (8, 9, 10, 11, 12)
            )
        ),
    ),
    Case(
        "other-zone-usage-does-not-count",
        "ines",
        "pc-1",
        paris(2026, 4, 18, 16),
        Code.GRANTED,
        live=LiveView(
            member_sessions=(
                session(1, "printer-1", paris(2026, 4, 18, 10), paris(2026, 4, 18, 15), 300),
            )
        ),
    ),
    Case(
        "break-required",
        "ines",
        "pc-1",
        paris(2026, 4, 15, 15, 5),
        Code.BREAK_REQUIRED,
        live=LiveView(member_sessions=(session(1, "pc-1", WED_14, WED_15, 60),)),
        says="Pause obligatoire : reviens à 15h10.",
    ),
    Case(
        "break-chain-with-short-pause",
        "ines",
        "pc-2",
        paris(2026, 4, 15, 15, 8),
        Code.BREAK_REQUIRED,
        live=LiveView(
            member_sessions=(
                session(1, "pc-1", WED_14, paris(2026, 4, 15, 14, 30), 30),
                session(1, "pc-2", paris(2026, 4, 15, 14, 35), paris(2026, 4, 15, 15, 5), 30),
            )
        ),
        says="reviens à 15h15",
    ),
    Case(
        "break-done",
        "ines",
        "pc-1",
        paris(2026, 4, 15, 15, 10),
        Code.GRANTED,
        live=LiveView(member_sessions=(session(1, "pc-1", WED_14, WED_15, 60),)),
    ),
    Case("no-break-rule-for-16-25", "yanis", "pc-1", TUE_18, Code.GRANTED),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decision_codes(case: Case) -> None:
    q = query(case.who, case.machine, case.now)
    if case.edge is not None:
        q = replace(q, edge_id=case.edge)
    decision = decide(q, case.directory, case.live, CFG)
    assert decision.code == case.code, decision.message
    assert decision.granted == (case.code in (Code.GRANTED, Code.GRANTED_STAFF))
    assert case.says in decision.message
    assert 0 < len(decision.message) < MAX_MESSAGE_LEN


def test_every_code_is_covered_by_the_table() -> None:
    assert {c.code for c in CASES} == set(Code)


def test_refusals_identify_the_member_once_known() -> None:
    revoked = decide(query("ines-old", "printer-1", WED_15), BASE, LiveView(), CFG)
    assert (revoked.member_id, revoked.first_name, revoked.age_group) == (1, "Inès", "9-15")
    unknown = decide(query("stranger", "printer-1", WED_15), BASE, LiveView(), CFG)
    assert unknown.member_id is None
    assert unknown.first_name is None


# --------------------------------------------------------------------------- grants


def test_grant_ends_at_slot_end_with_warnings() -> None:
    d = decide(query("ines", "printer-1", WED_14), BASE, LiveView(), CFG)
    assert d.granted
    assert d.code == Code.GRANTED
    end = paris(2026, 4, 15, 17)
    assert d.ends_at == end
    assert d.warn_at == (end - timedelta(minutes=10), end - timedelta(minutes=2))
    assert (d.member_id, d.first_name, d.age_group, d.zone_id, d.staff) == (
        1,
        "Inès",
        "9-15",
        "fablab",
        False,
    )
    assert d.break_after_min is None
    assert d.break_min is None
    assert d.break_at is None
    assert d.message == "C'est parti, Inès ! Jusqu'à 17h00."


def test_grant_ends_when_continuous_play_reaches_break() -> None:
    d = decide(query("ines", "pc-1", WED_14), BASE, LiveView(), CFG)
    assert d.code == Code.GRANTED
    assert d.ends_at == paris(2026, 4, 15, 15)
    assert (d.break_after_min, d.break_min) == (60, 10)
    assert d.break_at == d.ends_at  # the grant ends because the break starts


def test_grant_ends_at_break_counting_earlier_play_of_the_chain() -> None:
    played = session(1, "pc-2", WED_14, paris(2026, 4, 15, 14, 40), 40)
    d = decide(
        query("ines", "pc-1", paris(2026, 4, 15, 14, 45)),
        BASE,
        LiveView(member_sessions=(played,)),
        CFG,
    )
    assert d.code == Code.GRANTED
    assert d.ends_at == paris(2026, 4, 15, 15, 5)  # 20 more minutes reach 60
    assert d.break_at == d.ends_at


def test_grant_ends_at_daily_quota() -> None:
    # 16-25: 180 min a day, no break; 150 used today, Thursday 17:00-20:00 slot.
    used = session(4, "pc-1", paris(2026, 4, 16, 8), paris(2026, 4, 16, 10, 30), 150)
    now = paris(2026, 4, 16, 17)
    d = decide(query("yanis", "pc-2", now), BASE, LiveView(member_sessions=(used,)), CFG)
    assert d.code == Code.GRANTED
    assert d.ends_at == now + timedelta(minutes=30)
    assert d.break_after_min is None


def test_grant_ends_at_weekly_quota_when_it_is_tighter() -> None:
    sessions = tuple(
        session(1, "pc-1", paris(2026, 4, d, 14), paris(2026, 4, d, 15), 60)
        for d in (13, 14, 15, 16)
    )
    now = paris(2026, 4, 18, 10)
    d = decide(query("ines", "pc-1", now), BASE, LiveView(member_sessions=sessions), CFG)
    assert d.code == Code.GRANTED
    assert d.ends_at == now + timedelta(minutes=60)  # 300 - 240; break at 60 too


def test_staff_grant_is_capped_by_end_of_day() -> None:
    d = decide(query("karim", "laser-1", paris(2026, 4, 13, 20)), BASE, LiveView(), CFG)
    assert d.code == Code.GRANTED_STAFF
    assert d.staff
    assert d.ends_at == paris(2026, 4, 14, 0)
    assert d.break_after_min is None
    d = decide(query("karim", "laser-1", MON_9), BASE, LiveView(), CFG)
    assert d.ends_at == MON_9 + timedelta(minutes=CFG.staff_max_min)


def test_adjacent_slots_are_merged_for_the_end_time() -> None:
    directory = make_directory(
        slots=(
            slot("fablab", SAT, "10:00", "14:00"),
            slot("fablab", SAT, "14:00", "18:00", label="après-midi"),
        )
    )
    d = decide(query("ines", "printer-1", paris(2026, 4, 18, 13)), directory, LiveView(), CFG)
    assert d.ends_at == paris(2026, 4, 18, 18)


def test_animator_led_continuation_needs_an_animator_now() -> None:
    directory = make_directory(
        slots=(
            slot("fablab", SAT, "10:00", "14:00"),
            slot("fablab", SAT, "14:00", "18:00", animator=True),
        )
    )
    now = paris(2026, 4, 18, 13)
    alone = decide(query("ines", "printer-1", now), directory, LiveView(), CFG)
    assert alone.ends_at == paris(2026, 4, 18, 14)
    supervised = decide(
        query("ines", "printer-1", now),
        directory,
        LiveView(staff_present={"fablab": frozenset({6})}),
        CFG,
    )
    assert supervised.ends_at == paris(2026, 4, 18, 18)


def test_slot_past_midnight() -> None:
    directory = make_directory(slots=(slot("fablab", SAT, "22:00", "02:00"),))
    d = decide(query("nora", "printer-1", paris(2026, 4, 19, 1)), directory, LiveView(), CFG)
    assert d.code == Code.GRANTED
    assert d.ends_at == paris(2026, 4, 19, 2)
    assert d.message == "C'est parti, Nora ! Jusqu'à 2h00."
    late = decide(query("nora", "printer-1", paris(2026, 4, 18, 23)), directory, LiveView(), CFG)
    assert late.ends_at == paris(2026, 4, 19, 2)
    assert late.message == "C'est parti, Nora ! Jusqu'à demain à 2h00."


# --------------------------------------------------------------------------- exceptions


def test_closure_of_the_whole_day() -> None:
    directory = make_directory(exceptions=(exception(date(2026, 4, 15), "closure"),))
    d = decide(query("ines", "printer-1", WED_15), directory, LiveView(), CFG)
    assert d.code == Code.OUTSIDE_SLOT
    assert "vendredi à 17h00" in d.message
    # The closure is for the fablab only.
    assert decide(query("ines", "pc-1", WED_15), directory, LiveView(), CFG).granted


def test_partial_closure_cuts_the_slot() -> None:
    directory = make_directory(
        exceptions=(exception(date(2026, 4, 15), "closure", "15:00", "16:00", zone=None),)
    )
    before = decide(
        query("ines", "printer-1", paris(2026, 4, 15, 14, 30)), directory, LiveView(), CFG
    )
    assert before.ends_at == paris(2026, 4, 15, 15)
    during = decide(
        query("ines", "printer-1", paris(2026, 4, 15, 15, 30)), directory, LiveView(), CFG
    )
    assert during.code == Code.OUTSIDE_SLOT
    assert "aujourd'hui à 16h00" in during.message


def test_closure_for_one_audience_only() -> None:
    directory = make_directory(
        exceptions=(exception(date(2026, 4, 18), "closure", groups=frozenset({"9-15"})),)
    )
    sat = paris(2026, 4, 18, 11)
    assert (
        decide(query("ines", "printer-1", sat), directory, LiveView(), CFG).code
        == Code.OUTSIDE_SLOT
    )
    assert decide(query("nora", "printer-1", sat), directory, LiveView(), CFG).code == Code.GRANTED


def test_special_opening_adds_time_even_on_a_closed_day() -> None:
    directory = make_directory(
        exceptions=(
            exception(date(2026, 4, 13), "closure"),
            exception(date(2026, 4, 13), "opening", "10:00", "12:00", groups=frozenset({"9-15"})),
        )
    )
    d = decide(query("ines", "printer-1", paris(2026, 4, 13, 10, 30)), directory, LiveView(), CFG)
    assert d.code == Code.GRANTED
    assert d.ends_at == paris(2026, 4, 13, 12)
    # The programme slot of that Monday evening is closed.
    assert decide(
        query("amina", "printer-1", paris(2026, 4, 13, 19)), directory, LiveView(), CFG
    ).code == (Code.OUTSIDE_SLOT)


# --------------------------------------------------------------------------- daylight saving


def test_regular_slot_on_both_sides_of_spring_forward() -> None:
    # Wednesday 25 March 2026 is UTC+1, Wednesday 1 April 2026 is UTC+2.
    winter = datetime(2026, 3, 25, 13, 0, tzinfo=UTC)  # 14:00 in Paris
    summer = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)  # 14:00 in Paris
    assert decide(query("ines", "printer-1", winter), BASE, LiveView(), CFG).granted
    assert decide(query("ines", "printer-1", summer), BASE, LiveView(), CFG).granted
    assert not decide(
        query("ines", "printer-1", winter - timedelta(minutes=1)), BASE, LiveView(), CFG
    ).granted
    assert decide(query("ines", "printer-1", summer), BASE, LiveView(), CFG).ends_at == datetime(
        2026, 4, 1, 15, 0, tzinfo=UTC
    )


NIGHT = make_directory(slots=(slot("fablab", SUN, "02:30", "03:30"),))


def test_spring_forward_night_shortens_the_slot() -> None:
    # 29 March 2026: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 does not exist.
    inside = decide(
        query("nora", "printer-1", datetime(2026, 3, 29, 1, 15, tzinfo=UTC)), NIGHT, LiveView(), CFG
    )
    assert inside.code == Code.GRANTED
    assert inside.ends_at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    before = decide(
        query("nora", "printer-1", datetime(2026, 3, 29, 0, 59, tzinfo=UTC)), NIGHT, LiveView(), CFG
    )
    assert before.code == Code.OUTSIDE_SLOT
    assert "aujourd'hui à 3h00" in before.message


def test_fall_back_night_lengthens_the_slot() -> None:
    # 25 October 2026: 03:00 CEST falls back to 02:00 CET (01:00 UTC); 02:30 happens twice.
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert decide(
        query("nora", "printer-1", first - timedelta(seconds=1)), NIGHT, LiveView(), CFG
    ).code == (Code.OUTSIDE_SLOT)
    d = decide(query("nora", "printer-1", first), NIGHT, LiveView(), CFG)
    assert d.code == Code.GRANTED
    assert d.ends_at == datetime(2026, 10, 25, 2, 30, tzinfo=UTC)  # 03:30 CET, two real hours
    repeated = decide(
        query("nora", "printer-1", datetime(2026, 10, 25, 1, 45, tzinfo=UTC)),
        NIGHT,
        LiveView(),
        CFG,
    )
    assert repeated.code == Code.GRANTED


def test_staff_end_of_day_on_a_short_day() -> None:
    # 29 March 2026 lasts 23 hours: local midnight after it is 22:00 UTC.
    d = decide(
        query("karim", "laser-1", datetime(2026, 3, 29, 20, 0, tzinfo=UTC)), BASE, LiveView(), CFG
    )
    assert d.ends_at == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- ages


@pytest.mark.parametrize(
    ("born", "on", "age"),
    [
        ((2010, 4), date(2026, 4, 1), 16),  # birth month: birthday counts as passed
        ((2010, 4), date(2026, 3, 31), 15),
        ((2010, 5), date(2026, 4, 30), 15),
        ((2010, 1), date(2026, 1, 1), 16),
        ((2010, 12), date(2026, 11, 30), 15),
        ((2010, 12), date(2026, 12, 1), 16),
    ],
)
def test_age_at(born: tuple[int, int], on: date, age: int) -> None:
    assert age_at(born[0], born[1], on) == age


@pytest.mark.parametrize(
    ("age", "group"),
    [
        (-1, "under-9"),
        (8, "under-9"),
        (9, "9-15"),
        (15, "9-15"),
        (16, "16-25"),
        (25, "16-25"),
        (26, "26+"),
        (99, "26+"),
    ],
)
def test_age_group(age: int, group: str) -> None:
    assert age_group(age, CFG) == group


def test_age_group_outside_configured_bands() -> None:
    cfg = PolicyConfig(age_bands=(AgeBand("kids", 9, 15),))
    assert age_group(20, cfg) == "other"
    assert age_group(12, cfg) == "kids"


def test_turning_16_changes_group_and_slots() -> None:
    # Yanis is born in April 2010: 9-15 in March, 16-25 from 1 April.
    march = decide(query("yanis", "printer-1", paris(2026, 3, 25, 15)), BASE, LiveView(), CFG)
    assert march.code == Code.GRANTED
    assert march.age_group == "9-15"
    april = decide(query("yanis", "printer-1", paris(2026, 4, 1, 15)), BASE, LiveView(), CFG)
    assert april.code == Code.OUTSIDE_SLOT
    assert april.age_group == "16-25"


# --------------------------------------------------------------------------- helpers


def test_continuous_play_resets_after_a_long_enough_pause() -> None:
    sessions = (
        session(1, "pc-1", WED_14, paris(2026, 4, 15, 14, 30), 30),
        session(1, "pc-1", paris(2026, 4, 15, 14, 40), paris(2026, 4, 15, 14, 50), 10),
    )
    now = paris(2026, 4, 15, 14, 55)
    assert continuous_play(sessions, "gaming", now, 10) == (600.0, paris(2026, 4, 15, 14, 50))
    assert continuous_play(sessions, "gaming", now, 11) == (2400.0, paris(2026, 4, 15, 14, 50))
    assert continuous_play(sessions, "gaming", paris(2026, 4, 15, 15, 1), 11) == (0.0, None)
    assert continuous_play(sessions, "fablab", now, 10) == (0.0, None)


def test_open_session_is_still_playing() -> None:
    open_one = session(1, "pc-1", WED_14, None, 45)
    now = paris(2026, 4, 15, 14, 45)
    assert continuous_play((open_one,), "gaming", now, 10) == (2700.0, now)


def test_naive_time_is_taken_as_utc() -> None:
    aware = decide(query("ines", "printer-1", WED_15), BASE, LiveView(), CFG)
    naive = decide(query("ines", "printer-1", WED_15.replace(tzinfo=None)), BASE, LiveView(), CFG)
    assert naive == aware


def test_machines_table_matches_edges() -> None:
    # Guard the world: the edge of every query is the machine's own.
    for mid, m in MACHINES.items():
        assert query("ines", mid, WED_15).edge_id == m.edge_id


def test_less_than_a_minute_of_quota_left_is_refused() -> None:
    # 9-15 on Saturday: 90 min a day; 89.5 used → a 30-second grant would help nobody.
    now = paris(2026, 4, 18, 16)
    used = session(1, "pc-1", paris(2026, 4, 18, 10), paris(2026, 4, 18, 11, 30), 89.5)
    d = decide(query("ines", "pc-1", now), BASE, LiveView(member_sessions=(used,)), CFG)
    assert d.code == Code.QUOTA_EXHAUSTED
    assert "90 minutes d'aujourd'hui" in d.message
    used = session(1, "pc-1", paris(2026, 4, 18, 10), paris(2026, 4, 18, 11, 30), 88.9)
    d = decide(query("ines", "pc-1", now), BASE, LiveView(member_sessions=(used,)), CFG)
    assert d.code == Code.GRANTED


def test_a_grant_to_the_end_of_the_day_says_midnight_not_tomorrow() -> None:
    from zoneinfo import ZoneInfo

    from hub.policy import texts

    cfg = PolicyConfig()
    paris = ZoneInfo("Europe/Paris")
    now = datetime(2026, 3, 4, 20, 15, tzinfo=paris)
    midnight = datetime(2026, 3, 5, 0, 0, tzinfo=paris)
    assert texts.granted("Inès", midnight, now, cfg) == "C'est parti, Inès ! Jusqu'à minuit."
    assert texts.granted_staff("Sam", midnight, now, cfg).endswith("jusqu'à minuit.")
    # Midnight of another day, or another hour tomorrow, keeps its date.
    later = datetime(2026, 3, 5, 9, 30, tzinfo=paris)
    assert texts.granted("Inès", later, now, cfg).endswith("Jusqu'à demain à 9h30.")
