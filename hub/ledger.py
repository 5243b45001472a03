"""The usage ledger: edge journal events applied exactly once to sessions and usage.

Edges journal every event durably, then publish it at least once (DESIGN §3,
"Exactly-once metering"). The hub makes processing effectively-once:

1. each event is inserted once in ``edge_event`` (unique on edge + seq); a
   duplicate changes nothing and is only acknowledged again;
2. in the same transaction it is applied to its projection (``usage_session``,
   ``machine_job`` for ended jobs, ``access_log`` for offline decisions, ``alert``
   for faults), and the edge's ``contiguous_through`` cursor advances while
   ``seq + 1`` is present;
3. only after COMMIT does :class:`hub.ledger_worker.LedgerWorker` publish ``cmd/journal
   {ack_through}`` (debounced), and a gap (``max_seen > contiguous_through``) still
   open after ``gap_replay_after_s`` triggers ``{replay_from: contiguous_through+1}``.

**Order independence.** Events of one edge arrive in order on one topic, but replays
and duplicates interleave, and a gap can hold back a session's start while its ticks
or end arrive. Every projection is therefore a monotone merge: a tick or an end whose
session is unknown creates a *placeholder* row (no badge yet, start estimated from
the event), which the ``session_started`` event completes later without undoing what
the tick or end recorded; ``used_s``, ``run_s`` and ``last_minute`` only ever grow
(max), and the first ``session_ended`` fixes the end time and reason. A job that
overtakes its session's start is stored unattributed, and the start fills in its
member and age group. Applying the same set of events in any order, any number of
times, yields the same rows.

**Only an edge's own machines.** An event is stored (and acknowledged) whatever it
names, so that one bad event never blocks the edge's journal, but it is projected only
when its machine belongs to the sending edge (``machine.edge_id``), or when it continues
a session this edge already has on that machine (a machine moved to another edge
mid-session). An event naming another edge's machine or session, or a machine the site
does not know, is a misconfigured or compromised edge: it is kept in ``edge_event`` for
inspection, counted (``foreign_machine{event}``) and raises one open ``foreign_machine``
alert per edge (:meth:`hub.alerts.EdgeAlerts.foreign_event`). (Unknown machines used
to get placeholder sessions with no zone and no kind, which only polluted reports: the
hub never grants a machine it does not know, and a snapshot names only the edge's
machines.)

**No poison, no stall.** An event is applied in its own failure domain: whatever
it raises (a value the store refuses, a bug in a projection), it is *quarantined*
(``edge_quarantine``, kept without badge hash or file name, counted
``quarantined{reason}``, one open ``journal_poison`` alert per edge naming the seq) and
its seq counts as present, so the cursor moves past it, it is acknowledged and the
edge's journal does not stall; the other events of its batch are applied as if it had
not been there. Only the store being unavailable (:func:`hub.db.errors.transient`)
leaves events unapplied and unacknowledged, for the edge to replay. Two checks
quarantine an event before it is applied: dated more than ``event_future_s`` after
the hub's clock (``future``), or a seq more than ``journal_window`` beyond the edge's
acknowledged seq (``out_of_window``: such an event never counts as seen, so a seq of
2**63-1 cannot open a gap that never closes).

**Bounded usage.** A session's ``used_s`` (and ``run_s``) never exceeds its wall
span (start to end, or to the hub's clock while it is open) plus
``usage_clock_allowance_s``, nor ``session_max_h``: what a tick or an end claims beyond
that is clamped, counted (``usage_clamped``) and raises one open ``usage_clamped``
alert per edge. The bound is re-applied when a session's real start replaces the
estimate of a placeholder.

The alerts about edges (foreign machines, journal conflicts) and edge liveness
belong to :mod:`hub.alerts`; the worker thread that calls the ledger and publishes
acknowledgements is :mod:`hub.ledger_worker`; totals of the ledger are
:mod:`hub.reports`.

The duplicate check is check-then-insert on the primary key, done by the single
worker thread that writes ``edge_event``; an ``IntegrityError`` from a concurrent
writer (another process) rolls the whole transaction back and it is retried once,
when the check then sees the duplicate. No SAVEPOINT is needed, which pysqlite does
not handle reliably.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, assert_never

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hub.alerts import JOURNAL_POISON, USAGE_CLAMPED, EdgeAlerts, describe_foreign_machine
from hub.db.engine import transaction
from hub.db.errors import describe, transient
from hub.db.models import (
    STAFF_ROLES,
    AccessLog,
    Account,
    AuditEvent,
    Badge,
    EdgeCursor,
    EdgeEvent,
    Machine,
    MachineJob,
    Member,
    QuarantinedEvent,
    UsageSession,
)
from hub.live import usage_view
from hub.metrics import Metrics, RateLimitedLog
from hub.policy.engine import age_at, age_group
from hub.policy.model import PolicyConfig, UsageView
from protocol.messages import (
    Event,
    JobEnded,
    JobStarted,
    JobStartedBody,
    MachineFault,
    MachineRearmed,
    OfflineDecision,
    SessionEnded,
    SessionStarted,
    UsageTick,
    utcnow,
)

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)


#: Most seqs looked at in one go when advancing a cursor past a filled gap.
_ADVANCE_BATCH = 5000

#: Body fields a quarantined event is kept without (personal data).
_WITHHELD = {"badge": "", "job": ""}


@dataclass(frozen=True, slots=True)
class LedgerLimits:
    """Bounds the ledger holds edges to (from :class:`hub.settings.HubSettings`)."""

    #: Events further ahead of the acknowledged seq are quarantined.
    journal_window: int = 1_000_000
    #: Events dated later than the hub's clock plus this are quarantined.
    future: timedelta = timedelta(days=1)
    #: Used time may exceed the session's wall span by this much.
    clock_allowance: timedelta = timedelta(seconds=60)
    #: No session is longer than this.
    max_session: timedelta = timedelta(hours=24)
    #: Edge seconds per wall second (1; more only for the demo's accelerated edges).
    time_scale: float = 1.0


class Poison(Exception):
    """An event refused before it is applied; it is quarantined with ``reason``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Applied:
    """Outcome of applying one event.

    ``ack_through`` is the edge's ``contiguous_through`` after the commit;
    ``max_seen > ack_through`` means a gap is open. ``session`` is the session row
    the event touched (after the change), for the live state.
    """

    edge: str
    seq: int
    duplicate: bool
    ack_through: int
    max_seen: int
    session: UsageView | None = None
    session_edge: str | None = None
    ended: bool = False
    #: Stored and acknowledged but not applied: not about one of this edge's machines.
    foreign: bool = False
    #: Quarantined (not applied); its seq counts as present unless out of the window.
    quarantined: bool = False
    #: The event shows the edge holds the journal the hub has: a duplicate with the
    #: stored event id, or a new event that extends the acknowledged run.
    proves_journal: bool = False
    #: A job started (its record) or ended on ``job_machine`` (for the live state).
    job_machine: str | None = None
    job_started: JobStartedBody | None = None

    @property
    def gap(self) -> bool:
        return self.max_seen > self.ack_through


class Ledger:
    """Applies journal events to the store, one transaction per event.

    Usable without MQTT (tests, the demo, imports): :meth:`apply` is synchronous.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        cfg: PolicyConfig,
        metrics: Metrics | None = None,
        *,
        alerts: EdgeAlerts | None = None,
        limits: LedgerLimits | None = None,
    ) -> None:
        self._factory = factory
        self._cfg = cfg
        self._metrics = metrics or Metrics()
        self._limits = limits or LedgerLimits()
        #: Edges with quarantined events (loaded on first use).
        self._quarantined: set[str] | None = None
        #: Where conflicts and foreign events raise their alerts (and edge liveness).
        self.alerts = alerts or EdgeAlerts(factory, self._metrics)

    # ------------------------------------------------------------------ events

    def apply(self, event: Event, now: datetime | None = None) -> Applied:
        """Insert ``event`` once and apply it; duplicates change nothing.

        Whatever applying it raises, the event is quarantined instead (see the module
        docstring), except when the store is unavailable.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the store is unavailable
                (:func:`hub.db.errors.transient`); nothing was applied (the edge will
                replay the event since it is not acknowledged).
        """
        received = now or utcnow()
        for attempt in (1, 2):
            try:
                with transaction(self._factory) as session:
                    result = self._apply_in(session, event, received)
            except Poison as poison:
                return self._quarantine(event, received, poison.reason, poison.detail)
            except IntegrityError as err:
                if attempt == 2:
                    return self._quarantine(event, received, "apply_failed", describe(err))
                logger.info("concurrent insert of %s#%d; retrying", event.edge, event.seq)
                continue
            except Exception as err:
                if transient(err):
                    raise
                return self._quarantine(event, received, "apply_failed", describe(err))
            self._metrics.inc("events", "duplicate" if result.duplicate else event.type)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def apply_many(self, events: Sequence[Event], now: datetime | None = None) -> list[Applied]:
        """Apply ``events`` in order in ONE transaction (one fsync instead of one each).

        Under a burst (an edge draining its journal after an outage, hundreds of
        edges ticking in the same second) per-event commits are what limits the
        ledger. Should the batch fail as a whole, whatever the exception (a
        constraint race, a poison event), the events are applied one by one so that
        one bad event cannot hold back the others; either way each is applied once.
        When the store is unavailable the events from the first that could not be
        applied on are left out of the result (unacknowledged, the edges replay them).
        """
        if len(events) == 1:
            return [self.apply(events[0], now)]
        received = now or utcnow()
        try:
            with transaction(self._factory) as session:
                results = [self._apply_in(session, e, received) for e in events]
        except Exception as err:
            if transient(err):
                self._metrics.inc("ledger_errors", "store")
                _limited.warning("store", "ledger store unavailable: %s", describe(err))
                return []
            logger.info("batch of %d events failed; applying them one by one", len(events))
            done: list[Applied] = []
            for event in events:
                try:
                    done.append(self.apply(event, received))
                except Exception as one:
                    self._metrics.inc("ledger_errors", "store")
                    _limited.warning("store", "ledger store unavailable: %s", describe(one))
                    break
            return done
        for event, result in zip(events, results, strict=True):
            self._metrics.inc("events", "duplicate" if result.duplicate else event.type)
        return results

    # ------------------------------------------------------------------ quarantine

    def _check(self, cursor: EdgeCursor, event: Event, received: datetime) -> None:
        """Refuse (:class:`Poison`) what the contract cannot bound without the hub's
        clock and the edge's cursor."""
        if event.seq > cursor.contiguous_through + self._limits.journal_window:
            raise Poison(
                "out_of_window",
                f"seq {event.seq} is more than {self._limits.journal_window} "
                f"beyond acknowledged seq {cursor.contiguous_through}",
            )
        latest = received + self._limits.future
        body = event.body
        stated = [event.ts]
        for name in ("started_at", "ended_at"):
            value = getattr(body, name, None)
            if isinstance(value, datetime):
                stated.append(value)
        if max(stated) > latest:
            raise Poison("future", f"dated {max(stated).isoformat()}, after {latest.isoformat()}")

    def _quarantine(self, event: Event, received: datetime, reason: str, detail: str) -> Applied:
        """Keep ``event`` aside, count and alert, and let the cursor move past it."""
        edge, seq = event.edge, event.seq
        with transaction(self._factory) as s:
            cursor = s.get(EdgeCursor, edge)
            if cursor is None:
                cursor = EdgeCursor(edge_id=edge, contiguous_through=0, max_seen=0, epoch=0)
                s.add(cursor)
            if s.get(QuarantinedEvent, (edge, seq)) is not None or (
                s.get(EdgeEvent, (edge, seq)) is not None
            ):
                self._metrics.inc("events", "duplicate")
                return Applied(
                    edge, seq, True, cursor.contiguous_through, cursor.max_seen, quarantined=True
                )
            body: dict[str, Any] = event.body.model_dump(mode="json")
            for key, blank in _WITHHELD.items():
                if body.get(key):
                    body[key] = blank
            self._has_quarantine(s, edge)
            assert self._quarantined is not None
            self._quarantined.add(edge)
            s.add(
                QuarantinedEvent(
                    edge_id=edge,
                    seq=seq,
                    event_id=event.event_id,
                    type=event.type,
                    reason=reason,
                    detail=detail[:200],
                    body=body,
                    ts=event.ts,
                    received_at=received,
                )
            )
            if reason != "out_of_window":
                cursor.max_seen = max(cursor.max_seen or 0, seq)
                if seq == cursor.contiguous_through + 1:
                    s.flush()
                    cursor.contiguous_through = self._advance(s, edge, seq)
            self._metrics.inc("quarantined", reason)
            _limited.warning(
                f"poison:{edge}",
                "edge %s: %s #%d quarantined (%s: %s)",
                edge,
                event.type,
                seq,
                reason,
                detail,
            )
            self.alerts.open_alert(
                s,
                JOURNAL_POISON,
                edge,
                f"edge {edge}: {event.type} seq {seq} quarantined ({reason}: {detail}); "
                "acknowledged, not applied",
                machine=event.body.machine,
            )
            return Applied(
                edge, seq, False, cursor.contiguous_through, cursor.max_seen, quarantined=True
            )

    def _apply_in(self, s: Session, event: Event, received: datetime) -> Applied:
        edge, seq = event.edge, event.seq
        cursor = s.get(EdgeCursor, edge)
        if cursor is None:
            cursor = EdgeCursor(edge_id=edge, contiguous_through=0, max_seen=0, epoch=0)
            s.add(cursor)
        existing: EdgeEvent | QuarantinedEvent | None = s.get(EdgeEvent, (edge, seq))
        if existing is None and self._has_quarantine(s, edge):
            existing = s.get(QuarantinedEvent, (edge, seq))
        if existing is not None:
            same = existing.event_id == event.event_id
            if not same:
                self.alerts.conflict(
                    s,
                    edge,
                    f"seq {seq} seen with event ids {existing.event_id} and {event.event_id}",
                )
            return Applied(
                edge,
                seq,
                True,
                cursor.contiguous_through,
                cursor.max_seen,
                proves_journal=same and seq <= cursor.contiguous_through,
            )
        twin = s.scalar(select(EdgeEvent).where(EdgeEvent.event_id == event.event_id))
        if twin is not None:
            self.alerts.conflict(
                s,
                edge,
                f"event {event.event_id} seen as {twin.edge_id}#{twin.seq} and {edge}#{seq}",
            )
            return Applied(edge, seq, True, cursor.contiguous_through, cursor.max_seen)
        self._check(cursor, event, received)

        s.add(
            EdgeEvent(
                edge_id=edge,
                seq=seq,
                event_id=event.event_id,
                type=event.type,
                body=event.body.model_dump(mode="json"),
                ts=event.ts,
                received_at=received,
            )
        )
        foreign = self._not_its_own(s, event)
        job_machine: str | None = None
        if foreign is None:
            claimed_at = self._claimed_at(s, event)
            row, ended = self._project(s, event)
            if row is not None:
                self._bound_usage(s, row, event, received, claimed_at)
            if isinstance(event, JobStarted | JobEnded):
                job_machine = event.body.machine
        else:
            row, ended = None, False
            self.alerts.foreign_event(
                s, edge, event.body.machine, f"{event.type} #{seq} names {foreign}"
            )
        cursor.max_seen = max(cursor.max_seen or 0, seq)
        extends = seq == cursor.contiguous_through + 1
        if extends:
            s.flush()
            cursor.contiguous_through = self._advance(s, edge, seq)
        return Applied(
            edge,
            seq,
            False,
            cursor.contiguous_through,
            cursor.max_seen,
            session=usage_view(row) if row is not None else None,
            session_edge=row.edge_id if row is not None else None,
            ended=ended,
            foreign=foreign is not None,
            proves_journal=extends and seq > 1,
            job_machine=job_machine,
            job_started=event.body if isinstance(event, JobStarted) else None,
        )

    def _has_quarantine(self, s: Session, edge: str) -> bool:
        """Whether ``edge`` has quarantined events (known in memory: the ledger is the
        one writer of the table, so the common case costs no query per event)."""
        if self._quarantined is None:
            self._quarantined = set(s.scalars(select(QuarantinedEvent.edge_id).distinct()))
        return edge in self._quarantined

    def _advance(self, s: Session, edge: str, through: int) -> int:
        """Highest n >= through such that every seq in (through, n] is stored or
        quarantined."""
        tables = (EdgeEvent, QuarantinedEvent) if self._has_quarantine(s, edge) else (EdgeEvent,)
        while True:
            lists = [
                s.scalars(
                    select(table.seq)
                    .where(table.edge_id == edge, table.seq > through)
                    .order_by(table.seq)
                    .limit(_ADVANCE_BATCH)
                ).all()
                for table in tables
            ]
            full = [seqs[-1] for seqs in lists if len(seqs) == _ADVANCE_BATCH]
            bound = min(full) if full else None
            for n in sorted({seq for seqs in lists for seq in seqs}):
                if bound is not None and n > bound:
                    break
                if n != through + 1:
                    return through
                through = n
            if bound is None:
                return through

    @staticmethod
    def _not_its_own(s: Session, event: Event) -> str | None:
        """Why ``event`` is not about one of its edge's machines (None: it is).

        A session the edge already has on that machine vouches for its ticks, end and
        jobs even if the machine was moved to another edge since; a session of another
        edge never does.
        """
        edge, machine_id = event.edge, event.body.machine
        session_id = (
            None
            if isinstance(event, OfflineDecision | MachineFault | MachineRearmed)
            else event.body.session_id
        )
        if session_id is not None:
            row = s.get(UsageSession, session_id)
            if row is not None and row.edge_id != edge:
                return f"session {session_id} of edge {row.edge_id}"
            if row is not None and row.machine_id == machine_id:
                return None
        machine = s.get(Machine, machine_id)
        if machine is None or machine.edge_id != edge:
            return describe_foreign_machine(machine_id, machine.edge_id if machine else None)
        return None

    # ------------------------------------------------------------------ projections

    def _project(self, s: Session, event: Event) -> tuple[UsageSession | None, bool]:
        """Apply ``event`` to its projection; the session row it touched, and whether
        it ended the session. The match is exhaustive over :data:`protocol.messages.Event`
        (mypy proves it with ``assert_never``): a new event type fails type checking here
        until it has a projection."""
        match event:
            case SessionStarted():
                return self._started(s, event), False
            case UsageTick():
                return self._tick(s, event), False
            case SessionEnded():
                return self._ended(s, event), True
            case OfflineDecision():
                self._offline_decision(s, event)
                return None, False
            case JobEnded():
                self._job(s, event)
                return None, False
            case JobStarted():
                return None, False  # stored as its edge_event row; the live state shows it
            case MachineFault():
                self.alerts.machine_fault(s, event)
                return None, False
            case MachineRearmed():
                self._rearmed(s, event)
                return None, False
            case _:
                assert_never(event)

    def _bound_usage(
        self,
        s: Session,
        row: UsageSession,
        event: Event,
        received: datetime,
        claimed_at: datetime | None = None,
    ) -> None:
        """Clamp ``used_s`` and ``run_s`` to the session's wall span (plus the clock
        allowance) and the longest session; count and alert what was cut.

        The span ends at the session's end, or while it is open at the latest of the
        hub's clock, the event's time and ``claimed_at`` (when a placeholder's used
        time was claimed, by the edge's clock).
        """
        end = row.ended_at or max(received, event.ts, claimed_at or event.ts)
        wall = (end - row.started_at) * self._limits.time_scale
        limit = max(
            0.0, min(wall + self._limits.clock_allowance, self._limits.max_session).total_seconds()
        )
        claimed = max(row.used_s or 0.0, row.run_s or 0.0)
        if claimed <= limit:
            return
        # Beyond the allowance the claim is false, not a clock estimate: cut it to the
        # span itself.
        limit = max(0.0, min(wall, self._limits.max_session).total_seconds())
        row.used_s = min(row.used_s or 0.0, limit)
        if row.run_s is not None:
            row.run_s = min(row.run_s, limit)
        self._metrics.inc("usage_clamped", event.type)
        _limited.warning(
            f"clamp:{event.edge}",
            "edge %s: session %s claims %.0fs of use, clamped to %.0fs (%s #%d)",
            event.edge,
            row.id,
            claimed,
            limit,
            event.type,
            event.seq,
        )
        self.alerts.open_alert(
            s,
            USAGE_CLAMPED,
            event.edge,
            f"edge {event.edge}: session {row.id} on {row.machine_id} claimed {claimed:.0f}s "
            f"of use, more than its {limit:.0f}s wall span; clamped ({event.type} seq "
            f"{event.seq})",
            machine=row.machine_id,
        )

    @staticmethod
    def _claimed_at(s: Session, event: Event) -> datetime | None:
        """For a start completing a placeholder: when (by the edge's clock) the used
        time the placeholder holds was claimed, its estimated start plus that time."""
        if not isinstance(event, SessionStarted):
            return None
        row = s.get(UsageSession, event.body.session_id)
        if row is None or row.badge_hash is not None:
            return None
        return row.started_at + timedelta(seconds=row.used_s or 0.0)

    def _tick(self, s: Session, event: UsageTick) -> UsageSession:
        tick = event.body
        row = self._row_or_placeholder(
            s,
            event.edge,
            tick.session_id,
            tick.machine,
            event.ts - timedelta(seconds=tick.elapsed_s),
        )
        row.used_s = max(row.used_s or 0.0, tick.elapsed_s)
        row.last_minute = max(row.last_minute or 0, tick.minute)
        return row

    def _ended(self, s: Session, event: SessionEnded) -> UsageSession:
        end = event.body
        row = self._row_or_placeholder(
            s,
            event.edge,
            end.session_id,
            end.machine,
            end.ended_at - timedelta(seconds=end.duration_s),
        )
        if row.ended_at is None:
            row.ended_at = end.ended_at
            row.end_reason = end.reason
        row.used_s = max(row.used_s or 0.0, end.duration_s)
        if end.present_s is not None:
            row.present_s = max(row.present_s or 0.0, end.present_s)
        if end.run_s is not None:
            row.run_s = max(row.run_s or 0.0, end.run_s)
        return row

    def _offline_decision(self, s: Session, event: OfflineDecision) -> None:
        d = event.body
        s.add(
            AccessLog(
                ts=event.ts,
                edge_id=event.edge,
                machine_id=d.machine,
                member_id=self._member_of(s, d.badge),
                badge_hash=d.badge,
                req_id=d.req_id,
                granted=d.granted,
                code=d.code,
                offline=True,
                session_id=d.session_id,
            )
        )

    @staticmethod
    @staticmethod
    def _rearmed(s: Session, event: MachineRearmed) -> None:
        """Into the audit trail: who re-armed the machine (the command's staff account)."""
        body = event.body
        actor = role = None
        if body.by is not None:
            account = s.get(Account, body.by)
            actor = account.username if account is not None else f"account {body.by}"
            role = account.role.value if account is not None else None
        s.add(
            AuditEvent(
                at=event.ts,
                actor=actor,
                actor_role=role,
                action="machine_rearmed",
                target=f"machine_id={body.machine}",
                outcome="applied",
                detail=f"edge {event.edge}, command {body.cmd_id}"[:256],
            )
        )

    @staticmethod
    def _member_of(s: Session, badge: str) -> int | None:
        return s.scalar(select(Badge.member_id).where(Badge.hash == badge))

    def _started(self, s: Session, event: SessionStarted) -> UsageSession:
        body = event.body
        member_id = self._member_of(s, body.badge)
        member = s.get(Member, member_id) if member_id is not None else None
        machine = s.get(Machine, body.machine)
        day = body.started_at.astimezone(self._cfg.tz).date()
        fields = {
            "edge_id": event.edge,
            "machine_id": body.machine,
            "zone_id": machine.zone_id if machine else None,
            "member_id": member.id if member else None,
            "badge_hash": body.badge,
            "age_group": (
                age_group(age_at(member.birth_year, member.birth_month, day), self._cfg)
                if member
                else ""
            ),
            "programmes": member.programme_ids if member else [],
            "machine_kind": machine.kind.value if machine else "",
            "offline": body.offline,
            "staff": bool(member and member.role in STAFF_ROLES),
            "req_id": body.req_id,
            "started_at": body.started_at,
            "granted_until": body.ends_at,
        }
        row = s.get(UsageSession, body.session_id)
        if row is None:
            row = UsageSession(id=body.session_id, used_s=0.0, last_minute=0, **fields)
            s.add(row)
            self._attribute_jobs(s, row)
        elif row.badge_hash is None:
            # Placeholder made by a tick or an end that overtook the start: complete it,
            # keeping what they recorded (end, used time, last minute).
            for key, value in fields.items():
                setattr(row, key, value)
            self._attribute_jobs(s, row)
        else:
            _limited.warning(
                f"restart:{body.session_id}",
                "session %s started twice (edge %s seq %d); keeping the first start",
                body.session_id,
                event.edge,
                event.seq,
            )
        return row

    @staticmethod
    def _job(s: Session, event: JobEnded) -> None:
        """One ``machine_job`` row, attributed to its session if the ledger has it.

        The session's member is copied only once its start is known; a job whose
        session has not started yet (or is still a placeholder) is attributed by
        :meth:`_attribute_jobs` when the start arrives. No placeholder session is made
        for a job: it would look like an open session until the start arrives.
        """
        job = event.body
        session = s.get(UsageSession, job.session_id) if job.session_id is not None else None
        zone_id = session.zone_id if session is not None else None
        if zone_id is None:
            machine = s.get(Machine, job.machine)
            zone_id = machine.zone_id if machine else None
        s.add(
            MachineJob(
                edge_id=event.edge,
                seq=event.seq,
                machine_id=job.machine,
                zone_id=zone_id,
                session_id=job.session_id,
                member_id=session.member_id if session is not None else None,
                age_group=session.age_group if session is not None else "",
                job=job.job,
                result=job.result,
                duration_s=job.duration_s,
                filament_mm=job.filament_mm,
                filament_estimated=job.filament_estimated,
                ended_at=job.ended_at,
                controller_user=job.user,
            )
        )

    @staticmethod
    def _attribute_jobs(s: Session, row: UsageSession) -> None:
        """Give jobs that overtook their session's start the session's member, age group
        and zone, as if the start had come first."""
        values: dict[str, object] = {"member_id": row.member_id, "age_group": row.age_group}
        if row.zone_id is not None:
            values["zone_id"] = row.zone_id
        s.execute(update(MachineJob).where(MachineJob.session_id == row.id).values(**values))

    @staticmethod
    def _row_or_placeholder(
        s: Session, edge: str, session_id: str, machine_id: str, started_estimate: datetime
    ) -> UsageSession:
        row = s.get(UsageSession, session_id)
        if row is not None:
            return row
        machine = s.get(Machine, machine_id)
        row = UsageSession(
            id=session_id,
            edge_id=edge,
            machine_id=machine_id,
            zone_id=machine.zone_id if machine else None,
            machine_kind=machine.kind.value if machine else "",
            started_at=started_estimate,
            used_s=0.0,
            last_minute=0,
        )
        s.add(row)
        return row

    # ------------------------------------------------------------------ cursors

    def cursor(self, edge: str) -> tuple[int, int]:
        """``(contiguous_through, max_seen)`` of an edge (zeros if never seen)."""
        with self._factory() as s:
            c = s.get(EdgeCursor, edge)
            return (c.contiguous_through, c.max_seen) if c else (0, 0)

    def open_gaps(self) -> dict[str, int]:
        """Edges with a gap, and their ``contiguous_through``."""
        with self._factory() as s:
            rows = s.execute(
                select(EdgeCursor.edge_id, EdgeCursor.contiguous_through).where(
                    EdgeCursor.max_seen > EdgeCursor.contiguous_through
                )
            ).all()
        return {edge: through for edge, through in rows}
