"""Small helpers shared by the API routes: ages, times, lookups, error answers.

Everything user-facing raised from here is an :class:`fastapi.HTTPException` with a
French ``detail``; field errors use the same shape as FastAPI's own 422 answers
(``[{"loc": [...], "msg": ..., "type": ...}]``) so clients handle one format.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NoReturn, TypeVar, TypeVarTuple
from zoneinfo import ZoneInfo

from fastapi import HTTPException, status
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.policy.engine import age_at, age_group
from hub.policy.model import PolicyConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def member_age(birth_year: int, birth_month: int, cfg: PolicyConfig) -> tuple[int, str]:
    """Age today (site time) and age group, with the policy engine's rules and bands."""
    age = age_at(birth_year, birth_month, local_today(cfg.tz))
    return age, age_group(age, cfg)


def local_today(tz: ZoneInfo) -> date:
    """Today's date on the site's wall clock."""
    return datetime.now(tz).date()


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """Local midnight starting ``day``, as an aware UTC datetime (DST-correct)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def to_utc(value: datetime, tz: ZoneInfo, field: str) -> datetime:
    """An aware UTC datetime from user input; a naive one is read in the site's time zone."""
    try:
        aware = value if value.tzinfo is not None else value.replace(tzinfo=tz)
        result = aware.astimezone(UTC)
    except (OverflowError, ValueError) as err:
        raise invalid(("query", field), "Date et heure hors limites", "datetime_range") from err
    if not 1970 <= result.year <= 2200:
        field_error(("query", field), "Date et heure hors limites", "datetime_range")
    return result


def period(
    cfg: PolicyConfig, since: datetime | None, until: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """The ``since``/``until`` query parameters as UTC bounds; 422 unless until > since."""
    start = to_utc(since, cfg.tz, "since") if since is not None else None
    end = to_utc(until, cfg.tz, "until") if until is not None else None
    if start is not None and end is not None and end <= start:
        field_error(("query", "until"), "until doit suivre since", "range")
    return start, end


def within(
    query: Select[*Ts], column: Any, start: datetime | None, end: datetime | None
) -> Select[*Ts]:
    """``query`` restricted to ``start <= column < end`` (either bound may be open)."""
    if start is not None:
        query = query.where(column >= start)
    if end is not None:
        query = query.where(column < end)
    return query


def not_found(what: str) -> NoReturn:
    """404 with a French message naming the missing thing (``"Machine introuvable"``)."""
    raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} introuvable")


def conflict(message: str) -> NoReturn:
    """409 with a French message."""
    raise HTTPException(status.HTTP_409_CONFLICT, detail=message)


def invalid(loc: Iterable[str | int], message: str, kind: str = "value_error") -> HTTPException:
    """A 422 pointing at one field, shaped like FastAPI's validation errors (to raise)."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": list(loc), "msg": message, "type": kind}],
    )


def field_error(loc: Iterable[str | int], message: str, kind: str = "value_error") -> NoReturn:
    """Raise :func:`invalid`."""
    raise invalid(loc, message, kind)


def get_or_404(db: Session, model: type[T], key: Any, what: str) -> T:
    """Load ``model`` by primary key or answer 404 ``"<what> introuvable"``."""
    row = db.get(model, key)
    if row is None:
        not_found(what)
    return row


def require_refs(
    db: Session,
    model: type[Any],
    ids: Iterable[str] | Iterable[int],
    loc: tuple[str, ...],
    what: str,
) -> None:
    """422 on ``loc`` if any of ``ids`` is not a primary key of ``model``."""
    wanted = set(ids)
    if not wanted:
        return
    pk = model.__mapper__.primary_key[0]
    found = set(db.scalars(select(pk).where(pk.in_(wanted))))
    missing = sorted(str(v) for v in wanted - found)
    if missing:
        field_error(loc, f"{what} inconnu(s) : {', '.join(missing)}", "unknown_reference")


def require_age_groups(groups: Iterable[str], loc: tuple[str, ...], cfg: PolicyConfig) -> None:
    """422 on ``loc`` if a group is not the name of one of the policy's age bands."""
    known = [band.name for band in cfg.age_bands]
    unknown = sorted(set(groups) - set(known))
    if unknown:
        field_error(
            loc,
            f"Tranche d'âge inconnue : {', '.join(unknown)} (attendu : {', '.join(known)})",
            "unknown_age_group",
        )


def commit(db: Session, conflict_message: str) -> None:
    """Commit, turning a constraint violation (a race past our checks) into a 409."""
    try:
        db.commit()
    except IntegrityError as err:
        db.rollback()
        log.info("write refused by a database constraint: %s", type(err.orig).__name__)
        raise HTTPException(status.HTTP_409_CONFLICT, detail=conflict_message) from err


def expiry(granted_on: date, validity_days: int | None) -> date | None:
    """Last valid day of a training granted on ``granted_on`` (None: never expires)."""
    if validity_days is None:
        return None
    return granted_on + timedelta(days=validity_days)
