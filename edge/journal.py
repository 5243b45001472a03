"""The edge's durable journal: an SQLite outbox of protocol events (DESIGN §3).

Every event the edge produces (``session_started``, ``usage_tick``, ``session_ended``,
``offline_decision``, ``machine_fault``) is appended here and committed **before**
the agent acts on it, then published in order until the hub acknowledges it with
``ack_through``. The journal, not the broker nor paho, is the truth: both lose
in-flight messages on a crash.

Storage choices:

* ``journal_mode=WAL`` and ``synchronous=FULL``: a commit is fsynced to the WAL
  before :meth:`Journal.append` returns, so an event the agent acted on survives a
  power cut (``NORMAL`` may roll back the last commits after power loss).
* ``seq INTEGER PRIMARY KEY AUTOINCREMENT``: SQLite never reuses a value, even after
  every row was pruned, so the sequence survives reboots and pruning.
* ``event_id`` is a unique uuid4 hex: the hub can spot a cloned SD card (same id,
  different seq).
* ``PRAGMA integrity_check`` runs at :meth:`Journal.open`; a damaged file or an
  unreadable row raises :class:`JournalCorrupt` instead of being dropped silently.

The connection epoch (incremented before each MQTT connect, carried by the last will
and by every event) lives in the same database, table ``meta``.

One connection, guarded by a lock: the agent's thread appends while the link's
thread may read and acknowledge.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from edge.clock import Clock, SystemClock, wall_estimate
from protocol.errors import PayloadError
from protocol.files import private_file
from protocol.ids import is_ident
from protocol.messages import (
    EndReason,
    Event,
    JobEnded,
    JobEndedBody,
    JobStarted,
    JobStartedBody,
    MachineFault,
    MachineFaultBody,
    MachineRearmed,
    MachineRearmedBody,
    OfflineDecision,
    OfflineDecisionBody,
    SessionEnded,
    SessionEndedBody,
    SessionStarted,
    SessionStartedBody,
    UsageTick,
    UsageTickBody,
    decode_event,
    encode,
)

logger = logging.getLogger(__name__)

__all__ = [
    "Event",
    "EventBody",
    "Journal",
    "JournalCorrupt",
    "JournalError",
    "OpenSession",
]

#: The body of any journal event; the journal wraps it in its envelope.
EventBody = (
    SessionStartedBody
    | UsageTickBody
    | SessionEndedBody
    | OfflineDecisionBody
    | MachineFaultBody
    | MachineRearmedBody
    | JobEndedBody
    | JobStartedBody
)
#: A complete journal event, as published on ``edge/{edge}/evt``.

_EVENT_FOR_BODY: Final[dict[type[EventBody], type[Event]]] = {
    SessionStartedBody: SessionStarted,
    UsageTickBody: UsageTick,
    SessionEndedBody: SessionEnded,
    OfflineDecisionBody: OfflineDecision,
    MachineFaultBody: MachineFault,
    MachineRearmedBody: MachineRearmed,
    JobEndedBody: JobEnded,
    JobStartedBody: JobStarted,
}

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = (
    """
    CREATE TABLE IF NOT EXISTS journal (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id     TEXT    NOT NULL UNIQUE,
        type         TEXT    NOT NULL,
        session_id   TEXT,
        payload      TEXT    NOT NULL,
        created_mono REAL    NOT NULL,
        created_wall REAL    NOT NULL,
        acked        INTEGER NOT NULL DEFAULT 0,
        send_count   INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX IF NOT EXISTS journal_unacked ON journal(acked, seq)",
    "CREATE INDEX IF NOT EXISTS journal_session ON journal(session_id, type)",
    "CREATE INDEX IF NOT EXISTS journal_type ON journal(type, seq)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)


class JournalError(Exception):
    """The journal cannot be used (I/O error, disk full, closed, newer schema)."""


class JournalCorrupt(JournalError):
    """The database file or one of its rows cannot be read back.

    ``seq`` names the damaged row when one is known. The agent must not carry on as if
    nothing happened: unacknowledged events may be lost, and the hub's ledger is the
    only copy of acknowledged ones.
    """

    def __init__(self, message: str, *, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


@dataclass(frozen=True, slots=True)
class OpenSession:
    """A session started in the journal but never ended (the agent crashed or lost power).

    ``elapsed_s`` is the monotonic age at the last ``usage_tick`` (0 without one): the
    duration to record when closing the session as ``edge_restart``, at most one
    minute short of the truth.
    """

    session_id: str
    machine: str
    badge: str
    offline: bool
    started_seq: int
    started_at: datetime
    last_minute: int
    elapsed_s: float


class Journal:
    """The durable, ordered outbox of one edge's events.

    Build it, then :meth:`open` it (or use it as a context manager); every method is
    thread-safe. Events carry ``edge_id``, the journal's sequence and event id, the
    current :attr:`epoch` and the clock's wall time.
    """

    def __init__(self, path: Path | str, edge_id: str, clock: Clock | None = None) -> None:
        if not is_ident(edge_id):
            raise ValueError(f"invalid edge id {edge_id!r}")
        self.path = Path(path)
        self.edge_id = edge_id
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._epoch = 0

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Open (creating if needed) and check the database.

        Raises:
            JournalCorrupt: the file is not a database or fails ``integrity_check``.
            JournalError: the file cannot be opened, or has a newer schema.
        """
        with self._lock:
            if self._conn is not None:
                return
            try:
                private_file(self.path)  # members' badge hashes: 0600, like its -wal/-shm
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=10.0
                )
            except (sqlite3.Error, OSError) as err:
                raise JournalError(f"cannot open the journal {self.path}: {err}") from err
            try:
                self._conn = conn
                self._setup(conn)
            except BaseException:
                self._conn = None
                conn.close()
                raise
        logger.info(
            "journal %s open: last seq %d, %d unacknowledged, epoch %d",
            self.path,
            self.last_seq(),
            self.pending(),
            self._epoch,
        )

    def _setup(self, conn: sqlite3.Connection) -> None:
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous=FULL")
            check = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
        except sqlite3.DatabaseError as err:
            raise JournalCorrupt(
                f"the journal {self.path} is not a readable database: {err}"
            ) from err
        if check != ["ok"]:
            raise JournalCorrupt(
                f"the journal {self.path} fails its integrity check: {'; '.join(check[:5])}"
            )
        if str(mode).lower() != "wal":
            raise JournalError(f"the journal {self.path} cannot use WAL mode (got {mode!r})")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"the journal {self.path} has schema {version}, newer than {SCHEMA_VERSION}"
                )
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            row = conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
        except sqlite3.DatabaseError as err:
            raise JournalCorrupt(f"the journal {self.path} cannot be prepared: {err}") from err
        self._epoch = int(row[0]) if row is not None else 0

    def close(self) -> None:
        """Close the connection; the journal can be opened again."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """The connection under the lock, with SQLite errors translated."""
        with self._lock:
            if self._conn is None:
                raise JournalError("the journal is not open")
            try:
                yield self._conn
            except sqlite3.DatabaseError as err:
                raise JournalError(f"journal {self.path}: {err}") from err

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One committed (fsynced) write transaction under the lock."""
        with self._read() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # ------------------------------------------------------------------ epoch

    @property
    def epoch(self) -> int:
        """The epoch of the current (or last) MQTT connection."""
        return self._epoch

    def next_epoch(self) -> int:
        """Increment, persist and return the epoch; call before each connect."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('epoch', 1) "
                "ON CONFLICT(key) DO UPDATE SET value = value + 1"
            )
            value = int(conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()[0])
        self._epoch = value
        logger.debug("journal epoch is now %d", value)
        return value

    # ------------------------------------------------------------------ writing

    def append(self, body: EventBody) -> Event:
        """Journal one event and return it; durable once this returns.

        The caller acts (switches the machine, publishes) only after this returns.

        Raises:
            JournalError: the event could not be committed; do not act.
        """
        return self.append_many([body])[0]

    def append_many(self, bodies: Sequence[EventBody]) -> list[Event]:
        """Journal several events in ONE transaction (one fsync), in order.

        An offline grant journals its decision and its session start back to back:
        one commit instead of two halves the disk waits before the machine starts.
        All or nothing: on error none of them is journaled.

        Raises:
            JournalError: the events could not be committed; do not act.
        """
        events: list[Event] = []
        with self._write() as conn:
            for body in bodies:
                cls = _EVENT_FOR_BODY[type(body)]
                session_id: str | None = getattr(body, "session_id", None)
                wall = self._clock.now()
                mono = self._clock.monotonic()
                event_id = uuid.uuid4().hex
                cur = conn.execute(
                    "INSERT INTO journal(event_id, type, session_id, payload, created_mono, "
                    "created_wall) VALUES (?, ?, ?, '', ?, ?)",
                    (
                        event_id,
                        cls.model_fields["type"].default,
                        session_id,
                        mono,
                        wall.timestamp(),
                    ),
                )
                seq = cur.lastrowid
                assert seq is not None
                event = cls(
                    edge=self.edge_id,
                    seq=seq,
                    event_id=event_id,
                    epoch=self._epoch,
                    ts=wall,
                    body=body,  # the class was chosen from the body type
                )
                conn.execute(
                    "UPDATE journal SET payload = ? WHERE seq = ?", (encode(event).decode(), seq)
                )
                events.append(event)
        for event in events:
            logger.debug("journaled %s seq=%d", event.type, event.seq)
        return events

    def mark_sent(self, seqs: Iterable[int]) -> None:
        """Count one more publication of each event (diagnostics: resends)."""
        with self._write() as conn:
            conn.executemany(
                "UPDATE journal SET send_count = send_count + 1 WHERE seq = ?",
                ((s,) for s in seqs),
            )

    def ack_through(self, seq: int) -> int:
        """Mark every event up to ``seq`` as acknowledged; return how many were newly."""
        last = self.last_seq()
        if seq > last:
            logger.warning(
                "the hub acknowledges through seq %d but the journal never went beyond %d "
                "(journal reset or cloned edge?)",
                seq,
                last,
            )
        with self._write() as conn:
            count = conn.execute(
                "UPDATE journal SET acked = 1 WHERE acked = 0 AND seq <= ?", (seq,)
            ).rowcount
        return int(count)

    def prune(self, retention: timedelta) -> int:
        """Delete acknowledged events older than ``retention``; return how many.

        Only a prefix of the sequence is pruned (through the newest acknowledged
        event older than the retention), so a wall-clock jump cannot leave holes,
        and rows of a session that has not ended yet are kept for
        :meth:`open_sessions`. Age is judged on the wall clock: a clock stuck in
        the past prunes nothing, which is the safe way to be wrong.
        """
        cutoff = (self._clock.now() - retention).timestamp()
        with self._write() as conn:
            row = conn.execute(
                "SELECT MAX(seq) FROM journal WHERE acked = 1 AND created_wall < ?", (cutoff,)
            ).fetchone()
            if row is None or row[0] is None:
                return 0
            count = conn.execute(
                "DELETE FROM journal WHERE acked = 1 AND seq <= ? AND (session_id IS NULL "
                "OR session_id IN (SELECT session_id FROM journal WHERE type = 'session_ended'))",
                (row[0],),
            ).rowcount
        if count:
            logger.info("pruned %d acknowledged journal events", count)
        return int(count)

    # ------------------------------------------------------------------ reading

    def unacked(self, limit: int = 100) -> list[Event]:
        """The oldest ``limit`` unacknowledged events, in sequence order.

        Raises:
            JournalCorrupt: a row cannot be decoded (its ``seq`` is named).
        """
        with self._read() as conn:
            rows = conn.execute(
                "SELECT seq, payload FROM journal WHERE acked = 0 ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [self._decode(seq, payload) for seq, payload in rows]

    def replay_from(self, seq: int, limit: int = 1000) -> list[Event]:
        """Events from ``seq`` on, acknowledged or not, while still retained.

        Raises:
            JournalCorrupt: a row cannot be decoded.
        """
        with self._read() as conn:
            first = conn.execute("SELECT MIN(seq) FROM journal").fetchone()[0]
            rows = conn.execute(
                "SELECT seq, payload FROM journal WHERE seq >= ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        if first is not None and seq < first:
            logger.warning("replay from seq %d asked but events before %d were pruned", seq, first)
        return [self._decode(s, payload) for s, payload in rows]

    def pending(self) -> int:
        """How many events wait for the hub's acknowledgement (for the outbox alarm)."""
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM journal WHERE acked = 0").fetchone()[0])

    def last_seq(self) -> int:
        """The highest sequence ever assigned (0 before the first event), pruned or not."""
        with self._read() as conn:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'journal'").fetchone()
        return int(row[0]) if row is not None else 0

    def open_sessions(self) -> list[OpenSession]:
        """Sessions started but never ended, oldest first (to close after a crash).

        Raises:
            JournalCorrupt: a row of such a session cannot be decoded.
        """
        with self._read() as conn:
            started = conn.execute(
                "SELECT s.seq, s.payload FROM journal s WHERE s.type = 'session_started' "
                "AND NOT EXISTS (SELECT 1 FROM journal e WHERE e.type = 'session_ended' "
                "AND e.session_id = s.session_id) ORDER BY s.seq"
            ).fetchall()
            ticks = {
                seq: conn.execute(
                    "SELECT seq, payload FROM journal WHERE type = 'usage_tick' "
                    "AND session_id = (SELECT session_id FROM journal WHERE seq = ?) "
                    "ORDER BY seq DESC LIMIT 1",
                    (seq,),
                ).fetchone()
                for seq, _ in started
            }
        result: list[OpenSession] = []
        for seq, payload in started:
            event = self._decode(seq, payload)
            if not isinstance(event, SessionStarted):
                raise JournalCorrupt(f"journal row {seq} is not a session_started", seq=seq)
            minute, elapsed = 0, 0.0
            tick_row = ticks[seq]
            if tick_row is not None:
                tick = self._decode(tick_row[0], tick_row[1])
                if not isinstance(tick, UsageTick):
                    raise JournalCorrupt(f"journal row {tick_row[0]} is not a usage_tick")
                minute, elapsed = tick.body.minute, tick.body.elapsed_s
            body = event.body
            result.append(
                OpenSession(
                    session_id=body.session_id,
                    machine=body.machine,
                    badge=body.badge,
                    offline=body.offline,
                    started_seq=seq,
                    started_at=body.started_at,
                    last_minute=minute,
                    elapsed_s=elapsed,
                )
            )
        return result

    def remember_policy(self) -> int:
        """Record that a policy snapshot was accepted now; return the journal's last seq.

        Sessions journaled after this mark are unknown to that snapshot's quotas
        (:meth:`badge_usage_after`); the mark survives restarts with the cached snapshot.
        """
        with self._write() as conn:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'journal'").fetchone()
            mark = int(row[0]) if row is not None else 0
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('policy_seq', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (mark,),
            )
        return mark

    def policy_mark(self) -> int | None:
        """The seq recorded by :meth:`remember_policy`, ``None`` if never recorded."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key='policy_seq'").fetchone()
        return int(row[0]) if row is not None else None

    def badge_usage_after(self, mark: int, badge: str, machines: Collection[str]) -> float:
        """Seconds ``badge`` used ``machines`` in sessions that ended after seq ``mark``,
        plus its sessions still open (to their last tick).

        The offline decision subtracts this from the snapshot's remaining quota: the
        snapshot cannot know what this edge metered after it arrived. A session that
        straddles the mark counts whole (over-counting is the safe side).

        Raises:
            JournalCorrupt: a row of such a session cannot be decoded.
        """
        wanted = set(machines)
        with self._read() as conn:
            ended = conn.execute(
                "SELECT e.seq, e.payload, s.seq, s.payload FROM journal e "
                "JOIN journal s ON s.session_id = e.session_id AND s.type = 'session_started' "
                "WHERE e.type = 'session_ended' AND e.seq > ? ORDER BY e.seq",
                (mark,),
            ).fetchall()
        used = 0.0
        for end_seq, end_payload, start_seq, start_payload in ended:
            start = self._decode(start_seq, start_payload)
            if not isinstance(start, SessionStarted):
                raise JournalCorrupt(f"journal row {start_seq} is not a session_started")
            if start.body.badge != badge or start.body.machine not in wanted:
                continue
            end = self._decode(end_seq, end_payload)
            if not isinstance(end, SessionEnded):
                raise JournalCorrupt(f"journal row {end_seq} is not a session_ended")
            used += end.body.duration_s
        for session in self.open_sessions():
            if session.badge == badge and session.machine in wanted:
                used += session.elapsed_s
        return used

    def close_open_sessions(self, reason: EndReason = EndReason.EDGE_RESTART) -> list[Event]:
        """Journal a ``session_ended`` for every open session; return the new events.

        Called once at agent start, before any actuator is touched: the duration is
        the last tick's elapsed time (a crash loses at most one minute) and the end
        time is estimated from the start time, not from a possibly wrong wall clock.
        """
        ended: list[Event] = []
        for session in self.open_sessions():
            logger.warning(
                "closing session %s on %s left open (last tick at %.0f s) as %s",
                session.session_id,
                session.machine,
                session.elapsed_s,
                reason,
            )
            ended.append(
                self.append(
                    SessionEndedBody(
                        session_id=session.session_id,
                        machine=session.machine,
                        reason=reason,
                        duration_s=session.elapsed_s,
                        ended_at=wall_estimate(session.elapsed_s, 0.0, session.started_at),
                    )
                )
            )
        return ended

    def _decode(self, seq: int, payload: object) -> Event:
        """A stored row back as its event, or :class:`JournalCorrupt`."""
        raw = payload if isinstance(payload, bytes) else str(payload).encode()
        try:
            event = decode_event(raw)
        except PayloadError as err:
            raise JournalCorrupt(f"journal row {seq} is unreadable: {err}", seq=seq) from err
        if event.seq != seq or event.edge != self.edge_id:
            raise JournalCorrupt(
                f"journal row {seq} holds event seq {event.seq} of edge {event.edge!r}", seq=seq
            )
        return event
