"""``fabrique telemetry backfill``: rewrite sessions and jobs from the ledger.

The SQL ledger is the truth; InfluxDB may have missed points (down, buffer full).
A backfilled point is the one the hub wrote live (same series, same timestamp), so
InfluxDB overwrites it: running a backfill twice, or over a period that was written
live, changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from hub.db.models import MachineJob, UsageSession
from hub.telemetry.feed import job_lines, session_lines
from hub.telemetry.writer import InfluxWriter

logger = logging.getLogger(__name__)

#: Rows read per query.
PAGE = 5_000


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What a backfill wrote."""

    sessions: int
    jobs: int
    written: int
    dropped: int


def _pages(s: Session, model: Any, since: datetime) -> Iterator[Sequence[Any]]:
    """Rows ended since ``since``, by (ended_at, id) keyset pages: ties are neither
    lost nor repeated, and a year of sessions never sits in memory."""
    query = select(model).where(model.ended_at >= since)
    while True:
        rows = s.scalars(query.order_by(model.ended_at, model.id).limit(PAGE)).all()
        if not rows:
            return
        yield rows
        last_at, last_id = rows[-1].ended_at, rows[-1].id
        s.expunge_all()
        query = select(model).where(
            or_(model.ended_at > last_at, and_(model.ended_at == last_at, model.id > last_id))
        )


def backfill(
    factory: sessionmaker[Session],
    writer: InfluxWriter,
    site: str,
    since: datetime,
    *,
    timeout_s: float = 300.0,
) -> BackfillResult:
    """Write every session and job ended since ``since`` (the writer must be started),
    waiting for each page to be written (the writer's bound is never the limit)."""
    counts = {"sessions": 0, "jobs": 0}
    accepted = offered = 0
    with factory() as s:
        for name, model in (("sessions", UsageSession), ("jobs", MachineJob)):
            for rows in _pages(s, model, since):
                lines = session_lines(site, rows) if name == "sessions" else job_lines(site, rows)
                offered += len(lines)
                accepted += writer.submit(lines)
                writer.wait_idle(timeout_s)
                counts[name] += len(lines)
    logger.info(
        "backfill since %s: %d sessions, %d jobs",
        since.isoformat(),
        counts["sessions"],
        counts["jobs"],
    )
    return BackfillResult(counts["sessions"], counts["jobs"], accepted, offered - accepted)
