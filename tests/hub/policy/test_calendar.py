"""Windows of a zone in real time: weekly slots, exceptions, merging, daylight saving."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from hub.policy.calendar import (
    Window,
    format_when,
    local_to_utc,
    next_window,
    open_windows,
)
from tests.hub.policy.world import (
    CFG,
    PARIS,
    SAT,
    SUN,
    WED,
    exception,
    make_directory,
    paris,
    slot,
)

BASE = make_directory()


def spans(windows: list[Window]) -> list[tuple[datetime, datetime]]:
    return [(w.start, w.end) for w in windows]


def test_local_to_utc_ordinary_day() -> None:
    assert local_to_utc(date(2026, 1, 7), time(14), PARIS) == datetime(2026, 1, 7, 13, tzinfo=UTC)
    assert local_to_utc(date(2026, 7, 7), time(14), PARIS) == datetime(2026, 7, 7, 12, tzinfo=UTC)


def test_local_to_utc_spring_gap_maps_to_the_change() -> None:
    change = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert local_to_utc(date(2026, 3, 29), time(2, 0), PARIS) == change
    assert local_to_utc(date(2026, 3, 29), time(2, 30), PARIS) == change
    assert local_to_utc(date(2026, 3, 29), time(2, 59, 59), PARIS, later=True) == change
    assert local_to_utc(date(2026, 3, 29), time(3, 0), PARIS) == change
    assert local_to_utc(date(2026, 3, 29), time(1, 59), PARIS) == datetime(
        2026, 3, 29, 0, 59, tzinfo=UTC
    )


def test_local_to_utc_fall_back_hour_happens_twice() -> None:
    day = date(2026, 10, 25)
    assert local_to_utc(day, time(2, 30), PARIS) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert local_to_utc(day, time(2, 30), PARIS, later=True) == datetime(
        2026, 10, 25, 1, 30, tzinfo=UTC
    )
    assert local_to_utc(day, time(3, 0), PARIS) == datetime(2026, 10, 25, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "start", "end"),
    [
        # Ordinary Sunday: one hour.
        (
            date(2026, 4, 5),
            datetime(2026, 4, 5, 0, 30, tzinfo=UTC),
            datetime(2026, 4, 5, 1, 30, tzinfo=UTC),
        ),
        # Spring forward: 02:30 does not exist, the slot runs 03:00-03:30 CEST.
        (
            date(2026, 3, 29),
            datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
            datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        ),
        # Fall back: from the first 02:30 (CEST) to 03:30 CET, two real hours.
        (
            date(2026, 10, 25),
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
            datetime(2026, 10, 25, 2, 30, tzinfo=UTC),
        ),
    ],
)
def test_night_slot_on_dst_days(day: date, start: datetime, end: datetime) -> None:
    directory = make_directory(slots=(slot("fablab", SUN, "02:30", "03:30"),))
    windows = open_windows("fablab", day, day, directory, CFG, age_group=None, programmes=None)
    assert spans(windows) == [(start, end)]


@pytest.mark.parametrize(
    ("saturday", "hours"),
    [(date(2026, 3, 21), 5), (date(2026, 3, 28), 4), (date(2026, 10, 24), 6)],
)
def test_slot_past_midnight_across_dst(saturday: date, hours: int) -> None:
    directory = make_directory(slots=(slot("gaming", SAT, "22:00", "03:00"),))
    windows = open_windows(
        "gaming", saturday, saturday, directory, CFG, age_group=None, programmes=None
    )
    assert len(windows) == 1
    assert windows[0].start == local_to_utc(saturday, time(22), PARIS)
    assert windows[0].end - windows[0].start == timedelta(hours=hours)


def test_window_from_yesterday_is_seen_today() -> None:
    directory = make_directory(slots=(slot("gaming", SAT, "22:00", "02:00"),))
    sunday = date(2026, 4, 19)
    windows = open_windows(
        "gaming", sunday, sunday, directory, CFG, age_group=None, programmes=None
    )
    assert spans(windows) == [(paris(2026, 4, 18, 22), paris(2026, 4, 19, 2))]


def test_audience_filters_slots() -> None:
    week = (date(2026, 4, 13), date(2026, 4, 19))
    young = open_windows("fablab", *week, BASE, CFG, age_group="9-15", programmes=frozenset())
    older = open_windows("fablab", *week, BASE, CFG, age_group="16-25", programmes=frozenset())
    prog = open_windows(
        "fablab", *week, BASE, CFG, age_group="16-25", programmes=frozenset({"fab1625"})
    )
    anyone = open_windows("fablab", *week, BASE, CFG, age_group=None, programmes=None)
    wed = (paris(2026, 4, 15, 14), paris(2026, 4, 15, 17))
    tue = (paris(2026, 4, 14, 17), paris(2026, 4, 14, 20))
    mon = (paris(2026, 4, 13, 18), paris(2026, 4, 13, 20))
    sat = (paris(2026, 4, 18, 10), paris(2026, 4, 18, 18))
    assert wed in spans(young)
    assert tue not in spans(young)
    assert sat in spans(young)
    assert wed not in spans(older)
    assert tue in spans(older)
    assert mon not in spans(older)
    assert mon in spans(prog)
    assert set(spans(young)) | set(spans(prog)) <= set(spans(anyone))
    assert len(anyone) == 6  # Mon (programme), Tue, Wed, Thu, Fri, Sat
    assert [w.start for w in anyone] == sorted(w.start for w in anyone)


def test_overlapping_slots_merge_with_labels() -> None:
    directory = make_directory(
        slots=(
            slot("fablab", SAT, "10:00", "13:00", label="matin"),
            slot("fablab", SAT, "12:00", "15:00", label="midi"),
            slot("fablab", SAT, "15:00", "18:00", label="après-midi"),
            slot("fablab", SAT, "19:00", "20:00", label="soir"),
        )
    )
    sat = date(2026, 4, 18)
    windows = open_windows("fablab", sat, sat, directory, CFG, age_group=None, programmes=None)
    assert spans(windows) == [
        (paris(2026, 4, 18, 10), paris(2026, 4, 18, 18)),
        (paris(2026, 4, 18, 19), paris(2026, 4, 18, 20)),
    ]
    assert windows[0].label == "matin + midi + après-midi"


def test_windows_differing_on_animator_stay_apart() -> None:
    directory = make_directory(
        slots=(
            slot("fablab", SAT, "10:00", "14:00"),
            slot("fablab", SAT, "12:00", "16:00", animator=True),
        )
    )
    sat = date(2026, 4, 18)
    windows = open_windows("fablab", sat, sat, directory, CFG, age_group=None, programmes=None)
    assert [(w.animator_required, w.start, w.end) for w in windows] == [
        (False, paris(2026, 4, 18, 10), paris(2026, 4, 18, 14)),
        (True, paris(2026, 4, 18, 12), paris(2026, 4, 18, 16)),
    ]


def test_closures_and_openings() -> None:
    wed = date(2026, 4, 15)
    directory = make_directory(
        exceptions=(
            exception(wed, "closure", "15:00", "15:30"),
            exception(wed, "opening", "19:00", "21:00", zone="fablab"),
            exception(wed, "closure", zone="gaming"),
            exception(wed, "holiday"),  # unknown kind: ignored
        )
    )
    fab = open_windows("fablab", wed, wed, directory, CFG, age_group="9-15", programmes=frozenset())
    assert spans(fab) == [
        (paris(2026, 4, 15, 14), paris(2026, 4, 15, 15)),
        (paris(2026, 4, 15, 15, 30), paris(2026, 4, 15, 17)),
        (paris(2026, 4, 15, 19), paris(2026, 4, 15, 21)),
    ]
    assert (
        open_windows("gaming", wed, wed, directory, CFG, age_group="9-15", programmes=frozenset())
        == []
    )


def test_closure_of_the_next_day_cuts_a_slot_past_midnight() -> None:
    directory = make_directory(
        slots=(slot("gaming", SAT, "22:00", "02:00"),),
        exceptions=(exception(date(2026, 4, 19), "closure", zone="gaming"),),
    )
    sat = date(2026, 4, 18)
    windows = open_windows("gaming", sat, sat, directory, CFG, age_group=None, programmes=None)
    assert spans(windows) == [(paris(2026, 4, 18, 22), paris(2026, 4, 19, 0))]


def test_audience_closure_does_not_shrink_the_any_view() -> None:
    sat = date(2026, 4, 18)
    directory = make_directory(exceptions=(exception(sat, "closure", groups=frozenset({"9-15"})),))
    assert (
        open_windows("fablab", sat, sat, directory, CFG, age_group="9-15", programmes=frozenset())
        == []
    )
    assert (
        len(open_windows("fablab", sat, sat, directory, CFG, age_group=None, programmes=None)) == 1
    )
    assert (
        len(
            open_windows(
                "fablab", sat, sat, directory, CFG, age_group="26+", programmes=frozenset()
            )
        )
        == 1
    )


def test_next_window() -> None:
    tue = paris(2026, 4, 14, 18)
    nxt = next_window("fablab", tue, BASE, CFG, age_group="9-15", programmes=frozenset())
    assert nxt is not None
    assert nxt.start == paris(2026, 4, 15, 14)
    # From inside a window, the next one is the following window.
    inside = next_window(
        "fablab", paris(2026, 4, 15, 14), BASE, CFG, age_group="9-15", programmes=frozenset()
    )
    assert inside is not None
    assert inside.start == paris(2026, 4, 17, 17)
    empty = make_directory(slots=())
    assert next_window("fablab", tue, empty, CFG, age_group="9-15", programmes=frozenset()) is None
    far = make_directory(
        exceptions=(exception(date(2026, 5, 20), "opening", "14:00", "15:00"),), slots=()
    )
    assert next_window("fablab", tue, far, CFG, age_group=None, programmes=None) is None
    found = next_window("fablab", tue, far, CFG, age_group=None, programmes=None, horizon_days=60)
    assert found is not None
    assert found.start == paris(2026, 5, 20, 14)


def test_cache_does_not_confuse_directories_of_the_same_version() -> None:
    wed = date(2026, 4, 15)
    a = make_directory()
    b = make_directory(exceptions=(exception(wed, "closure"),))
    assert a.version == b.version
    assert open_windows("fablab", wed, wed, a, CFG, age_group="9-15", programmes=frozenset())
    assert not open_windows("fablab", wed, wed, b, CFG, age_group="9-15", programmes=frozenset())
    assert open_windows("fablab", wed, wed, a, CFG, age_group="9-15", programmes=frozenset())


def test_empty_range() -> None:
    assert (
        open_windows(
            "fablab",
            date(2026, 4, 15),
            date(2026, 4, 14),
            BASE,
            CFG,
            age_group=None,
            programmes=None,
        )
        == []
    )


def test_invalid_weekday_is_ignored() -> None:
    directory = make_directory(
        slots=(slot("fablab", 9, "10:00", "11:00"), slot("fablab", WED, "10:00", "11:00"))
    )
    wed = date(2026, 4, 15)
    assert (
        len(
            open_windows(
                "fablab",
                wed,
                wed + timedelta(days=6),
                directory,
                CFG,
                age_group=None,
                programmes=None,
            )
        )
        == 1
    )


NOW = paris(2026, 4, 14, 18)  # Tuesday 14 April 2026


@pytest.mark.parametrize(
    ("when", "text"),
    [
        (paris(2026, 4, 14, 20), "aujourd'hui à 20h00"),
        (paris(2026, 4, 15, 9, 30), "demain à 9h30"),
        (paris(2026, 4, 15, 14), "demain à 14h00"),
        (paris(2026, 4, 16, 14), "jeudi à 14h00"),
        (paris(2026, 4, 20, 8, 5), "lundi à 8h05"),
        (paris(2026, 4, 21, 14), "mardi 21 avril à 14h00"),
        (paris(2026, 12, 2, 14), "mercredi 2 décembre à 14h00"),
        (paris(2026, 5, 1, 10), "vendredi 1er mai à 10h00"),
        (paris(2026, 4, 13, 10), "lundi 13 avril à 10h00"),
    ],
)
def test_format_when(when: datetime, text: str) -> None:
    assert format_when(when, NOW, CFG) == text


def test_format_when_uses_local_days_not_utc_days() -> None:
    # 23:30 UTC on Tuesday is already Wednesday 01:30 in Paris.
    late = datetime(2026, 4, 14, 23, 30, tzinfo=UTC)
    assert format_when(late, NOW, CFG) == "demain à 1h30"
