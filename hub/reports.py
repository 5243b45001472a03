"""Usage reports: the one place that totals the ledger for staff and funders.

Used by the API (``/api/usage/totals``), its CSV (``/api/usage/report.csv``) and the web
report page. :func:`build_report` totals, per group of one or more dimensions (month,
zone, machine, programme, age group, machine kind, declared gender, member), the hours,
sessions, unique and new participants, average session, print jobs, print hours,
filament and machine run hours (a laser's beam-on time); :func:`report_csv` renders a
:class:`Report` for spreadsheets.

People's time and machine time (issue 9). ``hours`` count people: a session's
presence (``present_s``: from the badge until the member left or the time was up),
never the wait for a print to finish or a nozzle to cool after they left; funders
count these. ``machine_hours`` count the time sessions held the machines (``used_s``:
that wait included). Print jobs nobody badged for (started at the printer) count in
``jobs`` and are reported apart in ``unattributed_jobs`` / ``unattributed_print_hours``;
the filament of jobs that did not finish is estimated from their progress, and its
part of ``filament_m`` is ``filament_estimated_m``.

Counting rules. Sessions count in the period they started, print jobs in the period
they ended (with their session's programmes and kind); a session counts for each of its
programmes. A participant is a member (identified rows) or a month pseudonym
(pseudonymised rows, see hub.retention): unique participants are exact within any
month; over several pseudonymised months they add up per month. A participant is *new*
when their first visit ever falls in the group's month (grouping by month) or else in
the report's period.

Small groups (DESIGN §4). For roles that do not see identities (coordinators), a group
of fewer than :data:`MIN_GROUP_SIZE` people keeps its row but every figure is withheld
and its participants read ``"< 5"``; new-participant counts under 5 read ``"< 5"`` too.
Those roles cannot group by member at all (:class:`ReportForbidden`).

The heavy lifting is one SQL aggregation per source (sessions, jobs) grouped by the
requested dimensions and the participant, so a year of a site (~200,000 sessions) is
folded in Python from a few thousand rows (``bench/reports.py``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args, overload
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    String,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from hub.db.models import Gender, Machine, MachineJob, Member, Programme, Role, UsageSession, Zone
from hub.policy.calendar import MONTHS_FR
from hub.retention import first_visits, month_end, month_of

#: Smallest group a non-identifying role (coordinator) may see figures for.
MIN_GROUP_SIZE = 5
#: What a withheld count of people reads.
SMALL = f"< {MIN_GROUP_SIZE}"
#: Roles that see members' identities, hence every group in full.
IDENTIFYING_ROLES = frozenset({Role.ADMIN, Role.FABMANAGER})

Dimension = Literal[
    "month", "zone", "machine", "programme", "age_group", "machine_kind", "gender", "member"
]
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)

GENDER_LABELS = {
    Gender.FEMME.value: "Femme",
    Gender.HOMME.value: "Homme",
    Gender.AUTRE.value: "Autre",
    Gender.NON_DECLARE.value: "Non déclaré",
}
_NONE = "(aucun)"


class ReportForbidden(Exception):
    """The viewer's role may not see this report (e.g. per member, for coordinators)."""


@dataclass(frozen=True)
class Period:
    """``[start, end)`` as aware datetimes; either bound may be open."""

    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class ReportFilters:
    """Restrict the report to one value of some dimensions (None: any)."""

    zone_id: str | None = None
    machine_id: str | None = None
    programme: str | None = None
    age_group: str | None = None
    machine_kind: str | None = None
    gender: str | None = None


@dataclass(frozen=True)
class ReportRow:
    """One group's totals; figures are None (and ``masked`` True) when withheld."""

    keys: tuple[str, ...]
    labels: tuple[str, ...]
    masked: bool
    participants: int | str
    new_participants: int | str | None
    sessions: int | None
    seconds: float | None
    hours: float | None
    average_session_min: float | None
    run_hours: float | None
    jobs: int | None
    print_hours: float | None
    filament_m: float | None
    filament_g: float | None
    #: Hours the sessions held the machines (a print's end and cool-down included).
    machine_hours: float | None = None
    #: Jobs (and their print hours) nobody badged for: reported apart.
    unattributed_jobs: int | None = None
    unattributed_print_hours: float | None = None
    #: The part of ``filament_m`` estimated from progress (jobs that did not finish).
    filament_estimated_m: float | None = None


@dataclass(frozen=True)
class Report:
    site: str
    group_by: tuple[Dimension, ...]
    period: Period
    filters: ReportFilters
    rows: list[ReportRow]
    #: Groups whose figures were withheld (small groups).
    masked: int
    min_group_size: int | None
    tz: ZoneInfo
    #: Participants of pseudonymised months add up per month (see module docstring).
    note: str = ""


@dataclass
class _Acc:
    seconds: float = 0.0
    machine_seconds: float = 0.0
    run_seconds: float = 0.0
    unattributed_jobs: int = 0
    unattributed_print_seconds: float = 0.0
    filament_estimated_mm: float = 0.0
    sessions: int = 0
    jobs: int = 0
    print_seconds: float = 0.0
    filament_mm: float = 0.0
    people: set[str] = field(default_factory=set)
    #: Counted in SQL (fast path) instead of from ``people``.
    n_people: int | None = None
    n_new: int | None = None


def build_report(
    db: Session,
    period: Period,
    filters: ReportFilters,
    group_by: Sequence[Dimension],
    viewer_role: Role,
    *,
    tz: ZoneInfo,
    site: str = "",
    filament_grams: Any = None,
) -> Report:
    """Totals of the ledger for ``period`` per ``group_by`` as ``viewer_role`` may see them.

    ``filament_grams(mm) -> g`` estimates weights (HubSettings.filament_grams).
    """
    dims = tuple(dict.fromkeys(group_by)) or ("machine",)
    identifying = viewer_role in IDENTIFYING_ROLES
    if "member" in dims and not identifying:
        raise ReportForbidden("member")
    months = _months(db, period, tz) if "month" in dims else []
    if _needs_programmes(dims, filters):
        groups, counted = _fold_per_participant(db, dims, period, filters, months, tz)
    else:
        groups = _grouped_in_sql(db, dims, period, filters, months, tz)
        counted = None
    labels = _labels(db, dims, identifying, tz)
    grams = filament_grams or (lambda mm: 0.0)
    rows: list[ReportRow] = []
    masked = 0
    for key in sorted(groups):
        acc = groups[key]
        shown_labels = tuple(labels[d].get(k, k or _NONE) for d, k in zip(dims, key, strict=True))
        if counted is not None:
            month = key[dims.index("month")] if "month" in dims else None
            n_people = len(acc.people)
            n_new = sum(1 for p in acc.people if counted.is_new(p, month))
        else:
            n_people, n_new = acc.n_people or 0, acc.n_new or 0
        small = not identifying and n_people < MIN_GROUP_SIZE
        if small:
            masked += 1
            rows.append(ReportRow(key, shown_labels, True, SMALL, *([None] * 10)))
            continue
        rows.append(
            ReportRow(
                keys=key,
                labels=shown_labels,
                masked=False,
                participants=n_people,
                new_participants=SMALL if not identifying and 0 < n_new < MIN_GROUP_SIZE else n_new,
                sessions=acc.sessions,
                seconds=round(acc.seconds, 1),
                hours=round(acc.seconds / 3600, 2),
                average_session_min=round(acc.seconds / acc.sessions / 60, 1)
                if acc.sessions
                else 0.0,
                run_hours=round(acc.run_seconds / 3600, 2),
                jobs=acc.jobs,
                print_hours=round(acc.print_seconds / 3600, 2),
                filament_m=round(acc.filament_mm / 1000, 2),
                filament_g=round(grams(acc.filament_mm), 1),
                machine_hours=round(acc.machine_seconds / 3600, 2),
                unattributed_jobs=acc.unattributed_jobs,
                unattributed_print_hours=round(acc.unattributed_print_seconds / 3600, 2),
                filament_estimated_m=round(acc.filament_estimated_mm / 1000, 2),
            )
        )
    note = ""
    if _has_pseudonyms(db, period):
        note = (
            "Participants des mois anciens (pseudonymisés) comptés mois par mois : "
            "une même personne venue plusieurs de ces mois compte une fois par mois."
        )
    return Report(
        site=site,
        group_by=dims,
        period=period,
        filters=filters,
        rows=rows,
        masked=masked,
        min_group_size=None if identifying else MIN_GROUP_SIZE,
        tz=tz,
        note=note,
    )


def _fold_per_participant(
    db: Session,
    dims: tuple[Dimension, ...],
    period: Period,
    filters: ReportFilters,
    months: list[tuple[str, datetime]],
    tz: ZoneInfo,
) -> tuple[dict[tuple[str, ...], _Acc], _Newcomers]:
    """Programmes are a list per session: SQL groups per participant and programme list,
    and Python spreads each row over its programmes, keeping participants exact."""
    groups: dict[tuple[str, ...], _Acc] = {}
    pseudo_flags: dict[str, bool] = {}
    for row in db.execute(_session_query(dims, period, filters, months)):
        who, first_month = row.who, bool(row.first_month)
        if who is not None and who.startswith("p"):
            pseudo_flags[who] = pseudo_flags.get(who, False) or first_month
        for key in _keys(dims, row, filters):
            acc = groups.setdefault(key, _Acc())
            acc.seconds += row.seconds or 0.0
            acc.machine_seconds += row.machine_seconds or 0.0
            acc.run_seconds += row.run_seconds or 0.0
            acc.sessions += row.n
            if who is not None:
                acc.people.add(who)
    for row in db.execute(_job_query(dims, period, filters, months)):
        for key in _keys(dims, row, filters):
            acc = groups.setdefault(key, _Acc())
            acc.jobs += row.n
            acc.print_seconds += row.seconds or 0.0
            acc.filament_mm += row.filament_mm or 0.0
            acc.unattributed_jobs += row.n_u or 0
            acc.unattributed_print_seconds += row.seconds_u or 0.0
            acc.filament_estimated_mm += row.filament_est or 0.0
            if row.who is not None:
                acc.people.add(row.who)
    return groups, _newcomers(db, groups, period, pseudo_flags, tz)


def _has_pseudonyms(db: Session, period: Period) -> bool:
    query = select(UsageSession.id).where(UsageSession.participant.is_not(None)).limit(1)
    return db.scalar(_where(query, UsageSession.started_at, period)) is not None


def _grouped_in_sql(
    db: Session,
    dims: tuple[Dimension, ...],
    period: Period,
    filters: ReportFilters,
    months: list[tuple[str, datetime]],
    tz: ZoneInfo,
) -> dict[tuple[str, ...], _Acc]:
    """Every figure, distinct participants and newcomers included, in one SQL query over
    the union of sessions and jobs grouped by the dimensions."""
    extra = _extra_dims(dims, filters)
    earlier = aliased(UsageSession)

    def is_new(when: Any, member: Any, first_month: Any) -> ColumnElement[int]:
        """Identified: no visit before the group's month (or the period); pseudonymised:
        the row's month was the person's first (hub.retention)."""
        bound: Any
        if "month" in dims:
            bound = _month_start_case(when, months, tz)
        elif period.start is not None:
            bound = literal(period.start, UsageSession.started_at.type)
        else:
            bound = None
        if bound is None:
            identified_new: ColumnElement[bool] = literal(True)
        else:
            visited_before = (
                select(earlier.id)
                .where(earlier.member_id == member, earlier.started_at < bound)
                .exists()
            )
            identified_new = and_(
                or_(Member.first_visit_at.is_(None), Member.first_visit_at >= bound),
                ~visited_before,
            )
        return case(
            (member.is_not(None), case((identified_new, 1), else_=0)),
            else_=case((first_month, 1), else_=0),
        )

    member_s = UsageSession.member_id
    sessions = (
        select(
            *_dim_columns(extra, UsageSession.started_at, months, job=False),
            _who_session().label("who"),
            is_new(UsageSession.started_at, member_s, UsageSession.first_month).label("new"),
            literal(1).label("n_s"),
            _present().label("used"),
            UsageSession.used_s.label("held"),
            UsageSession.run_s.label("run"),
            literal(0).label("n_j"),
            literal(0.0).label("print_s"),
            literal(0.0).label("fil"),
            literal(0).label("n_u"),
            literal(0.0).label("print_u"),
            literal(0.0).label("fil_est"),
        )
        .select_from(UsageSession)
        .outerjoin(Member, Member.id == member_s)
    )
    sessions = _filter(_where(sessions, UsageSession.started_at, period), filters, job=False)
    member_j = func.coalesce(MachineJob.member_id, UsageSession.member_id)
    jobs = (
        select(
            *_dim_columns(extra, MachineJob.ended_at, months, job=True),
            case(
                (
                    MachineJob.member_id.is_not(None),
                    literal("m") + cast(MachineJob.member_id, String),
                ),
                else_=_who_session(),
            ).label("who"),
            is_new(
                MachineJob.ended_at, member_j, func.coalesce(UsageSession.first_month, False)
            ).label("new"),
            literal(0).label("n_s"),
            literal(0.0).label("used"),
            literal(0.0).label("held"),
            literal(0.0).label("run"),
            literal(1).label("n_j"),
            MachineJob.duration_s.label("print_s"),
            MachineJob.filament_mm.label("fil"),
            _unattributed(literal(1), literal(0)).label("n_u"),
            _unattributed(MachineJob.duration_s, literal(0.0)).label("print_u"),
            _estimated().label("fil_est"),
        )
        .select_from(MachineJob)
        .outerjoin(UsageSession, UsageSession.id == MachineJob.session_id)
        .outerjoin(Machine, Machine.id == MachineJob.machine_id)
        .outerjoin(Member, Member.id == member_j)
    )
    jobs = _filter(_where(jobs, MachineJob.ended_at, period), filters, job=True)
    u = union_all(sessions, jobs).subquery()
    keys = [u.c[d] for d in dims]
    query = select(
        *keys,
        func.sum(u.c.n_s),
        func.sum(u.c.used),
        func.sum(u.c.run),
        func.sum(u.c.n_j),
        func.sum(u.c.print_s),
        func.sum(u.c.fil),
        func.sum(u.c.held),
        func.sum(u.c.n_u),
        func.sum(u.c.print_u),
        func.sum(u.c.fil_est),
        func.count(u.c.who.distinct()),
        func.count(case((u.c.new == 1, u.c.who), else_=None).distinct()),
    )
    if filters.gender is not None:
        query = query.where(u.c.gender == filters.gender)
    if filters.machine_kind is not None:
        query = query.where(func.coalesce(u.c.machine_kind, "") == filters.machine_kind)
    groups: dict[tuple[str, ...], _Acc] = {}
    n = len(dims)
    for row in db.execute(query.group_by(*keys)):
        key = tuple("" if v is None else str(v) for v in row[:n])
        n_s, used, run, n_j, print_s, fil, held, n_u, print_u, fil_est, people, new = row[n:]
        groups[key] = _Acc(
            seconds=float(used or 0.0),
            machine_seconds=float(held or 0.0),
            unattributed_jobs=int(n_u or 0),
            unattributed_print_seconds=float(print_u or 0.0),
            filament_estimated_mm=float(fil_est or 0.0),
            run_seconds=float(run or 0.0),
            sessions=int(n_s or 0),
            jobs=int(n_j or 0),
            print_seconds=float(print_s or 0.0),
            filament_mm=float(fil or 0.0),
            n_people=int(people or 0),
            n_new=int(new or 0),
        )
    return groups


# --------------------------------------------------------------------------- SQL


def _months(db: Session, period: Period, tz: ZoneInfo) -> list[tuple[str, datetime]]:
    """The local months the period spans, with each month's end, oldest first."""
    start, end = period.start, period.end
    if start is None or end is None:
        low = db.scalar(select(func.min(UsageSession.started_at)))
        high = db.scalar(select(func.max(UsageSession.started_at)))
        job_low = db.scalar(select(func.min(MachineJob.ended_at)))
        job_high = db.scalar(select(func.max(MachineJob.ended_at)))
        lows = [d for d in (low, job_low) if d is not None]
        highs = [d for d in (high, job_high) if d is not None]
        if not lows:
            return []
        start = start or min(lows)
        end = end or max(highs)
    months: list[tuple[str, datetime]] = []
    month = month_of(start, tz)
    while True:
        stop = month_end(month, tz)
        months.append((month, stop))
        if stop >= end:
            return months
        month = month_of(stop, tz)


def _month_start_case(
    column: Any, months: list[tuple[str, datetime]], tz: ZoneInfo
) -> ColumnElement[datetime]:
    """The start of the local month of ``column`` (within ``months``)."""
    kind = UsageSession.started_at.type
    whens = []
    for name, stop in months:
        year, number = (int(x) for x in name.split("-"))
        start = datetime(year, number, 1, tzinfo=tz)
        whens.append((column < stop, literal(start, kind)))
    return case(*whens, else_=literal(months[-1][1], kind)) if whens else literal(None, kind)


def _month_case(column: Any, months: list[tuple[str, datetime]]) -> ColumnElement[str]:
    if not months:
        return cast(literal(""), String)
    return case(*[(column < stop, literal(name)) for name, stop in months], else_=literal(""))


def _who_session() -> ColumnElement[str | None]:
    return case(
        (
            UsageSession.member_id.is_not(None),
            literal("m") + cast(UsageSession.member_id, String),
        ),
        else_=case(
            (UsageSession.participant.is_not(None), literal("p") + UsageSession.participant),
            else_=None,
        ),
    )


def _gender(member_gender: Any) -> ColumnElement[str]:
    frozen = func.nullif(UsageSession.gender, "")
    return func.coalesce(frozen, member_gender, literal(Gender.NON_DECLARE.value))


def _dim_columns(dims: tuple[Dimension, ...], when: Any, months: Any, job: bool) -> list[Any]:
    cols: list[Any] = []
    for d in dims:
        if d == "month":
            cols.append(_month_case(when, months).label("month"))
        elif d == "zone":
            cols.append((MachineJob.zone_id if job else UsageSession.zone_id).label("zone"))
        elif d == "machine":
            cols.append(
                (MachineJob.machine_id if job else UsageSession.machine_id).label("machine")
            )
        elif d == "programme":
            cols.append(cast(UsageSession.programmes, Text).label("programme"))
        elif d == "age_group":
            cols.append(
                (MachineJob.age_group if job else UsageSession.age_group).label("age_group")
            )
        elif d == "machine_kind":
            kind = (
                func.coalesce(
                    func.nullif(UsageSession.machine_kind, ""), cast(Machine.kind, String)
                )
                if job
                else UsageSession.machine_kind
            )
            cols.append(kind.label("machine_kind"))
        elif d == "gender":
            cols.append(_gender(Member.gender).label("gender"))
        elif d == "member":
            member = MachineJob.member_id if job else UsageSession.member_id
            cols.append(cast(member, String).label("member"))
    return cols


def _needs_programmes(dims: tuple[Dimension, ...], filters: ReportFilters) -> bool:
    return "programme" in dims or filters.programme is not None


def _session_query(
    dims: tuple[Dimension, ...],
    period: Period,
    filters: ReportFilters,
    months: list[tuple[str, datetime]],
) -> Any:
    extra = _extra_dims(dims, filters)
    cols = _dim_columns(extra, UsageSession.started_at, months, job=False)
    who = _who_session().label("who")
    query = select(
        *cols,
        who,
        func.max(case((UsageSession.first_month, 1), else_=0)).label("first_month"),
        func.count().label("n"),
        func.sum(_present()).label("seconds"),
        func.sum(UsageSession.used_s).label("machine_seconds"),
        func.sum(UsageSession.run_s).label("run_seconds"),
    ).select_from(UsageSession)
    if "gender" in extra:
        query = query.outerjoin(Member, Member.id == UsageSession.member_id)
    query = _where(query, UsageSession.started_at, period)
    query = _filter(query, filters, job=False)
    return query.group_by(*cols, who)


def _job_query(
    dims: tuple[Dimension, ...],
    period: Period,
    filters: ReportFilters,
    months: list[tuple[str, datetime]],
) -> Any:
    extra = _extra_dims(dims, filters)
    cols = _dim_columns(extra, MachineJob.ended_at, months, job=True)
    who = case(
        (MachineJob.member_id.is_not(None), literal("m") + cast(MachineJob.member_id, String)),
        else_=_who_session(),
    ).label("who")
    query = (
        select(
            *cols,
            who,
            func.count().label("n"),
            func.sum(MachineJob.duration_s).label("seconds"),
            func.sum(MachineJob.filament_mm).label("filament_mm"),
            func.sum(_unattributed(literal(1), literal(0))).label("n_u"),
            func.sum(_unattributed(MachineJob.duration_s, literal(0.0))).label("seconds_u"),
            func.sum(_estimated()).label("filament_est"),
        )
        .select_from(MachineJob)
        .outerjoin(UsageSession, UsageSession.id == MachineJob.session_id)
    )
    if "machine_kind" in extra:
        query = query.outerjoin(Machine, Machine.id == MachineJob.machine_id)
    if "gender" in extra:
        query = query.outerjoin(
            Member, Member.id == func.coalesce(MachineJob.member_id, UsageSession.member_id)
        )
    query = _where(query, MachineJob.ended_at, period)
    query = _filter(query, filters, job=True)
    return query.group_by(*cols, who)


def _present() -> ColumnElement[float]:
    """A session's people time: its presence, or its whole length from older edges."""
    return func.coalesce(UsageSession.present_s, UsageSession.used_s)


def _unattributed(value: Any, otherwise: Any) -> ColumnElement[Any]:
    """``value`` for a job nobody badged for (no session), else ``otherwise``."""
    return case((MachineJob.session_id.is_(None), value), else_=otherwise)


def _estimated() -> ColumnElement[float]:
    """A job's filament when it is an estimate from progress, else 0."""
    return case(
        (MachineJob.filament_estimated, func.coalesce(MachineJob.filament_mm, 0.0)), else_=0.0
    )


def _extra_dims(dims: tuple[Dimension, ...], filters: ReportFilters) -> tuple[Dimension, ...]:
    """The dimensions to select: the grouped ones plus those filtered in Python."""
    extra = list(dims)
    if filters.programme is not None and "programme" not in extra:
        extra.append("programme")
    if filters.gender is not None and "gender" not in extra:
        extra.append("gender")
    if filters.machine_kind is not None and "machine_kind" not in extra:
        extra.append("machine_kind")
    return tuple(extra)


def _where(query: Any, column: Any, period: Period) -> Any:
    if period.start is not None:
        query = query.where(column >= period.start)
    if period.end is not None:
        query = query.where(column < period.end)
    return query


def _filter(query: Any, filters: ReportFilters, *, job: bool) -> Any:
    src: Any = MachineJob if job else UsageSession
    if filters.zone_id is not None:
        query = query.where(src.zone_id == filters.zone_id)
    if filters.machine_id is not None:
        query = query.where(src.machine_id == filters.machine_id)
    if filters.age_group is not None:
        query = query.where(src.age_group == filters.age_group)
    return query


# --------------------------------------------------------------------------- fold


_programme_cache: dict[str, list[str]] = {}


def _programmes(text: str | None) -> list[str]:
    if not text:
        return [""]
    known = _programme_cache.get(text)
    if known is None:
        try:
            value = json.loads(text)
        except ValueError:
            value = []
        known = sorted({str(p) for p in value}) if isinstance(value, list) else []
        if len(_programme_cache) < 10_000:
            _programme_cache[text] = known or [""]
        known = known or [""]
    return known


def _keys(
    dims: tuple[Dimension, ...], row: Any, filters: ReportFilters
) -> Iterable[tuple[str, ...]]:
    """The group keys a pre-aggregated row counts for (one per programme if grouped so)."""
    mapping = row._mapping
    programmes = _programmes(mapping["programme"]) if _needs_programmes(dims, filters) else [""]
    if filters.programme is not None:
        if filters.programme not in programmes:
            return []
        programmes = [filters.programme]
    if filters.gender is not None and mapping["gender"] != filters.gender:
        return []
    if filters.machine_kind is not None and (mapping["machine_kind"] or "") != filters.machine_kind:
        return []
    fixed: dict[str, str] = {
        d: "" if mapping[d] is None else str(mapping[d]) for d in dims if d != "programme"
    }
    if "programme" not in dims:
        return [tuple(fixed[d] for d in dims)]
    return [tuple(p if d == "programme" else fixed[d] for d in dims) for p in programmes]


@dataclass(frozen=True)
class _Newcomers:
    """Who is new: a participant whose first visit ever falls in the group's month when
    grouping by month, else in the report's period."""

    tz: ZoneInfo
    start: datetime | None
    #: Identified participants' first visit.
    firsts: dict[str, datetime]
    #: Month pseudonyms whose month was the person's first month of visits.
    first_months: set[str]

    def is_new(self, who: str, month: str | None) -> bool:
        if who.startswith("p"):
            return who in self.first_months
        first = self.firsts.get(who)
        if first is None:
            return True
        if month is not None:
            return month_of(first, self.tz) == month
        return self.start is None or first >= self.start


def _newcomers(
    db: Session,
    groups: dict[tuple[str, ...], _Acc],
    period: Period,
    pseudo: dict[str, bool],
    tz: ZoneInfo,
) -> _Newcomers:
    members = {int(p[1:]) for acc in groups.values() for p in acc.people if p.startswith("m")}
    firsts = {f"m{k}": v for k, v in first_visits(db, members).items()}
    return _Newcomers(tz, period.start, firsts, {who for who, first in pseudo.items() if first})


def _labels(
    db: Session, dims: tuple[Dimension, ...], identifying: bool, tz: ZoneInfo
) -> dict[str, dict[str, str]]:
    labels: dict[str, dict[str, str]] = {d: {} for d in dims}
    for d in dims:
        if d == "machine":
            labels[d] = {k: v for k, v in db.execute(select(Machine.id, Machine.name))}
        elif d == "programme":
            labels[d] = {k: v for k, v in db.execute(select(Programme.id, Programme.name))}
        elif d == "zone":
            labels[d] = {k: v for k, v in db.execute(select(Zone.id, Zone.name))}
        elif d == "gender":
            labels[d] = dict(GENDER_LABELS)
        elif d == "member" and identifying:
            labels[d] = {str(k): v for k, v in db.execute(select(Member.id, Member.display_name))}
        elif d == "month":
            labels[d] = _MonthLabels()
    return labels


class _MonthLabels(dict[str, str]):
    """``2025-03`` -> ``mars 2025``."""

    def get(self, key: str, default: Any = None) -> Any:
        try:
            year, month = key.split("-")
            return f"{MONTHS_FR[int(month) - 1]} {year}"
        except (ValueError, IndexError):
            return default


# --------------------------------------------------------------------------- CSV

#: Dimension column headers (French, no accents: spreadsheets guess header encodings badly).
_DIM_HEADERS = {
    "month": "mois",
    "zone": "espace",
    "machine": "machine",
    "programme": "programme",
    "age_group": "tranche_age",
    "machine_kind": "type_machine",
    "gender": "genre",
    "member": "membre",
}
_FIGURES = [
    "participants",
    "nouveaux_participants",
    "sessions",
    "heures",
    "duree_moyenne_min",
    "heures_fonctionnement",
    "impressions",
    "heures_impression",
    "filament_m",
    "filament_g",
    "heures_machine_tenue",
    "impressions_sans_session",
    "heures_impression_sans_session",
    "filament_estime_m",
]


def _decimal(value: float | None, digits: int = 2) -> str:
    """A number with a decimal comma, as French spreadsheets read it ("" when withheld)."""
    return "" if value is None else f"{value:.{digits}f}".replace(".", ",")


def _count(value: int | str | None) -> str:
    return "" if value is None else str(value)


def _cell(value: str) -> str:
    """Neutralise spreadsheet formulas in free text (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def report_csv(report: Report) -> str:
    """The report as semicolon-separated CSV with decimal commas, one row per group; the
    site and period on every row so several sites' files can be concatenated."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    dims = report.group_by
    header = ["site", "du", "au"]
    for d in dims:
        header += [_DIM_HEADERS[d], f"{_DIM_HEADERS[d]}_libelle"]
    writer.writerow(header + _FIGURES)
    span = [_local_day(report.period.start, report.tz), _local_day(report.period.end, report.tz)]
    for row in report.rows:
        cells = [report.site, *span]
        for key, label in zip(row.keys, row.labels, strict=True):
            cells += [_cell(key), _cell(label)]
        writer.writerow(
            [
                *cells,
                _count(row.participants),
                _count(row.new_participants),
                _count(row.sessions),
                _decimal(row.hours),
                _decimal(row.average_session_min, 1),
                _decimal(row.run_hours),
                _count(row.jobs),
                _decimal(row.print_hours),
                _decimal(row.filament_m),
                _decimal(row.filament_g, 1),
                _decimal(row.machine_hours),
                _count(row.unattributed_jobs),
                _decimal(row.unattributed_print_hours),
                _decimal(row.filament_estimated_m),
            ]
        )
    return out.getvalue()


def _local_day(when: datetime | None, tz: ZoneInfo) -> str:
    return "" if when is None else when.astimezone(tz).strftime("%Y-%m-%d")


def csv_filename(report: Report) -> str:
    span = "-".join(
        d.astimezone(report.tz).strftime("%Y%m%d")
        for d in (report.period.start, report.period.end)
        if d
    )
    return f"fabrique-usage-{'-'.join(report.group_by)}{'-' + span if span else ''}.csv"


# --------------------------------------------------------------------------- metering totals


@overload
def usage_seconds(
    session: Session, *, since: datetime, until: datetime, by: Literal["member"]
) -> dict[int, float]: ...


@overload
def usage_seconds(
    session: Session, *, since: datetime, until: datetime, by: Literal["machine"]
) -> dict[str, float]: ...


def usage_seconds(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    by: Literal["member", "machine"],
) -> dict[int, float] | dict[str, float]:
    """Seconds used per member or per machine, for sessions started in ``[since, until)``.

    ``used_s`` is the edge's monotonic measure (max of the minute ticks and the final
    duration), so totals are exact whatever the duplicates and replays. Sessions of
    unknown or erased members are left out of the per-member totals.
    """
    window = (UsageSession.started_at >= since, UsageSession.started_at < until)
    if by == "member":
        member_rows = session.execute(
            select(UsageSession.member_id, func.sum(UsageSession.used_s))
            .where(*window, UsageSession.member_id.is_not(None))
            .group_by(UsageSession.member_id)
        ).all()
        return {int(key): float(total or 0.0) for key, total in member_rows if key is not None}
    machine_rows = session.execute(
        select(UsageSession.machine_id, func.sum(UsageSession.used_s))
        .where(*window)
        .group_by(UsageSession.machine_id)
    ).all()
    return {str(key): float(total or 0.0) for key, total in machine_rows}
