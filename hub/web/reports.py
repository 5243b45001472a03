"""The report page (``/rapports``): usage totals for funders, a CSV link and a chart.

Coordinators, fabmanagers and admins open it (:attr:`Capability.REPORTS_READ`). The
totals are the API's own (:func:`totals`, the one adapter to re-point when the report
code moves out of :mod:`hub.api.routes.sessions`): hours, sessions, distinct
participants, machine run time, print jobs and filament, by programme, age group,
machine kind or month; for coordinators, groups of fewer than five people are not
shown, only counted ("< 5"), and no name appears anywhere.

The chart (hours per week by age group) is an inline SVG drawn on the server: no
JavaScript library. Its cells follow the same small-group rule: a week and age group
with fewer than five distinct people is left out for coordinators and marked "< 5" in
the table under the chart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.api.auth import IDENTIFYING_ROLES, Capability, Principal
from hub.api.common import local_today
from hub.api.deps import PolicyDep, SessionDep, SettingsDep
from hub.api.routes import sessions as report_routes
from hub.api.schemas import UsageDimension, UsageTotals
from hub.db.models import UsageSession
from hub.policy.calendar import MONTHS_FR
from hub.policy.model import PolicyConfig
from hub.reports import MIN_GROUP_SIZE, ReportFilters
from hub.settings import HubSettings
from hub.web.core import PageUser, page, render

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

#: Dimensions offered on the page (per member is for the API, never shown here).
DIMENSIONS: dict[str, str] = {
    "programme": "Programme",
    "age_group": "Tranche d'âge",
    "machine_kind": "Type de machine",
    "month": "Mois",
    "machine": "Machine",
}
KIND_NAMES = {
    "printer": "Imprimante 3D",
    "laser": "Découpe laser",
    "gaming_pc": "PC de jeu",
    "generic": "Autre machine",
}
#: Default period: the last twelve weeks.
DEFAULT_WEEKS = 12
CHART_COLOURS = ("#0b5cad", "#1d7a3a", "#8a5a00", "#6b3fa0", "#b3261e", "#4a5360")


# --------------------------------------------------------------------------- adapter


def min_group_size(principal: Principal) -> int | None:
    """The smallest group ``principal`` may see (None: no limit)."""
    return MIN_GROUP_SIZE if principal.role not in IDENTIFYING_ROLES else None


def totals(
    db: Session,
    principal: Principal,
    cfg: PolicyConfig,
    settings: HubSettings,
    by: UsageDimension,
    since: datetime | None,
    until: datetime | None,
) -> UsageTotals:
    """The API's usage totals (small groups withheld for coordinators)."""
    return report_routes.usage_totals(
        db, principal, cfg, settings, ReportFilters(), [by], since, until
    )


@dataclass(frozen=True, slots=True)
class WeekCell:
    week: date
    group: str
    hours: float
    participants: int
    hidden: bool


def weekly_hours(
    db: Session,
    principal: Principal,
    cfg: PolicyConfig,
    since: datetime,
    until: datetime,
) -> list[WeekCell]:
    """People's hours (presence) per (local) week and age group of the sessions started
    in the period."""
    cells: dict[tuple[date, str], tuple[float, set[int]]] = {}
    rows = db.execute(
        select(
            UsageSession.started_at,
            UsageSession.age_group,
            # People's hours: the member's presence, not the wait after they left.
            func.coalesce(UsageSession.present_s, UsageSession.used_s),
            UsageSession.member_id,
        )
        .where(UsageSession.started_at >= since, UsageSession.started_at < until)
        .execution_options(yield_per=1000)
    )
    for started, group, used_s, member_id in rows:
        day = started.replace(tzinfo=started.tzinfo or UTC).astimezone(cfg.tz).date()
        week = day - timedelta(days=day.weekday())
        seconds, people = cells.setdefault((week, group or "?"), (0.0, set()))
        if member_id is not None:
            people.add(member_id)
        cells[(week, group or "?")] = (seconds + (used_s or 0.0), people)
    limit = min_group_size(principal)
    return [
        WeekCell(
            week=week,
            group=group,
            hours=round(seconds / 3600, 2),
            participants=len(people),
            hidden=limit is not None and len(people) < limit,
        )
        for (week, group), (seconds, people) in sorted(cells.items())
    ]


# --------------------------------------------------------------------------- chart


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    colour: str
    title: str


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Bar]
    weeks: list[tuple[float, str]]
    ticks: list[tuple[float, str]]
    legend: list[tuple[str, str]]
    table: list[tuple[str, list[str]]]
    groups: list[str]
    empty: bool


def _fr(value: float) -> str:
    return f"{value:.1f}".replace(".", ",").removesuffix(",0")


def week_chart(cells: list[WeekCell], first_week: date, weeks: int, bands: list[str]) -> Chart:
    """Stacked bars: one per week, one colour per age group (hidden cells left out)."""
    left, top, bottom, plot_h, bar_w, gap = 48, 12, 34, 200, 28, 14
    groups = [b for b in bands if any(c.group == b for c in cells)]
    groups += sorted({c.group for c in cells} - set(groups))
    colours = {g: CHART_COLOURS[i % len(CHART_COLOURS)] for i, g in enumerate(groups)}
    week_list = [first_week + timedelta(weeks=i) for i in range(weeks)]
    by_key = {(c.week, c.group): c for c in cells}
    totals = [
        sum(c.hours for g in groups if (c := by_key.get((w, g))) and not c.hidden)
        for w in week_list
    ]
    top_value = max(totals, default=0.0)
    step = next((s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if top_value / s <= 5), 2000)
    scale_max = max(step * max(1, -(-top_value // step)), step)
    bars, labels = [], []
    for i, week in enumerate(week_list):
        x = left + gap + i * (bar_w + gap)
        y: float = top + plot_h
        for group in groups:
            cell = by_key.get((week, group))
            if cell is None or cell.hidden or cell.hours <= 0:
                continue
            h = cell.hours / scale_max * plot_h
            y -= h
            bars.append(
                Bar(
                    x,
                    y,
                    bar_w,
                    h,
                    colours[group],
                    f"Semaine du {week.day}/{week.month} : {group} ans, {_fr(cell.hours)} h",
                )
            )
        labels.append((x + bar_w / 2, f"{week.day}/{week.month}"))
    ticks = [
        (top + plot_h - v / scale_max * plot_h, _fr(v))
        for v in [step * k for k in range(int(scale_max // step) + 1)]
    ]
    table = []
    for week in week_list:
        row = []
        for group in groups:
            cell = by_key.get((week, group))
            if cell is None:
                row.append("0")
            elif cell.hidden:
                row.append("< 5 pers.")
            else:
                row.append(_fr(cell.hours))
        table.append((f"{week.day:02d}/{week.month:02d}/{week.year}", row))
    return Chart(
        width=left + gap + weeks * (bar_w + gap),
        height=top + plot_h + bottom,
        bars=bars,
        weeks=labels,
        ticks=ticks,
        legend=[
            (g, colours[g]) for g in groups if any(c.group == g and not c.hidden for c in cells)
        ],
        table=table,
        groups=groups,
        empty=not bars,
    )


# --------------------------------------------------------------------------- page


def _parse_day(value: str) -> date | None:
    try:
        return date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


def _label(by: str, key: str, label: str) -> str:
    if by == "machine_kind":
        return KIND_NAMES.get(key, label)
    if by == "month" and len(key) == 7:
        year, month = key.split("-")
        return f"{MONTHS_FR[int(month) - 1]} {year}"
    if by == "age_group" and key:
        return f"{key} ans"
    return label


@router.get("/rapports", dependencies=[page(Capability.REPORTS_READ)])
def report_page(
    request: Request,
    db: SessionDep,
    cfg: PolicyDep,
    settings: SettingsDep,
    user: PageUser,
    par: str = "programme",
    du: str = "",
    au: str = "",
) -> Response:
    by = par if par in DIMENSIONS and par in get_args(UsageDimension) else "programme"
    today = local_today(cfg.tz)
    errors: dict[str, str] = {}
    first = _parse_day(du)
    last = _parse_day(au)
    if du and first is None:
        errors["du"] = "Date invalide (AAAA-MM-JJ)."
    if au and last is None:
        errors["au"] = "Date invalide (AAAA-MM-JJ)."
    this_monday = today - timedelta(days=today.weekday())
    first = first or this_monday - timedelta(weeks=DEFAULT_WEEKS - 1)
    last = last or today
    if last < first:
        errors["au"] = "La fin doit suivre le début."
        last = first
    since = datetime.combine(first, time(0), tzinfo=cfg.tz).astimezone(UTC)
    until = datetime.combine(last + timedelta(days=1), time(0), tzinfo=cfg.tz).astimezone(UTC)
    report = totals(db, user, cfg, settings, by, since, until)  # type: ignore[arg-type]
    rows = [{"label": _label(by, r.key, r.label), "row": r} for r in report.rows if not r.masked]
    first_week = first - timedelta(days=first.weekday())
    weeks = min(max(1, (last - first_week).days // 7 + 1), 26)
    chart_first = first_week if weeks < 26 else last - timedelta(days=last.weekday(), weeks=25)
    chart = week_chart(
        weekly_hours(db, user, cfg, since, until),
        chart_first,
        weeks,
        [b.name for b in cfg.age_bands],
    )
    query: dict[str, Any] = {"by": by, "since": since.isoformat(), "until": until.isoformat()}
    return render(
        request,
        "rapports.html",
        {
            "by": by,
            "dimensions": DIMENSIONS,
            "rows": rows,
            "hidden": report.hidden_groups,
            "min_size": report.min_group_size,
            "chart": chart,
            "du": first.isoformat(),
            "au": last.isoformat(),
            "du_fr": first.strftime("%d/%m/%Y"),
            "au_fr": last.strftime("%d/%m/%Y"),
            "errors": errors,
            "csv_url": "/api/usage/report.csv?" + urlencode(query),
        },
        user=user,
    )
