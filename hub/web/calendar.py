"""The slot calendar pages (``/creneaux``): weekly slots, dated exceptions, quotas.

Staff and coordinators read it (:attr:`Capability.REFERENCE_READ`); admins change it
(:attr:`Capability.REFERENCE_WRITE`), through the API's route functions
(:mod:`hub.api.routes.calendar`) so the rules (audiences from the configured age bands,
known programmes, a slot has a duration, closures' hours, break rules) live in one
place. A wrong form is shown again with what was typed and the French message next
to the field.

The week of each zone is drawn as a server-rendered SVG grid (one column per day, one
block per slot, at its hours; a block links to the slot's edit form), followed by the
same slots as a table for screen readers and keyboards. SVG attributes position the
blocks, so the page needs no inline style (the CSP forbids them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.api.auth import Capability
from hub.api.common import local_today
from hub.api.deps import ControlDep, PolicyDep, SessionDep
from hub.api.routes import calendar as api_calendar
from hub.api.schemas import (
    ExceptionCreate,
    QuotaCreate,
    QuotaUpdate,
    SlotCreate,
    SlotUpdate,
)
from hub.api.writes import ReferenceWrite
from hub.db.models import ExceptionKind, Programme, Quota, Slot, SlotException, Zone
from hub.policy.calendar import WEEKDAYS_FR
from hub.policy.model import PolicyConfig
from hub.web.core import CsrfChecked, PageNotFound, PageUser, page, render
from hub.web.forms import Errors, checked, save

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

RESULTS = {
    "creneau-ajoute": "Créneau ajouté.",
    "creneau-modifie": "Créneau modifié.",
    "creneau-supprime": "Créneau supprimé.",
    "exception-ajoutee": "Exception ajoutée.",
    "exception-supprimee": "Exception supprimée.",
    "quota-enregistre": "Quota enregistré.",
    "quota-supprime": "Quota supprimé.",
}

# Geometry of the week grid (SVG user units).
GRID_LEFT = 44
GRID_TOP = 30
DAY_W = 130
#: Height of an hour: taller when the grid spans few hours.
HOUR_H = 34
HOUR_H_LONG_DAY = 20

FormStr = Annotated[str, Form(max_length=200)]
FormList = Annotated[list[str], Form(max_length=50)]


def hhmm(value: time | None) -> str:
    """``14h00``; midnight as an end is ``24h00`` in the grid, ``0h00`` elsewhere."""
    return "" if value is None else f"{value.hour}h{value.minute:02d}"


def _minutes(value: time) -> int:
    return value.hour * 60 + value.minute


# --------------------------------------------------------------------------- the week grid


@dataclass(frozen=True, slots=True)
class Block:
    """One slot drawn in the grid (possibly the part of it before midnight)."""

    slot: Slot
    x: float
    y: float
    w: float
    h: float
    label: str
    hours: str
    audience: str


@dataclass
class WeekGrid:
    zone: Zone
    first_hour: int
    last_hour: int
    blocks: list[Block]
    days: list[tuple[str, date, str]]  # weekday name, date, exception note
    slots: list[Slot]
    hour_h: int = HOUR_H

    @property
    def width(self) -> int:
        return GRID_LEFT + 7 * DAY_W + 2

    @property
    def height(self) -> int:
        return GRID_TOP + (self.last_hour - self.first_hour) * self.hour_h + 10

    @property
    def hours(self) -> list[tuple[int, float]]:
        return [
            (h, GRID_TOP + (h - self.first_hour) * self.hour_h)
            for h in range(self.first_hour, self.last_hour + 1)
        ]

    @property
    def columns(self) -> list[tuple[int, float]]:
        return [(d, GRID_LEFT + d * DAY_W) for d in range(7)]


def audience_text(age_groups: list[str], programmes: list[str]) -> str:
    parts = []
    if age_groups:
        parts.append(", ".join(age_groups) + " ans")
    if programmes:
        parts.append(", ".join(programmes))
    return " · ".join(parts) or "tout public"


def _span(slot: Slot) -> tuple[int, int]:
    """Start and end minute within the slot's day (an end past midnight is cut at 24h)."""
    start, end = _minutes(slot.start), _minutes(slot.end)
    if end <= start:
        end = 24 * 60
    return start, end


def week_grid(
    zone: Zone, slots: list[Slot], exceptions: list[SlotException], monday: date
) -> WeekGrid:
    spans = [_span(s) for s in slots]
    first = min([s // 60 for s, _ in spans], default=9)
    last = max([-(-e // 60) for _, e in spans], default=19)
    first, last = min(first, 9), max(last, min(first + 10, 24))
    hour_h = HOUR_H if last - first <= 14 else HOUR_H_LONG_DAY
    blocks = []
    for slot, (start, end) in zip(slots, spans, strict=True):
        y = GRID_TOP + (start - first * 60) * hour_h / 60
        blocks.append(
            Block(
                slot=slot,
                x=GRID_LEFT + slot.weekday * DAY_W + 3,
                y=y + 1,
                w=DAY_W - 6,
                h=max((end - start) * hour_h / 60 - 2, 12),
                label=slot.label or "Créneau",
                hours=f"{hhmm(slot.start)}–{hhmm(slot.end) if end < 24 * 60 else '24h00'}",
                audience=audience_text(slot.age_groups, slot.programmes),
            )
        )
    days = []
    for d in range(7):
        day = monday + timedelta(days=d)
        notes = [
            ("Fermé" if e.kind is ExceptionKind.CLOSURE else "Ouverture")
            + (f" {hhmm(e.start)}–{hhmm(e.end)}" if e.start else "")
            for e in exceptions
            if e.day == day and e.zone_id in (None, zone.id)
        ]
        days.append((WEEKDAYS_FR[d], day, " · ".join(notes)))
    return WeekGrid(zone, first, last, blocks, days, slots, hour_h)


# --------------------------------------------------------------------------- forms


@dataclass
class SlotForm:
    zone_id: str = ""
    weekday: str = "2"
    start: str = "14:00"
    end: str = "18:00"
    label: str = ""
    age_groups: tuple[str, ...] = ()
    programmes: tuple[str, ...] = ()
    animator_required: bool = False

    @classmethod
    def of(cls, slot: Slot) -> SlotForm:
        return cls(
            zone_id=slot.zone_id,
            weekday=str(slot.weekday),
            start=slot.start.strftime("%H:%M"),
            end=slot.end.strftime("%H:%M"),
            label=slot.label,
            age_groups=tuple(slot.age_groups),
            programmes=tuple(slot.programmes),
            animator_required=slot.animator_required,
        )

    def body(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "zone_id": self.zone_id,
            "weekday": self.weekday,
            "start": self.start,
            "end": self.end,
            "label": self.label,
            "age_groups": list(self.age_groups),
            "programmes": list(self.programmes),
            "animator_required": self.animator_required,
        }
        return {k: v for k, v in values.items() if v != ""} | {"label": self.label}


@dataclass
class ExceptionForm:
    zone_id: str = ""
    day: str = ""
    kind: str = ExceptionKind.CLOSURE.value
    start: str = ""
    end: str = ""
    label: str = ""

    def body(self) -> dict[str, Any]:
        return {
            "zone_id": self.zone_id or None,
            "day": self.day or None,
            "kind": self.kind,
            "start": self.start or None,
            "end": self.end or None,
            "label": self.label,
        }


@dataclass
class QuotaForm:
    zone_id: str = ""
    age_group: str = ""
    daily_min: str = ""
    weekly_min: str = ""
    break_after_min: str = ""
    break_min: str = ""

    @classmethod
    def of(cls, quota: Quota) -> QuotaForm:
        def s(v: int | None) -> str:
            return "" if v is None else str(v)

        return cls(
            quota.zone_id,
            quota.age_group,
            s(quota.daily_min),
            s(quota.weekly_min),
            s(quota.break_after_min),
            s(quota.break_min),
        )

    def limits(self) -> dict[str, Any]:
        return {
            "daily_min": self.daily_min or None,
            "weekly_min": self.weekly_min or None,
            "break_after_min": self.break_after_min or None,
            "break_min": self.break_min or None,
        }


@dataclass
class Forms:
    """The page's forms (typed values) and their errors, one set per form."""

    slot: SlotForm = field(default_factory=SlotForm)
    slot_errors: Errors = field(default_factory=dict)
    exception: ExceptionForm = field(default_factory=ExceptionForm)
    exception_errors: Errors = field(default_factory=dict)
    quota: QuotaForm = field(default_factory=QuotaForm)
    quota_errors: Errors = field(default_factory=dict)
    #: id of the quota whose edit form failed, and its errors.
    quota_edit_id: int | None = None
    quota_edit: QuotaForm | None = None
    quota_edit_errors: Errors = field(default_factory=dict)


def _choices(db: Session, cfg: PolicyConfig) -> dict[str, Any]:
    return {
        "zones": list(db.execute(select(Zone.id, Zone.name).order_by(Zone.name))),
        "programmes": list(db.execute(select(Programme.id, Programme.name).order_by(Programme.id))),
        "bands": [band.name for band in cfg.age_bands],
        "days": list(enumerate(WEEKDAYS_FR)),
        "kinds": [
            (ExceptionKind.CLOSURE.value, "Fermeture"),
            (ExceptionKind.OPENING.value, "Ouverture exceptionnelle"),
        ],
    }


def _calendar_page(
    request: Request,
    db: Session,
    cfg: PolicyConfig,
    user: Any,
    forms: Forms,
    *,
    flash: str | None = None,
    status_code: int = 200,
    monday: date | None = None,
) -> Response:
    today = local_today(cfg.tz)
    monday = monday or today - timedelta(days=today.weekday())
    zones = list(db.scalars(select(Zone).order_by(Zone.name)))
    slots = list(db.scalars(select(Slot).order_by(Slot.weekday, Slot.start, Slot.id)))
    exceptions = list(
        db.scalars(
            select(SlotException)
            .where(SlotException.day >= today - timedelta(days=today.weekday()))
            .order_by(SlotException.day, SlotException.id)
        )
    )
    grids = [
        week_grid(z, [s for s in slots if s.zone_id == z.id], exceptions, monday) for z in zones
    ]
    quotas = list(db.scalars(select(Quota).order_by(Quota.zone_id, Quota.age_group)))
    if not forms.slot.zone_id and zones:
        forms.slot.zone_id = zones[0].id
    if not forms.quota.zone_id and zones:
        forms.quota.zone_id = zones[0].id
    zone_names = {z.id: z.name for z in zones}
    return render(
        request,
        "creneaux.html",
        {
            "grids": grids,
            "exceptions": exceptions,
            "quotas": quotas,
            "zone_names": zone_names,
            "forms": forms,
            "flash": flash,
            "monday": monday,
            "prev_week": (monday - timedelta(days=7)).isoformat(),
            "next_week": (monday + timedelta(days=7)).isoformat(),
            "hhmm": hhmm,
            "audience_text": audience_text,
            "quota_form": QuotaForm.of,
            **_choices(db, cfg),
        },
        user=user,
        status_code=status_code,
    )


def _redirect(target: str) -> RedirectResponse:
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


# --------------------------------------------------------------------------- pages


@router.get("/creneaux", dependencies=[page(Capability.REFERENCE_READ)])
def calendar_page(
    request: Request,
    db: SessionDep,
    cfg: PolicyDep,
    user: PageUser,
    resultat: str = "",
    semaine: str = "",
) -> Response:
    monday = None
    try:
        if semaine:
            chosen = date.fromisoformat(semaine[:10])
            monday = chosen - timedelta(days=chosen.weekday())
    except ValueError:
        monday = None
    return _calendar_page(
        request, db, cfg, user, Forms(), flash=RESULTS.get(resultat), monday=monday
    )


def _read_slot(
    zone_id: str,
    weekday: str,
    start: str,
    end: str,
    label: str,
    age_groups: list[str],
    programmes: list[str],
    animator_required: str,
) -> SlotForm:
    return SlotForm(
        zone_id=zone_id.strip(),
        weekday=weekday.strip(),
        start=start.strip(),
        end=end.strip(),
        label=label.strip(),
        age_groups=tuple(checked(age_groups)),
        programmes=tuple(checked(programmes)),
        animator_required=bool(animator_required),
    )


@router.post("/creneaux/creneaux", dependencies=[page(Capability.REFERENCE_WRITE), CsrfChecked])
def slot_create(
    request: Request,
    db: SessionDep,
    control: ControlDep,
    cfg: PolicyDep,
    user: PageUser,
    zone_id: FormStr = "",
    weekday: FormStr = "",
    start: FormStr = "",
    end: FormStr = "",
    label: FormStr = "",
    age_groups: FormList = [],  # noqa: B006 - FastAPI copies defaults
    programmes: FormList = [],  # noqa: B006
    animator_required: FormStr = "",
) -> Response:
    form = _read_slot(
        zone_id, weekday, start, end, label, age_groups, programmes, animator_required
    )
    write = ReferenceWrite(db, control)
    errors = save(
        SlotCreate, form.body(), lambda b: api_calendar.create_slot(b, write, cfg), whole="end"
    )
    if not errors:
        return _redirect("/creneaux?resultat=creneau-ajoute")
    db.rollback()
    return _calendar_page(
        request,
        db,
        cfg,
        user,
        Forms(slot=form, slot_errors=errors),
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def _slot(db: Session, slot_id: int) -> Slot:
    slot = db.get(Slot, slot_id)
    if slot is None:
        raise PageNotFound("Créneau")
    return slot


def _slot_page(
    request: Request,
    db: Session,
    cfg: PolicyConfig,
    user: Any,
    slot: Slot,
    form: SlotForm,
    errors: Errors,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "creneau.html",
        {"slot": slot, "form": form, "errors": errors, "hhmm": hhmm, **_choices(db, cfg)},
        user=user,
        status_code=status_code,
    )


@router.get("/creneaux/creneaux/{slot_id}", dependencies=[page(Capability.REFERENCE_WRITE)])
def slot_edit(
    slot_id: int, request: Request, db: SessionDep, cfg: PolicyDep, user: PageUser
) -> Response:
    slot = _slot(db, slot_id)
    return _slot_page(request, db, cfg, user, slot, SlotForm.of(slot), {})


@router.post(
    "/creneaux/creneaux/{slot_id}", dependencies=[page(Capability.REFERENCE_WRITE), CsrfChecked]
)
def slot_update(
    slot_id: int,
    request: Request,
    db: SessionDep,
    control: ControlDep,
    cfg: PolicyDep,
    user: PageUser,
    zone_id: FormStr = "",
    weekday: FormStr = "",
    start: FormStr = "",
    end: FormStr = "",
    label: FormStr = "",
    age_groups: FormList = [],  # noqa: B006 - FastAPI copies defaults
    programmes: FormList = [],  # noqa: B006
    animator_required: FormStr = "",
) -> Response:
    """Edit or move a slot (another day, other hours, another zone)."""
    slot = _slot(db, slot_id)
    form = _read_slot(
        zone_id, weekday, start, end, label, age_groups, programmes, animator_required
    )
    # Validate as a whole slot (every field is on the form), then apply as a patch.
    write = ReferenceWrite(db, control)

    def apply(full: SlotCreate) -> None:
        patch = SlotUpdate.model_validate(full.model_dump())
        api_calendar.update_slot(slot_id, patch, write, cfg)

    errors = save(SlotCreate, form.body(), apply, whole="end")
    if not errors:
        return _redirect("/creneaux?resultat=creneau-modifie")
    db.rollback()
    slot = _slot(db, slot_id)
    return _slot_page(
        request, db, cfg, user, slot, form, errors, status.HTTP_422_UNPROCESSABLE_CONTENT
    )


@router.post(
    "/creneaux/creneaux/{slot_id}/supprimer",
    dependencies=[page(Capability.REFERENCE_WRITE), CsrfChecked],
)
def slot_delete(slot_id: int, db: SessionDep, control: ControlDep) -> Response:
    _slot(db, slot_id)
    api_calendar.delete_slot(slot_id, ReferenceWrite(db, control))
    return _redirect("/creneaux?resultat=creneau-supprime")


# --------------------------------------------------------------------------- exceptions


@router.post("/creneaux/exceptions", dependencies=[page(Capability.REFERENCE_WRITE), CsrfChecked])
def exception_create(
    request: Request,
    db: SessionDep,
    control: ControlDep,
    cfg: PolicyDep,
    user: PageUser,
    zone_id: FormStr = "",
    day: FormStr = "",
    kind: FormStr = "closure",
    start: FormStr = "",
    end: FormStr = "",
    label: FormStr = "",
) -> Response:
    form = ExceptionForm(
        zone_id.strip(), day.strip(), kind.strip(), start.strip(), end.strip(), label.strip()
    )
    write = ReferenceWrite(db, control)
    errors = save(
        ExceptionCreate,
        form.body(),
        lambda b: api_calendar.create_exception(b, write, cfg),
        whole="start",
    )
    if not errors:
        return _redirect("/creneaux?resultat=exception-ajoutee#exceptions")
    db.rollback()
    return _calendar_page(
        request,
        db,
        cfg,
        user,
        Forms(exception=form, exception_errors=errors),
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


@router.post(
    "/creneaux/exceptions/{exception_id}/supprimer",
    dependencies=[page(Capability.REFERENCE_WRITE), CsrfChecked],
)
def exception_delete(exception_id: int, db: SessionDep, control: ControlDep) -> Response:
    if db.get(SlotException, exception_id) is not None:
        api_calendar.delete_exception(exception_id, ReferenceWrite(db, control))
    return _redirect("/creneaux?resultat=exception-supprimee#exceptions")


# --------------------------------------------------------------------------- quotas


@router.post("/creneaux/quotas", dependencies=[page(Capability.REFERENCE_WRITE), CsrfChecked])
def quota_create(
    request: Request,
    db: SessionDep,
    control: ControlDep,
    cfg: PolicyDep,
    user: PageUser,
    zone_id: FormStr = "",
    age_group: FormStr = "",
    daily_min: FormStr = "",
    weekly_min: FormStr = "",
    break_after_min: FormStr = "",
    break_min: FormStr = "",
) -> Response:
    form = QuotaForm(
        zone_id.strip(),
        age_group.strip(),
        daily_min.strip(),
        weekly_min.strip(),
        break_after_min.strip(),
        break_min.strip(),
    )
    data = {"zone_id": form.zone_id, "age_group": form.age_group, **form.limits()}
    write = ReferenceWrite(db, control)
    errors = save(
        QuotaCreate,
        data,
        lambda b: api_calendar.create_quota(b, write, cfg),
        whole="break_min",
        refused_whole="age_group",
    )
    if not errors:
        return _redirect("/creneaux?resultat=quota-enregistre#quotas")
    db.rollback()
    return _calendar_page(
        request,
        db,
        cfg,
        user,
        Forms(quota=form, quota_errors=errors),
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


@router.post(
    "/creneaux/quotas/{quota_id}", dependencies=[page(Capability.REFERENCE_WRITE), CsrfChecked]
)
def quota_update(
    quota_id: int,
    request: Request,
    db: SessionDep,
    control: ControlDep,
    cfg: PolicyDep,
    user: PageUser,
    daily_min: FormStr = "",
    weekly_min: FormStr = "",
    break_after_min: FormStr = "",
    break_min: FormStr = "",
) -> Response:
    quota = db.get(Quota, quota_id)
    if quota is None:
        raise PageNotFound("Quota", user)
    form = QuotaForm(
        quota.zone_id,
        quota.age_group,
        daily_min.strip(),
        weekly_min.strip(),
        break_after_min.strip(),
        break_min.strip(),
    )
    write = ReferenceWrite(db, control)
    errors = save(
        QuotaUpdate,
        form.limits(),
        lambda b: api_calendar.update_quota(quota_id, b, write),
        whole="break_min",
    )
    if not errors:
        return _redirect("/creneaux?resultat=quota-enregistre#quotas")
    db.rollback()
    return _calendar_page(
        request,
        db,
        cfg,
        user,
        Forms(quota_edit_id=quota_id, quota_edit=form, quota_edit_errors=errors),
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


@router.post(
    "/creneaux/quotas/{quota_id}/supprimer",
    dependencies=[page(Capability.REFERENCE_WRITE), CsrfChecked],
)
def quota_delete(quota_id: int, db: SessionDep, control: ControlDep) -> Response:
    if db.get(Quota, quota_id) is not None:
        api_calendar.delete_quota(quota_id, ReferenceWrite(db, control))
    return _redirect("/creneaux?resultat=quota-supprime#quotas")
