"""Retention: identified history becomes pseudonymous after the retention period.

This module owns the one code path that takes identity out of history rows, used both
by the scheduled retention job (and ``fabrique hub purge``) and by a member's erasure
(CNIL developer guide: purge and erasure share their code).

What "identified history" is, and what becomes of it:

* ``usage_session``: ``member_id`` and ``badge_hash`` are cleared; the row keeps its
  pseudonymous dimensions (age group, programmes, machine kind, times), freezes the
  member's declared ``gender``, and gets a ``participant`` pseudonym and a
  ``first_month`` flag so reports keep counting unique and new participants right;
* ``machine_job``: ``member_id`` cleared and the file name blanked (file names name
  children: ``porte-cles-lea.gcode``);
* ``edge_event`` bodies: badge hashes replaced by :data:`ERASED_HASH`, job file names
  blanked;
* ``access_log`` rows and ``staff_presence`` marks: deleted.

Participant pseudonyms. ``participant = HMAC-SHA256(K_month, member_id)`` truncated to
64 bits, where ``K_month`` is a random key per local calendar month
(``pseudonym_key``). Within one month the same person always gets the same pseudonym,
so a month's unique participants (in any group: age, programme, machine kind…) stay
exact; two months' pseudonyms of one person differ, so pseudonymised history cannot be
chained into a profile. Once a whole month is older than the retention period, its key
is deleted: nobody, not even the hub, can then link the month's pseudonyms to a member
id. For a span of several pseudonymised months, reports therefore add each month's
distinct participants ("participant-months"), and say so.

New participants. A member's first visit must survive the pseudonymisation of their
first sessions: the earliest pseudonymised start is kept on the member
(``member.first_visit_at``, registry data, erased with the member), and each
pseudonymised row records whether its month was the member's first month of visits.

Event bodies and the access log are not read by reports, so they carry no pseudonym.
A session row that arrives for a month whose key is already gone (an edge journal
replayed months late) gets a fresh key for that month, deleted at the next run.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hub.db.engine import transaction
from hub.db.errors import describe
from hub.db.models import (
    AccessLog,
    EdgeEvent,
    MachineJob,
    Member,
    PseudonymKey,
    StaffPresence,
    UsageSession,
)
from protocol.messages import utcnow

logger = logging.getLogger(__name__)

#: What an erased badge hash becomes inside stored journal event bodies.
ERASED_HASH = "0" * 64
#: Rows handled per query batch (keeps memory flat on a big ledger).
_BATCH = 2000


def month_of(when: datetime, tz: ZoneInfo) -> str:
    """The local calendar month of ``when``, ``YYYY-MM``."""
    return when.astimezone(tz).strftime("%Y-%m")


def month_end(month: str, tz: ZoneInfo) -> datetime:
    """The first instant after local calendar ``month``."""
    year, number = (int(part) for part in month.split("-"))
    year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return datetime(year, number, 1, tzinfo=tz)


@dataclass
class Scrubbed:
    """Rows changed by one pass, per table (logged as proof; the tombstone's counts)."""

    rows: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, n: int) -> None:
        if n:
            self.rows[table] = self.rows.get(table, 0) + n

    @property
    def total(self) -> int:
        return sum(self.rows.values())


class Pseudonyms:
    """Month keys and participant pseudonyms, within one database transaction."""

    def __init__(self, session: Session, tz: ZoneInfo) -> None:
        self._s = session
        self._tz = tz
        self._keys: dict[str, bytes] = {}

    def participant(self, member_id: int, when: datetime) -> str:
        """The member's pseudonym for the month of ``when`` (16 hex digits)."""
        key = self._key(month_of(when, self._tz))
        return hmac.new(key, str(member_id).encode(), hashlib.sha256).hexdigest()[:16]

    def _key(self, month: str) -> bytes:
        key = self._keys.get(month)
        if key is None:
            row = self._s.get(PseudonymKey, month)
            if row is None:
                row = PseudonymKey(month=month, secret=secrets.token_hex(32))
                self._s.add(row)
                self._s.flush()
            key = self._keys[month] = bytes.fromhex(row.secret)
        return key


def pseudonymise_sessions(
    s: Session, tz: ZoneInfo, where: ColumnElement[bool], scrubbed: Scrubbed
) -> None:
    """Take identity out of the usage sessions matching ``where`` (and their jobs)."""
    pseudonyms = Pseudonyms(s, tz)
    identified = or_(UsageSession.member_id.is_not(None), UsageSession.badge_hash.is_not(None))
    while True:
        rows = list(
            s.scalars(
                select(UsageSession)
                .where(where, identified)
                .order_by(UsageSession.started_at)
                .limit(_BATCH)
            )
        )
        if not rows:
            return
        members = _members(s, {r.member_id for r in rows if r.member_id is not None})
        firsts = first_visits(s, members)
        for row in rows:
            member = members.get(row.member_id) if row.member_id is not None else None
            if member is not None:
                first = firsts[member.id]
                row.participant = pseudonyms.participant(member.id, row.started_at)
                row.gender = member.gender.value
                row.first_month = month_of(first, tz) == month_of(row.started_at, tz)
                if member.first_visit_at is None or row.started_at < member.first_visit_at:
                    member.first_visit_at = row.started_at
            row.member_id = None
            row.badge_hash = None
        jobs = s.scalars(
            select(MachineJob).where(MachineJob.session_id.in_([r.id for r in rows]))
        ).all()
        scrub_jobs(s, jobs, scrubbed)
        scrubbed.add("usage_session", len(rows))
        s.flush()


def _members(s: Session, ids: set[int]) -> dict[int, Member]:
    if not ids:
        return {}
    return {m.id: m for m in s.scalars(select(Member).where(Member.id.in_(ids)))}


def first_visits(s: Session, member_ids: Iterable[int]) -> dict[int, datetime]:
    """Each member's first visit: their earliest session, identified or already
    pseudonymised (``member.first_visit_at``)."""
    firsts: dict[int, datetime] = {}
    ids = sorted(set(member_ids))
    for i in range(0, len(ids), 1000):
        chunk = ids[i : i + 1000]
        query = (
            select(UsageSession.member_id, func.min(UsageSession.started_at))
            .where(UsageSession.member_id.in_(chunk))
            .group_by(UsageSession.member_id)
        )
        for member_id, first in s.execute(query):
            if member_id is not None and first is not None:
                firsts[member_id] = first
        known_visits = select(Member.id, Member.first_visit_at).where(
            Member.id.in_(chunk), Member.first_visit_at.is_not(None)
        )
        for member_id, known in s.execute(known_visits):
            if known is not None and (member_id not in firsts or known < firsts[member_id]):
                firsts[member_id] = known
    return firsts


def scrub_jobs(s: Session, jobs: Iterable[MachineJob], scrubbed: Scrubbed) -> None:
    """Detach print jobs from their member and blank their file names, in the rows and
    in the stored ``job_ended`` events. The jobs stay counted (machine, age group,
    duration, filament)."""
    n = 0
    for job in jobs:
        if job.member_id is None and not job.job:
            continue
        job.member_id = None
        job.job = ""
        n += 1
        event = s.get(EdgeEvent, (job.edge_id, job.seq))
        if event is not None and event.type == "job_ended" and event.body.get("job"):
            event.body = {**event.body, "job": ""}
            scrubbed.add("edge_event", 1)
    scrubbed.add("machine_job", n)


def scrub_events(s: Session, where: ColumnElement[bool], scrubbed: Scrubbed) -> None:
    """Replace badge hashes and blank job file names in the matching event bodies."""
    badge = EdgeEvent.body["badge"].as_string()
    job = EdgeEvent.body["job"].as_string()
    identified = or_(
        and_(badge.is_not(None), badge != ERASED_HASH), and_(job.is_not(None), job != "")
    )
    while True:
        rows = list(s.scalars(select(EdgeEvent).where(where, identified).limit(_BATCH)))
        if not rows:
            return
        for event in rows:
            body: dict[str, Any] = dict(event.body)
            if body.get("badge"):
                body["badge"] = ERASED_HASH
            if body.get("job"):
                body["job"] = ""
            event.body = body
        scrubbed.add("edge_event", len(rows))
        s.flush()


def scrub_member_events(s: Session, hashes: list[str], scrubbed: Scrubbed) -> None:
    """Replace a member's badge hashes in every stored event body (erasure)."""
    if hashes:
        scrub_events(s, EdgeEvent.body["badge"].as_string().in_(hashes), scrubbed)


# --------------------------------------------------------------------------- purge


@dataclass(frozen=True)
class PurgeResult:
    cutoff: datetime
    rows: dict[str, int]
    keys_deleted: int


def purge(s: Session, *, now: datetime, retention_days: int, tz: ZoneInfo) -> PurgeResult:
    """Pseudonymise or delete identified history older than ``retention_days``."""
    cutoff = now - timedelta(days=retention_days)
    scrubbed = Scrubbed()
    pseudonymise_sessions(s, tz, UsageSession.started_at < cutoff, scrubbed)
    old_jobs = s.scalars(
        select(MachineJob).where(
            MachineJob.ended_at < cutoff,
            or_(MachineJob.member_id.is_not(None), MachineJob.job != ""),
        )
    ).all()
    scrub_jobs(s, old_jobs, scrubbed)
    scrub_events(s, EdgeEvent.ts < cutoff, scrubbed)
    scrubbed.add("access_log", _count(s.execute(delete(AccessLog).where(AccessLog.ts < cutoff))))
    scrubbed.add(
        "staff_presence",
        _count(s.execute(delete(StaffPresence).where(StaffPresence.until < cutoff))),
    )
    gone = [m for m in s.scalars(select(PseudonymKey.month)) if month_end(m, tz) <= cutoff]
    if gone:
        s.execute(delete(PseudonymKey).where(PseudonymKey.month.in_(gone)))
    return PurgeResult(cutoff=cutoff, rows=dict(scrubbed.rows), keys_deleted=len(gone))


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def run_purge(
    factory: sessionmaker[Session],
    *,
    retention_days: int,
    tz: ZoneInfo,
    now: datetime | None = None,
) -> PurgeResult:
    """One retention pass in one transaction, logged as proof (counts, never identities)."""
    with transaction(factory) as s:
        result = purge(s, now=now or utcnow(), retention_days=retention_days, tz=tz)
    if result.rows or result.keys_deleted:
        shown = ", ".join(f"{table} {n}" for table, n in sorted(result.rows.items()))
        logger.info(
            "retention: history before %s pseudonymised or deleted (%s); %d month key(s) destroyed",
            result.cutoff.isoformat(timespec="seconds"),
            shown or "no rows",
            result.keys_deleted,
        )
    return result


class RetentionJob:
    """Runs :func:`run_purge` every ``interval_s`` on its own thread (first run at start)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        retention_days: int,
        tz: ZoneInfo,
        interval_s: float = 3600.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._factory = factory
        self._retention_days = retention_days
        self._tz = tz
        self._interval = interval_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                run_purge(
                    self._factory,
                    retention_days=self._retention_days,
                    tz=self._tz,
                    now=self._clock(),
                )
            except SQLAlchemyError as err:
                logger.warning("retention pass failed; retrying later: %s", describe(err))
            self.runs += 1
            self._stop.wait(self._interval)
