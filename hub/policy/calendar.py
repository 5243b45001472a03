"""Opening windows of a zone: weekly slots and dated exceptions, in real (UTC) time.

Slots are local wall times in the site's time zone (``cfg.tz``, Europe/Paris); the
engine and the snapshot compiler need instants. This module turns a zone's weekly
slots, closures and special openings into merged UTC :class:`Window` objects, for one
audience (an age group and a set of programmes) or for everyone.

Daylight saving, which is where wall times and instants disagree:

* a wall time that does not exist (the spring-forward gap, 02:00-03:00 in Paris) is
  moved to the moment of the change, so a slot 02:30-03:30 lasts 30 minutes that night;
* a wall time that happens twice (the fall-back hour) starts at its first occurrence
  and ends at its second, so a slot 02:30-03:30 lasts two hours that night and nobody
  is cut an hour early;
* a slot whose end is not after its start runs past midnight (``22:00-02:00``).

Results are cached per directory object (reference data is immutable and rebuilt on
every change), so the engine, called thousands of times a second, computes a zone's
calendar once per day and audience rather than once per badge.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hub.policy.model import Directory, ExceptionView, PolicyConfig, SlotView

logger = logging.getLogger(__name__)

WEEKDAYS_FR = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
MONTHS_FR = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)

#: How many directories keep a calendar cache (the live one plus a few being replaced).
_MAX_DIRECTORIES = 8
#: Bound on cached window lists per directory (days roll over while a directory lives).
_MAX_ENTRIES = 20_000


@dataclass(frozen=True, slots=True)
class Window:
    """A span of real time during which an audience may use a zone.

    ``start`` and ``end`` are aware UTC datetimes; ``start`` is inside, ``end`` is not.
    """

    start: datetime
    end: datetime
    label: str
    animator_required: bool

    def contains(self, at: datetime) -> bool:
        """True when ``at`` falls inside the window (start inclusive, end exclusive)."""
        return self.start <= at < self.end


@dataclass(frozen=True, slots=True)
class _Piece:
    """One raw interval before merging, with the audience it is for."""

    start: datetime
    end: datetime
    label: str
    animator_required: bool
    age_groups: frozenset[str]
    programmes: frozenset[str]


# --------------------------------------------------------------------------- local time


def local_to_utc(day: date, wall: time, tz: ZoneInfo, *, later: bool = False) -> datetime:
    """The UTC instant at which the wall clock of ``tz`` reads ``wall`` on ``day``.

    A wall time inside a spring-forward gap maps to the instant of the change (the
    first existing moment after it). A wall time that happens twice maps to its first
    occurrence, or to its second when ``later`` is true (used for window ends).
    """
    naive = datetime.combine(day, wall.replace(tzinfo=None))
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return first
    if first < second:  # ambiguous: the hour is repeated
        return second if later else first
    # Nonexistent: ``second`` (after-offset) lies before the change, ``first`` after it.
    return _transition(second, first, tz)


def _transition(before: datetime, after: datetime, tz: ZoneInfo) -> datetime:
    """The first instant in ``(before, after]`` carrying ``after``'s UTC offset."""
    target = after.astimezone(tz).utcoffset()
    lo, hi = before, after
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid.astimezone(tz).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return hi


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant at which local ``day`` begins."""
    return local_to_utc(day, time(0), tz)


def local_date(at: datetime, tz: ZoneInfo) -> date:
    """The local calendar day of instant ``at``."""
    return at.astimezone(tz).date()


def _span(day: date, start: time, end: time, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Real-time span of a wall-clock span on ``day``; ``end <= start`` ends the next day."""
    end_day = day if end > start else day + timedelta(days=1)
    return local_to_utc(day, start, tz), local_to_utc(end_day, end, tz, later=True)


# --------------------------------------------------------------------------- audience


def _slot_matches(
    groups: frozenset[str],
    progs: frozenset[str],
    age_group: str | None,
    programmes: frozenset[str] | None,
) -> bool:
    """Does a slot (or opening) admit this audience? ``None`` dimensions are not filtered."""
    if age_group is not None and groups and age_group not in groups:
        return False
    return programmes is None or not progs or not progs.isdisjoint(programmes)


def _closure_applies(
    groups: frozenset[str],
    progs: frozenset[str],
    age_group: str | None,
    programmes: frozenset[str] | None,
) -> bool:
    """Does a closure remove time for this audience?

    An unrestricted closure applies to everyone. A closure restricted to an audience
    applies only when the query is known to be within it: a ``None`` dimension (the
    "any audience" view used for closing times) is not removed by a closure meant for
    one group, so that view stays a superset of every member's view.
    """
    if groups and (age_group is None or age_group not in groups):
        return False
    return not progs or (programmes is not None and not progs.isdisjoint(programmes))


# --------------------------------------------------------------------------- cache


@dataclass(slots=True)
class _DirectoryCalendar:
    """Indexes and computed windows of one directory object."""

    directory: Directory
    slots: dict[tuple[str, int], list[SlotView]]
    exceptions: dict[date, list[ExceptionView]]
    windows: dict[tuple[object, ...], tuple[Window, ...]] = field(default_factory=dict)


_cache_lock = threading.Lock()
_calendars: OrderedDict[int, _DirectoryCalendar] = OrderedDict()


def _calendar(directory: Directory) -> _DirectoryCalendar:
    """The cache of ``directory``, built on first use.

    Keyed by object identity: the entry holds a strong reference to its directory, so
    an id cannot be reused while its entry lives; old directories fall out LRU.
    """
    key = id(directory)
    with _cache_lock:
        entry = _calendars.get(key)
        if entry is not None and entry.directory is directory:
            _calendars.move_to_end(key)
            return entry
        slots: dict[tuple[str, int], list[SlotView]] = {}
        for slot in directory.slots:
            if not 0 <= slot.weekday <= 6:
                logger.warning(
                    "slot of zone %s has weekday %r: ignored", slot.zone_id, slot.weekday
                )
                continue
            slots.setdefault((slot.zone_id, slot.weekday), []).append(slot)
        exceptions: dict[date, list[ExceptionView]] = {}
        for exc in directory.exceptions:
            exceptions.setdefault(exc.day, []).append(exc)
        entry = _DirectoryCalendar(directory, slots, exceptions)
        _calendars[key] = entry
        while len(_calendars) > _MAX_DIRECTORIES:
            _calendars.popitem(last=False)
        return entry


def clear_cache() -> None:
    """Forget every cached calendar (tests; the cache otherwise manages itself)."""
    with _cache_lock:
        _calendars.clear()


# --------------------------------------------------------------------------- windows


def _exception_span(exc: ExceptionView, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Real-time span of an exception; missing hours stand for the start/end of the day."""
    start = exc.start if exc.start is not None else time(0)
    if exc.end is None:
        return local_to_utc(exc.day, start, tz), local_midnight(exc.day + timedelta(days=1), tz)
    return _span(exc.day, start, exc.end, tz)


def _day_pieces(
    cal: _DirectoryCalendar, zone_id: str, day: date, tz: ZoneInfo
) -> tuple[list[_Piece], list[_Piece], list[_Piece]]:
    """Weekly slots, openings and closures of ``zone_id`` starting on local ``day``."""
    slots = [
        _Piece(
            *_span(day, s.start, s.end, tz),
            s.label,
            s.animator_required,
            s.age_groups,
            s.programmes,
        )
        for s in cal.slots.get((zone_id, day.weekday()), ())
    ]
    openings: list[_Piece] = []
    closures: list[_Piece] = []
    for exc in cal.exceptions.get(day, ()):
        if exc.zone_id is not None and exc.zone_id != zone_id:
            continue
        piece = _Piece(
            *_exception_span(exc, tz),
            exc.label,
            exc.animator_required,
            exc.age_groups,
            exc.programmes,
        )
        if exc.kind == "closure":
            closures.append(piece)
        elif exc.kind == "opening":
            openings.append(piece)
        else:
            logger.warning("exception of %s has unknown kind %r: ignored", day, exc.kind)
    return slots, openings, closures


def _subtract(pieces: Iterable[_Piece], holes: list[tuple[datetime, datetime]]) -> list[_Piece]:
    """``pieces`` with every hole cut out of them."""
    out: list[_Piece] = []
    for piece in pieces:
        parts = [(piece.start, piece.end)]
        for h_start, h_end in holes:
            cut: list[tuple[datetime, datetime]] = []
            for p_start, p_end in parts:
                if h_end <= p_start or h_start >= p_end:
                    cut.append((p_start, p_end))
                    continue
                if p_start < h_start:
                    cut.append((p_start, h_start))
                if h_end < p_end:
                    cut.append((h_end, p_end))
            parts = cut
        out.extend(
            _Piece(s, e, piece.label, piece.animator_required, piece.age_groups, piece.programmes)
            for s, e in parts
            if s < e
        )
    return out


def _merge(pieces: list[_Piece]) -> list[Window]:
    """Merge overlapping or touching pieces that agree on ``animator_required``.

    Pieces that differ on it stay apart (they may overlap): the engine prefers the
    one that needs no animator and chains contiguous windows itself.
    """
    merged: list[Window] = []
    open_by_flag: dict[bool, int] = {}
    for piece in sorted(pieces, key=lambda p: (p.start, p.end)):
        idx = open_by_flag.get(piece.animator_required)
        if idx is not None and piece.start <= merged[idx].end:
            cur = merged[idx]
            label = cur.label
            if piece.label and piece.label not in label.split(" + "):
                label = f"{label} + {piece.label}" if label else piece.label
            merged[idx] = Window(cur.start, max(cur.end, piece.end), label, cur.animator_required)
            continue
        open_by_flag[piece.animator_required] = len(merged)
        merged.append(Window(piece.start, piece.end, piece.label, piece.animator_required))
    merged.sort(key=lambda w: (w.start, w.end))
    return merged


def _compute(
    cal: _DirectoryCalendar,
    zone_id: str,
    day_from: date,
    day_to: date,
    tz: ZoneInfo,
    age_group: str | None,
    programmes: frozenset[str] | None,
) -> tuple[Window, ...]:
    slots: list[_Piece] = []
    openings: list[_Piece] = []
    holes: list[tuple[datetime, datetime]] = []
    day = day_from - timedelta(days=1)  # yesterday's slots may run past midnight
    while day <= day_to + timedelta(days=1):
        day_slots, day_openings, day_closures = _day_pieces(cal, zone_id, day, tz)
        if day <= day_to:
            slots.extend(
                s
                for s in day_slots
                if _slot_matches(s.age_groups, s.programmes, age_group, programmes)
            )
            openings.extend(
                o
                for o in day_openings
                if _slot_matches(o.age_groups, o.programmes, age_group, programmes)
            )
        holes.extend(
            (c.start, c.end)
            for c in day_closures
            if _closure_applies(c.age_groups, c.programmes, age_group, programmes)
        )
        day += timedelta(days=1)
    # Special openings are added after closures: "closed for the holidays, except the
    # holiday workshop" is the usual reason to declare both on one day.
    windows = _merge(_subtract(slots, holes) + openings)
    lo = local_midnight(day_from, tz)
    hi = local_midnight(day_to + timedelta(days=1), tz)
    return tuple(w for w in windows if w.end > lo and w.start < hi)


def open_windows(
    zone_id: str,
    day_from: date,
    day_to: date,
    directory: Directory,
    cfg: PolicyConfig,
    *,
    age_group: str | None,
    programmes: frozenset[str] | None,
) -> list[Window]:
    """Every merged window of ``zone_id`` that overlaps local days ``day_from..day_to``.

    The audience filters slots and openings: a slot admits a member when its age groups
    are empty or contain ``age_group`` and its programmes are empty or meet
    ``programmes``; ``None`` leaves that dimension unfiltered (both ``None``: every
    window of the zone, whoever it is for). Closures remove time, openings add it.
    Windows are returned whole (not clipped to the days), sorted by start.
    """
    if day_to < day_from:
        return []
    cal = _calendar(directory)
    key = (cfg.tz, zone_id, day_from, day_to, age_group, programmes)
    cached = cal.windows.get(key)
    if cached is None:
        cached = _compute(cal, zone_id, day_from, day_to, cfg.tz, age_group, programmes)
        if len(cal.windows) >= _MAX_ENTRIES:
            cal.windows.clear()
        cal.windows[key] = cached
    return list(cached)


def next_window(
    zone_id: str,
    now: datetime,
    directory: Directory,
    cfg: PolicyConfig,
    *,
    age_group: str | None,
    programmes: frozenset[str] | None,
    horizon_days: int | None = None,
) -> Window | None:
    """The first window for this audience that opens after ``now``.

    Looks ``horizon_days`` ahead (default ``cfg.next_slot_horizon_days``); None when
    nothing opens within it.
    """
    horizon = cfg.next_slot_horizon_days if horizon_days is None else horizon_days
    today = local_date(now, cfg.tz)
    windows = open_windows(
        zone_id,
        today,
        today + timedelta(days=horizon),
        directory,
        cfg,
        age_group=age_group,
        programmes=programmes,
    )
    limit = now + timedelta(days=horizon)
    for window in windows:
        if now < window.start <= limit:
            return window
    return None


# --------------------------------------------------------------------------- wording


def format_time(dt: datetime, cfg: PolicyConfig) -> str:
    """Local clock time the French way: ``14h00``, ``9h30``."""
    local = dt.astimezone(cfg.tz)
    return f"{local.hour}h{local.minute:02d}"


def format_when(dt: datetime, now: datetime, cfg: PolicyConfig) -> str:
    """When ``dt`` is, relative to ``now``, as a member reads it.

    ``aujourd'hui à 14h00``, ``demain à 9h30``, ``mercredi à 14h00`` within the coming
    week, ``mercredi 3 décembre à 14h00`` beyond (or in the past).
    """
    local = dt.astimezone(cfg.tz)
    days = (local.date() - local_date(now, cfg.tz)).days
    at = format_time(dt, cfg)
    if days == 0:
        return f"aujourd'hui à {at}"
    if days == 1:
        return f"demain à {at}"
    weekday = WEEKDAYS_FR[local.weekday()]
    if 2 <= days <= 6:
        return f"{weekday} à {at}"
    day = "1er" if local.day == 1 else str(local.day)
    return f"{weekday} {day} {MONTHS_FR[local.month - 1]} à {at}"
