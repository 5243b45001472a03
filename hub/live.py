"""What is happening now: the single owner of the hub's live state.

:class:`LiveState` is written by paho's network thread (edge status, machine state,
telemetry, decisions), by the ledger worker (sessions, after each commit) and read
by the API. Everything sits behind one lock, held only for dictionary work.

The decision hot path calls :meth:`LiveState.view_for` for every badge request, so
the read side is built to be cheap: the maps a :class:`~hub.policy.model.LiveView`
exposes (open sessions by machine, machines offline, staff present) are
*copy-on-write*: writers build a new dict or frozenset and swap it in, readers hand
out the current object without copying, and nothing handed out is ever mutated
(they are typed read-only ``Mapping``; plain dicts, because copying a dict is several
times faster than copying a ``MappingProxyType``).

Liveness follows the epoch rule (Sparkplug's ``bdSeq``): each edge increments its
epoch before connecting and its last will carries the same epoch, so a status with
an epoch lower than the last one seen comes from an older connection and is ignored.
An edge that goes offline takes all of its machines offline with it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hub.db.models import EdgeCursor, EdgeEvent, StaffPresence, UsageSession
from hub.metrics import Metrics, RateLimitedLog
from hub.policy.model import Decision, Directory, LiveView, UsageView
from protocol.errors import PayloadError, SchemaError
from protocol.messages import Availability, EdgeHealth, EdgeStatus, MachineState, Telemetry, decode

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)

#: How far back a member's sessions are kept in memory (weekly quotas need 7 days).
HISTORY = timedelta(days=8)
#: How many of an edge's latest journal events are searched, at start, for the jobs
#: still running (two weeks of one session's minute ticks: longer than any print).
JOB_LOOKBACK_EVENTS = 20_000

#: Denials remembered per badge (far above any attempt limit: only the count matters).
_DENIALS_PER_BADGE = 64

_UNAVAILABLE = frozenset({Availability.OFFLINE, Availability.FAULT})


def usage_view(row: UsageSession) -> UsageView:
    """The policy engine's view of one ledger row."""
    return UsageView(
        session_id=row.id,
        member_id=row.member_id,
        machine_id=row.machine_id,
        zone_id=row.zone_id or "",
        started_at=row.started_at,
        ended_at=row.ended_at,
        used_s=row.used_s,
    )


@dataclass(frozen=True, slots=True)
class EdgeLiveness:
    """Last accepted status of one edge."""

    epoch: int
    online: bool
    version: str
    machines: tuple[str, ...]
    seen_at: datetime
    #: The health counters of its last online status (None: none sent yet).
    health: EdgeHealth | None = None
    #: Hub→edge messages it dropped (forged, stale…), from its last online status.
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class StaffMark:
    """A staff member marked present in a zone (to be persisted in ``staff_presence``)."""

    member_id: int
    zone_id: str
    since: datetime
    until: datetime


@dataclass(frozen=True, slots=True)
class _Pending:
    view: UsageView
    expires: datetime


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job running on a machine, from its ``job_started`` record (staff-only: the
    file name may name a child)."""

    file_name: str | None
    session_id: str | None
    started_at: datetime


def _running_jobs(session: Session, cursors: Sequence[EdgeCursor]) -> dict[str, RunningJob]:
    """The jobs still running after a hub restart: per machine, a ``job_started`` among
    its edge's latest events with no ``job_ended`` after it (an index range per edge)."""
    jobs: dict[str, RunningJob] = {}
    for c in cursors:
        rows = session.execute(
            select(EdgeEvent.type, EdgeEvent.body, EdgeEvent.ts)
            .where(
                EdgeEvent.edge_id == c.edge_id,
                EdgeEvent.seq > (c.max_seen or 0) - JOB_LOOKBACK_EVENTS,
                EdgeEvent.type.in_(("job_started", "job_ended")),
            )
            .order_by(EdgeEvent.seq)
        )
        for type_, body, ts in rows:
            machine = body.get("machine") if isinstance(body, dict) else None
            if not isinstance(machine, str):
                continue
            if type_ == "job_started":
                name, sid = body.get("file_name"), body.get("session_id")
                jobs[machine] = RunningJob(
                    name if isinstance(name, str) else None,
                    sid if isinstance(sid, str) else None,
                    ts,
                )
            else:
                jobs.pop(machine, None)
    return jobs


class LiveState:
    """Open sessions, recent sessions, machine and edge availability, staff, denials.

    Args:
        attempt_window_s: sliding window in which denials of one badge are counted.
        staff_presence: how long a staff badge-in marks its holder present in a zone.
        pending_ttl: how long a grant reserves its machine until the edge's
            ``session_started`` arrives (the hub must not grant one machine twice
            in the few milliseconds before the journal event comes in).
        history: how far back each member's sessions are kept.
    """

    def __init__(
        self,
        *,
        attempt_window_s: float = 60.0,
        staff_presence: timedelta = timedelta(hours=4),
        pending_ttl: timedelta = timedelta(seconds=15),
        history: timedelta = HISTORY,
        metrics: Metrics | None = None,
        max_denials: int = 10_000,
    ) -> None:
        self._metrics = metrics
        self._max_denials = max(1, max_denials)
        self._lock = threading.Lock()
        self._window = timedelta(seconds=attempt_window_s)
        self._presence = staff_presence
        self._pending_ttl = pending_ttl
        self._history = history
        # sessions
        self._open: dict[str, UsageView] = {}
        self._open_ids: dict[str, tuple[str, str]] = {}  # session id -> (machine, edge)
        self._member_sessions: dict[int, tuple[UsageView, ...]] = {}
        self._pending: dict[str, _Pending] = {}
        # What decisions see: committed open sessions plus pending grants (copy-on-write).
        self._effective: dict[str, UsageView] = {}
        self._pending_members: dict[int, tuple[UsageView, ...]] = {}
        self._pending_soonest: datetime | None = None
        # machines and edges
        self._edges: dict[str, EdgeLiveness] = {}
        self._dir_machine_edge: Mapping[str, str] = {}
        self._states: dict[str, MachineState] = {}
        self._state_edge: dict[str, str] = {}
        self._offline: frozenset[str] = frozenset()
        #: Machines whose edge reports a job running without a session.
        self._foreign: frozenset[str] = frozenset()
        #: The job running on each machine, from its ``job_started`` record (staff only).
        self._jobs: dict[str, RunningJob] = {}
        #: Latest raw telemetry payload per (edge, machine), decoded when read.
        self._telemetry: dict[tuple[str, str], bytes] = {}
        # people
        self._staff: dict[str, dict[int, datetime]] = {}
        self._staff_view: dict[str, frozenset[int]] = {}
        self._staff_valid_until: datetime | None = None
        self._staff_dirty = True
        self._denials: dict[str, deque[datetime]] = {}
        #: The last decision per machine (kiosk screens say why a badge was refused).
        self._last_decision: dict[str, tuple[datetime, Decision]] = {}
        #: Called with a machine id (or "" for "anything") after a change, outside the lock.
        self._listeners: tuple[Callable[[str, str], None], ...] = ()

    # ------------------------------------------------------------------ change notification

    def subscribe(self, listener: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``listener(machine_id, what)`` after each change a screen shows; ``what``
        is ``state``, ``edge``, ``telemetry``, ``session`` or ``decision``; the machine
        is ``""`` when no single machine is concerned (an edge).

        Listeners run on the writer's thread (paho's network thread, the ledger
        worker): they must only note the change and return. Returns the unsubscriber.
        """
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not listener)

        return unsubscribe

    def _notify(self, machine_id: str, what: str) -> None:
        for listener in self._listeners:
            try:
                listener(machine_id, what)
            except Exception:
                _limited.warning("listener", "a live-state listener failed", exc_info=True)

    def last_decision(self, machine_id: str) -> tuple[datetime, Decision] | None:
        """The last access decision sent for ``machine_id`` and when, if any."""
        return self._last_decision.get(machine_id)

    # ------------------------------------------------------------------ loading

    def reload_presence(self, session: Session, now: datetime) -> None:
        """Take staff presence from the store again (an animator marked in or out on the API).

        The caller flushes pending presence marks first, so the store is the truth.
        """
        rows = session.scalars(select(StaffPresence).where(StaffPresence.until > now)).all()
        with self._lock:
            self._staff.clear()
            for p in rows:
                zone = self._staff.setdefault(p.zone_id, {})
                zone[p.member_id] = max(zone.get(p.member_id, p.until), p.until)
            self._staff_dirty = True

    def load(self, session: Session, now: datetime) -> None:
        """Rebuild sessions, staff presence and edge epochs from the store (at start)."""
        since = now - self._history
        rows = session.scalars(
            select(UsageSession).where(
                or_(UsageSession.ended_at.is_(None), UsageSession.started_at >= since)
            )
        ).all()
        presences = session.scalars(select(StaffPresence).where(StaffPresence.until > now)).all()
        cursors = session.scalars(select(EdgeCursor)).all()
        with self._lock:
            open_map: dict[str, UsageView] = {}
            self._open_ids.clear()
            members: dict[int, list[UsageView]] = {}
            for row in sorted(rows, key=lambda r: r.started_at):
                view = usage_view(row)
                if row.ended_at is None:
                    open_map[row.machine_id] = view
                    self._open_ids[row.id] = (row.machine_id, row.edge_id)
                if row.member_id is not None:
                    members.setdefault(row.member_id, []).append(view)
            self._open = open_map
            self._rebuild_effective()
            self._member_sessions = {k: tuple(v) for k, v in members.items()}
            self._staff.clear()
            for p in presences:
                zone = self._staff.setdefault(p.zone_id, {})
                zone[p.member_id] = max(zone.get(p.member_id, p.until), p.until)
            self._staff_dirty = True
            for c in cursors:
                self._edges[c.edge_id] = EdgeLiveness(
                    epoch=c.epoch,
                    online=c.online,
                    version=c.version,
                    machines=(),
                    seen_at=c.last_seen or now,
                )
            self._recompute_offline()
        jobs = _running_jobs(session, cursors)
        with self._lock:
            self._jobs = jobs
        logger.info(
            "live state loaded: %d open sessions, %d members with recent sessions, %d edges",
            len(open_map),
            len(members),
            len(cursors),
        )

    def set_directory(self, directory: Directory) -> None:
        """Learn which edge drives which machine (to take machines offline with their edge)."""
        mapping = {m.id: m.edge_id for m in directory.machines.values()}
        with self._lock:
            self._dir_machine_edge = mapping
            # Forget what was kept about machines the site no longer gives to that edge.
            for machine in [m for m, e in self._state_edge.items() if mapping.get(m) != e]:
                self._states.pop(machine, None)
                self._state_edge.pop(machine, None)
            # (list() first: paho's thread may store telemetry meanwhile, without the lock)
            for key in [k for k in list(self._telemetry) if mapping.get(k[1]) != k[0]]:
                self._telemetry.pop(key, None)
            for machine in [m for m in self._last_decision if m not in mapping]:
                self._last_decision.pop(machine, None)
            self._recompute_offline()

    # ------------------------------------------------------------------ hot path

    def view_for(self, badge: str, member_id: int | None, now: datetime) -> LiveView:
        """Everything the policy engine needs to know about *now* for one badge.

        Costs a few dictionary look-ups: the maps handed out are the current
        copy-on-write objects, never copied here.
        """
        with self._lock:
            if self._pending_soonest is not None and now >= self._pending_soonest:
                self._expire_pending(now)
            member_sessions: tuple[UsageView, ...] = ()
            if member_id is not None:
                member_sessions = self._member_sessions.get(member_id, ())
                pending = self._pending_members.get(member_id)
                if pending:
                    member_sessions = member_sessions + pending
            denials = self._denials.get(badge)
            recent = 0
            if denials:
                horizon = now - self._window
                while denials and denials[0] <= horizon:
                    denials.popleft()
                recent = len(denials)
            return LiveView(
                machines_offline=self._offline,
                machines_foreign=self._foreign,
                open_sessions=self._effective,
                staff_present=self._staff_now(now),
                member_sessions=member_sessions,
                recent_denials=recent,
            )

    def _expire_pending(self, now: datetime) -> None:
        for machine in [m for m, p in self._pending.items() if p.expires <= now]:
            del self._pending[machine]
        self._rebuild_effective()

    def _rebuild_effective(self) -> None:
        """Recompute open sessions + pending grants (after any change to either)."""
        effective = dict(self._open)
        members: dict[int, list[UsageView]] = {}
        for machine, p in self._pending.items():
            effective.setdefault(machine, p.view)
            if p.view.member_id is not None:
                members.setdefault(p.view.member_id, []).append(p.view)
        self._effective = effective
        self._pending_members = {k: tuple(v) for k, v in members.items()}
        self._pending_soonest = min((p.expires for p in self._pending.values()), default=None)

    def _staff_now(self, now: datetime) -> Mapping[str, frozenset[int]]:
        if self._staff_dirty or self._staff_valid_until is None or now >= self._staff_valid_until:
            view: dict[str, frozenset[int]] = {}
            soonest: datetime | None = None
            for zone, members in list(self._staff.items()):
                for mid in [m for m, until in members.items() if until <= now]:
                    del members[mid]
                if not members:
                    del self._staff[zone]
                    continue
                view[zone] = frozenset(members)
                first = min(members.values())
                soonest = first if soonest is None else min(soonest, first)
            self._staff_view = view
            self._staff_valid_until = soonest
            self._staff_dirty = False
        return self._staff_view

    def record_decision(
        self,
        *,
        badge: str,
        machine_id: str,
        zone_id: str,
        decision: Decision,
        session_id: str | None,
        now: datetime,
    ) -> StaffMark | None:
        """Remember a decision just sent: a denial counts against the badge, a grant
        reserves the machine, a staff grant marks presence in its zone.

        Returns the staff presence to persist, if any.
        """
        if machine_id in self._dir_machine_edge:  # nothing kept for unknown machines
            self._last_decision[machine_id] = (now, decision)
        try:
            return self._record_decision(badge, machine_id, zone_id, decision, session_id, now)
        finally:
            self._notify(machine_id, "decision")

    def _record_decision(
        self,
        badge: str,
        machine_id: str,
        zone_id: str,
        decision: Decision,
        session_id: str | None,
        now: datetime,
    ) -> StaffMark | None:
        with self._lock:
            if not decision.granted:
                denials = self._denials.get(badge)
                if denials is None:
                    if len(self._denials) >= self._max_denials:
                        # Bounded whatever a flood of made-up badges does: forget the
                        # badge denied first (dicts keep insertion order).
                        del self._denials[next(iter(self._denials))]
                        if self._metrics is not None:
                            self._metrics.inc("denials_forgotten")
                    denials = self._denials[badge] = deque(maxlen=_DENIALS_PER_BADGE)
                denials.append(now)
                return None
            zone = zone_id
            if session_id is not None:
                self._reserve(
                    UsageView(
                        session_id=session_id,
                        member_id=decision.member_id,
                        machine_id=machine_id,
                        zone_id=zone,
                        started_at=now,
                        ended_at=None,
                        used_s=0.0,
                    ),
                    now + self._pending_ttl,
                )
            if decision.staff and decision.member_id is not None and zone:
                until = now + self._presence
                self._staff.setdefault(zone, {})[decision.member_id] = until
                self._staff_dirty = True
                return StaffMark(decision.member_id, zone, now, until)
            return None

    def _reserve(self, view: UsageView, expires: datetime) -> None:
        """Add a pending grant incrementally (the common case on the hot path)."""
        machine = view.machine_id
        replaced = self._pending.get(machine)
        self._pending[machine] = _Pending(view, expires)
        if machine not in self._open:
            effective = dict(self._effective)
            effective[machine] = view
            self._effective = effective
        if replaced is not None and replaced.view.member_id is not None:
            mid = replaced.view.member_id
            left = tuple(v for v in self._pending_members.get(mid, ()) if v is not replaced.view)
            if left:
                self._pending_members[mid] = left
            else:
                self._pending_members.pop(mid, None)
        if view.member_id is not None:
            self._pending_members[view.member_id] = (
                *self._pending_members.get(view.member_id, ()),
                view,
            )
        # A replaced reservation may have held the soonest expiry: keeping the old,
        # earlier value only makes the next expiry check come a little early.
        if self._pending_soonest is None or expires < self._pending_soonest:
            self._pending_soonest = expires

    # ------------------------------------------------------------------ ledger side

    def session_changed(self, view: UsageView, edge_id: str) -> None:
        """A session row was committed: update open sessions and member history."""
        with self._lock:
            pending = self._pending.get(view.machine_id)
            if pending is not None and pending.view.session_id == view.session_id:
                del self._pending[view.machine_id]
            current = self._open.get(view.machine_id)
            self._session_changed(view, edge_id, current)
            self._rebuild_effective()
        self._notify(view.machine_id, "session")

    def _session_changed(self, view: UsageView, edge_id: str, current: UsageView | None) -> None:
        """Apply a committed session to the open map and member history (lock held)."""
        if view.ended_at is None:
            if current is None or current.started_at <= view.started_at:
                new_open = dict(self._open)
                new_open[view.machine_id] = view
                self._open = new_open
            self._open_ids[view.session_id] = (view.machine_id, edge_id)
        else:
            self._open_ids.pop(view.session_id, None)
            if current is not None and current.session_id == view.session_id:
                new_open = dict(self._open)
                del new_open[view.machine_id]
                self._open = new_open
        if view.member_id is not None:
            old = self._member_sessions.get(view.member_id, ())
            kept = tuple(s for s in old if s.session_id != view.session_id)
            self._member_sessions[view.member_id] = (*kept, view)

    # ------------------------------------------------------------------ edges, machines

    def edge_status(
        self, edge: str, status: EdgeStatus, now: datetime, *, force: bool = False
    ) -> bool:
        """Apply an edge's status under the epoch rule; False when it is stale.

        A status whose epoch is lower than the last accepted one belongs to an
        older connection (typically a late last will) and is ignored, unless
        ``force`` (the edge's journal proved it, see :mod:`hub.ledger_worker`).
        """
        with self._lock:
            known = self._edges.get(edge)
            if known is not None and status.epoch < known.epoch and not force:
                return False
            machines = status.machines or (known.machines if known else ())
            self._edges[edge] = EdgeLiveness(
                epoch=status.epoch,
                online=status.online,
                version=status.version or (known.version if known else ""),
                machines=tuple(machines),
                seen_at=now,
                health=status.health if status.online else None,
                rejected=status.rejected if status.online else 0,
            )
            self._recompute_offline()
        self._notify("", "edge")
        return True

    def edge_epoch(self, edge: str) -> int | None:
        """The epoch of the edge's last accepted status (None if never seen)."""
        with self._lock:
            known = self._edges.get(edge)
            return None if known is None else known.epoch

    def machine_state(self, edge: str, machine: str, state: MachineState | None) -> bool:
        """Record a machine's retained state (None: the retained state was cleared).

        A state about a machine the site gives to another edge, or does not know, is
        ignored (False): a misconfigured or hostile edge must not show another edge's
        machine as free, in use or offline, nor fill the hub with made-up machines.
        """
        with self._lock:
            owner = self._dir_machine_edge.get(machine)
            if owner is None:
                # Nothing is kept for a machine the site does not know: a flood of
                # made-up ids must neither grow the hub nor slow every edge's states.
                if self._metrics is not None:
                    self._metrics.inc("unknown_machine", "state")
                _limited.warning(
                    f"unknown-state:{edge}",
                    "edge %s published the state of %s, a machine this site does not know: ignored",
                    edge,
                    machine[:64],
                )
                return False
            if owner != edge:
                _limited.warning(
                    f"foreign-state:{edge}",
                    "edge %s published the state of %s, a machine of edge %s: ignored",
                    edge,
                    machine,
                    owner,
                )
                return False
            if state is None:
                self._states.pop(machine, None)
                self._state_edge.pop(machine, None)
            else:
                self._states[machine] = state
                self._state_edge[machine] = edge
            self._recompute_offline()
        self._notify(machine, "state")
        return True

    def telemetry(self, edge: str, machine: str, payload: bytes) -> bool:
        """Keep the latest raw telemetry of a machine (metering never uses it); False
        (nothing kept) unless the site gives ``machine`` to ``edge``.

        A dict store under the GIL, no lock and no decoding: this runs for every
        telemetry message on the network thread. Only known machines are kept, so
        the map holds at most one payload per machine of the site.
        """
        if self._dir_machine_edge.get(machine) != edge:
            if self._metrics is not None:
                self._metrics.inc("unknown_machine", "tele")
            return False
        self._telemetry[(edge, machine)] = payload
        if self._listeners:
            self._notify(machine, "telemetry")
        return True

    def job_started(self, machine: str, job: RunningJob) -> None:
        """A job started on ``machine`` (its ``job_started`` journal record)."""
        with self._lock:
            self._jobs[machine] = job
        self._notify(machine, "state")

    def job_ended(self, machine: str) -> None:
        """The job on ``machine`` ended (its ``job_ended`` record)."""
        with self._lock:
            found = self._jobs.pop(machine, None)
        if found is not None:
            self._notify(machine, "state")

    def running_jobs(self) -> dict[str, RunningJob]:
        """The job running on each machine, as its ``job_started`` record said."""
        with self._lock:
            return dict(self._jobs)

    def _edge_of(self, machine: str) -> str | None:
        for edge, live in self._edges.items():
            if machine in live.machines:
                return edge
        return self._dir_machine_edge.get(machine) or self._state_edge.get(machine)

    def _recompute_offline(self) -> None:
        offline_edges = {e for e, live in self._edges.items() if not live.online}
        offline: set[str] = set()
        if offline_edges:
            owners = self._dir_machine_edge
            for edge in offline_edges:
                # An edge's own list, except machines the site gives to another edge.
                offline.update(m for m in self._edges[edge].machines if owners.get(m, edge) == edge)
            offline.update(m for m, e in self._dir_machine_edge.items() if e in offline_edges)
            offline.update(m for m, e in self._state_edge.items() if e in offline_edges)
        offline.update(m for m, s in self._states.items() if s.availability in _UNAVAILABLE)
        if offline != self._offline:
            self._offline = frozenset(offline)
        foreign = frozenset(
            m for m, s in self._states.items() if s.detail is not None and s.detail.foreign_job
        )
        if foreign != self._foreign:
            self._foreign = foreign

    # ------------------------------------------------------------------ readers

    def machines_offline(self) -> frozenset[str]:
        with self._lock:
            return self._offline

    def machine_states(self) -> dict[str, MachineState]:
        with self._lock:
            return dict(self._states)

    def latest_telemetry(self) -> dict[tuple[str, str], Telemetry]:
        """The latest valid telemetry per (edge, machine); invalid payloads are dropped
        (logged and counted as bad ``telemetry`` messages)."""
        raw = dict(self._telemetry)
        out: dict[tuple[str, str], Telemetry] = {}
        for (edge, machine), payload in raw.items():
            try:
                tele = decode(Telemetry, payload)
                if tele.machine != machine:
                    raise SchemaError(
                        f"telemetry names machine {tele.machine!r}, topic {machine!r}"
                    )
            except PayloadError as err:
                if self._metrics is not None:
                    self._metrics.inc("bad_messages", "telemetry")
                _limited.warning("tele", "bad telemetry from %s/%s: %s", edge, machine, err)
                if self._telemetry.get((edge, machine)) is payload:
                    del self._telemetry[(edge, machine)]
                continue
            out[(edge, machine)] = tele
        return out

    def machine_telemetry(self) -> dict[str, Telemetry]:
        """The latest valid telemetry per machine, from the edge the site gives it to
        (like :meth:`machine_state`, another edge never speaks for it)."""
        owners = self._dir_machine_edge
        return {
            machine: tele
            for (edge, machine), tele in self.latest_telemetry().items()
            if owners.get(machine, edge) == edge
        }

    def edges_online(self) -> dict[str, bool]:
        with self._lock:
            return {e: live.online for e, live in self._edges.items()}

    def edge_health(self) -> dict[str, EdgeHealth]:
        """The health counters each online edge last reported."""
        with self._lock:
            return {e: live.health for e, live in self._edges.items() if live.health is not None}

    def edge_rejected(self) -> dict[str, int]:
        """How many hub→edge messages each online edge says it dropped (forged, stale…)."""
        with self._lock:
            return {e: live.rejected for e, live in self._edges.items() if live.online}

    def edges(self) -> dict[str, EdgeLiveness]:
        with self._lock:
            return dict(self._edges)

    def open_sessions(self) -> Mapping[str, UsageView]:
        """Open sessions by machine (committed ones only, not pending grants)."""
        with self._lock:
            return self._open

    def unattended_sessions(self) -> frozenset[str]:
        """Machines whose open session goes on without its member: they badged out (or
        their time ended) while a job runs, and the edge reports the session
        ``ending`` (a print finishing by itself). The ledger keeps them open until the
        job is done; counts of people at the machines leave them out."""
        with self._lock:
            return frozenset(
                machine
                for machine, view in self._open.items()
                if (state := self._states.get(machine)) is not None
                and state.session_id in (None, view.session_id)
                and state.detail is not None
                and state.detail.state == "ending"
            )

    def open_session(self, session_id: str) -> tuple[UsageView, str] | None:
        """An open session and the edge it runs on, or None."""
        with self._lock:
            where = self._open_ids.get(session_id)
            if where is None:
                return None
            machine, edge = where
            view = self._open.get(machine)
            if view is None or view.session_id != session_id:
                # Still open in the ledger but superseded on its machine: find it anyway.
                for views in self._member_sessions.values():
                    for s in views:
                        if s.session_id == session_id and s.ended_at is None:
                            return s, edge
                return None
            return view, edge

    def member_sessions(self) -> dict[int, tuple[UsageView, ...]]:
        """Every member's sessions of the history window (for snapshot compilation)."""
        with self._lock:
            return dict(self._member_sessions)

    def staff_present(self, now: datetime) -> Mapping[str, frozenset[int]]:
        with self._lock:
            return self._staff_now(now)

    def housekeeping(self, now: datetime) -> None:
        """Drop expired denials, reservations and sessions older than the history."""
        with self._lock:
            horizon = now - self._window
            for badge in list(self._denials):
                d = self._denials[badge]
                while d and d[0] <= horizon:
                    d.popleft()
                if not d:
                    del self._denials[badge]
            self._expire_pending(now)
            cutoff = now - self._history
            for mid in list(self._member_sessions):
                kept = tuple(
                    s
                    for s in self._member_sessions[mid]
                    if s.ended_at is None or s.started_at >= cutoff
                )
                if kept:
                    self._member_sessions[mid] = kept
                else:
                    del self._member_sessions[mid]
            self._staff_dirty = True
