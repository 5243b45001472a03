"""Background writer of the identified access log (and staff presence marks).

Every decision is logged with its member, badge hash and reason code, but the
decision never waits for SQL: the MQTT thread only puts an :class:`AccessEntry` on
a queue. One writer thread drains the queue in batches (every ``flush_interval_s``
or ``batch_size`` rows, whichever comes first), one transaction per batch, with a
multi-row INSERT. It also purges rows older than the retention period (identified
logs of minors are kept three months by default, DESIGN §4 privacy).

If the store is unreachable, a batch is retried a few times and then dropped and
counted: losing log lines is better than stalling badge decisions or growing
memory without bound (the queue is bounded too; overflow is counted, never blocks).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Result, delete, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hub.db.engine import transaction
from hub.db.errors import describe
from hub.db.models import AccessLog, Member, StaffPresence, Zone
from hub.live import StaffMark
from hub.metrics import Metrics, RateLimitedLog
from protocol.messages import utcnow

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)

_RETRY_DELAYS = (0.2, 1.0, 3.0)


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One decision to log, online or offline."""

    ts: datetime
    edge_id: str
    machine_id: str
    member_id: int | None
    badge_hash: str
    req_id: str
    granted: bool
    code: str
    offline: bool = False
    session_id: str | None = None


_Item = AccessEntry | StaffMark


_ACCESS_LOG = AccessLog.metadata.tables[AccessLog.__tablename__]
_STAFF_PRESENCE = StaffPresence.metadata.tables[StaffPresence.__tablename__]
_LOG_FIELDS = tuple(f.name for f in fields(AccessEntry))
_MARK_FIELDS = tuple(f.name for f in fields(StaffMark))


def _row(item: _Item, names: tuple[str, ...]) -> dict[str, Any]:
    """Column values of a queued item (``dataclasses.asdict`` deep-copies: too slow)."""
    return {name: getattr(item, name) for name in names}


def _rowcount(result: Result[Any]) -> int:
    """Rows a DELETE touched (0 when the driver cannot tell)."""
    return int(getattr(result, "rowcount", 0) or 0)


class AccessLogWriter:
    """Batches access-log rows and staff presence marks into the store on its own thread.

    ``start()`` launches the thread, ``record()`` never blocks (an append to a deque:
    no lock, and no wake-up of the writer for every decision), ``flush()`` waits
    until everything recorded so far is written (tests, shutdown), ``stop()`` drains
    and joins. The writer wakes every ``flush_interval_s`` (sooner when a batch is
    full or a flush is requested) and writes what accumulated, ``batch_size`` rows
    per transaction.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        retention_days: int,
        metrics: Metrics | None = None,
        flush_interval_s: float = 0.2,
        batch_size: int = 500,
        max_queue: int = 100_000,
        purge_interval_s: float = 3600.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._factory = factory
        self._retention = timedelta(days=retention_days)
        self._metrics = metrics or Metrics()
        self._interval = flush_interval_s
        self._batch_size = batch_size
        self._max_queue = max_queue
        self._purge_interval = purge_interval_s
        self._clock = clock
        self._items: deque[_Item | threading.Event] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ producers

    def queued(self) -> int:
        """Rows waiting to be written."""
        return len(self._items)

    def record(self, entry: AccessEntry | StaffMark) -> bool:
        """Queue one row; False (and counted) when the backlog is full."""
        if len(self._items) >= self._max_queue:
            self._metrics.inc("accesslog_dropped", "queue_full")
            _limited.warning("full", "access log backlog full: dropping rows")
            return False
        self._items.append(entry)
        if len(self._items) == self._batch_size:
            self._wake.set()
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row recorded before this call is written (or dropped)."""
        if self._thread is None:
            return not self._items
        marker = threading.Event()
        self._items.append(marker)
        self._wake.set()
        return marker.wait(timeout)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="accesslog-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("access log writer did not stop within %.1fs", timeout)
        self._thread = None

    def purge(self, now: datetime | None = None) -> int:
        """Delete access-log rows and staff marks older than the retention period."""
        cutoff = (now or self._clock()) - self._retention
        with transaction(self._factory) as session:
            logs = _rowcount(session.execute(delete(AccessLog).where(AccessLog.ts < cutoff)))
            marks = _rowcount(
                session.execute(delete(StaffPresence).where(StaffPresence.until < cutoff))
            )
        if logs or marks:
            logger.info(
                "purged %d access-log rows and %d staff marks before %s", logs, marks, cutoff
            )
        return logs

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        next_purge = time.monotonic()
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            stopping = self._stopping.is_set()
            self._write_pending()
            if stopping:
                return
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + self._purge_interval
                try:
                    self.purge()
                except SQLAlchemyError as err:
                    logger.warning("access log purge failed; retrying later: %s", describe(err))

    def _write_pending(self) -> None:
        """Write everything queued so far in batches; release flush markers in order."""
        batch: list[_Item] = []
        while True:
            try:
                item = self._items.popleft()
            except IndexError:
                break
            if isinstance(item, threading.Event):
                if batch:
                    self._write(batch)
                    batch = []
                item.set()
                continue
            batch.append(item)
            if len(batch) >= self._batch_size:
                self._write(batch)
                batch = []
        if batch:
            self._write(batch)

    def _write(self, batch: list[_Item]) -> None:
        logs = [_row(i, _LOG_FIELDS) for i in batch if isinstance(i, AccessEntry)]
        marks = [_row(i, _MARK_FIELDS) for i in batch if isinstance(i, StaffMark)]
        for attempt, delay in enumerate((*_RETRY_DELAYS, None)):
            try:
                with transaction(self._factory) as session:
                    # Core executemany: the ORM's bulk path costs several times more
                    # Python (and GIL) per row, and these rows need no ORM at all.
                    connection = session.connection()
                    if logs:
                        connection.execute(insert(_ACCESS_LOG), logs)
                    if marks:
                        connection.execute(insert(_STAFF_PRESENCE), marks)
            except IntegrityError:
                # A member or zone deleted since the decision (its row is gone): keep
                # the log line without the dangling reference rather than lose the batch.
                _limited.warning("integrity", "access log rows refer to deleted rows; cleaning")
                logs, marks = self._without_dangling(logs, marks)
            except SQLAlchemyError as err:
                # Never the error itself: its text may quote a badge hash or a name.
                if delay is None:
                    logger.error(
                        "dropping %d access-log rows after retries: %s", len(batch), describe(err)
                    )
                    self._metrics.inc("accesslog_dropped", "store", len(batch))
                    return
                _limited.warning(
                    "write",
                    "access log write failed (attempt %d): %s",
                    attempt + 1,
                    describe(err),
                )
                time.sleep(delay)
            else:
                self._metrics.inc("accesslog_rows", None, len(logs))
                return
        logger.error("dropping %d access-log rows: still refused after cleaning", len(batch))
        self._metrics.inc("accesslog_dropped", "store", len(batch))

    def _without_dangling(
        self, logs: list[dict[str, Any]], marks: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Null out log rows' unknown members; drop presence marks of unknown members/zones."""
        wanted = {r["member_id"] for r in logs + marks if r["member_id"] is not None}
        with self._factory() as session:
            members = set(session.scalars(select(Member.id).where(Member.id.in_(wanted))))
            zones = set(session.scalars(select(Zone.id)))
        clean_logs = [
            r if r["member_id"] is None or r["member_id"] in members else {**r, "member_id": None}
            for r in logs
        ]
        clean_marks = [r for r in marks if r["member_id"] in members and r["zone_id"] in zones]
        self._metrics.inc("accesslog_dangling", None, len(marks) - len(clean_marks))
        return clean_logs, clean_marks
