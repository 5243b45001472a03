"""What the hub tells InfluxDB: facts queued by the hub, turned into points off its paths.

:class:`TelemetryFeed` is fed by the hub's threads with plain tuples appended to
one bounded deque (an append is a fraction of a microsecond: the badge decision
path pays nothing more), and its own thread turns them into points:

* access decisions (``access``), as the hub answers;
* ended sessions (``session``), read back from the ledger by id after the commit:
  the SQL ledger is the truth, and a session point is the same function of the
  ledger row live and in ``fabrique telemetry backfill``;
* print jobs (``job``), from ``job_ended`` events (timestamped with the job's end,
  so a replayed duplicate overwrites its own point);
* printer and laser telemetry (``printer``, ``laser``), from the raw ``tele`` payloads;
* every minute, occupancy per zone (``occupancy``) and edge health (``edge``:
  online, clock offset measured on telemetry and events, and the journal backlog
  as the hub sees it: events received and not yet acknowledged).

When the deque is full new facts are dropped and counted (``telemetry_dropped``);
the writer (:mod:`hub.telemetry.writer`) bounds what waits for InfluxDB the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hub.db.models import MachineJob, UsageSession
from hub.live import LiveState
from hub.metrics import Metrics, RateLimitedLog
from hub.policy.model import Directory
from hub.telemetry import points
from protocol.errors import PayloadError
from protocol.messages import Event, JobEnded, Telemetry, decode

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)

_ACCESS, _SESSION, _TELE, _EVENT, _ACK, _EDGE = range(6)

#: Machine kinds whose telemetry becomes points, and the builder of each.
_TELE_KINDS = {"printer": points.printer_line, "laser": points.laser_line}


class LineSink(Protocol):
    """Where lines go (:class:`hub.telemetry.writer.InfluxWriter`)."""

    def submit(self, lines: Sequence[str]) -> int: ...


def session_lines(site: str, rows: Iterable[UsageSession]) -> list[str]:
    """The ``session`` points of ended ledger rows (open ones are skipped)."""
    return [
        points.session_line(
            site,
            ended_at=row.ended_at,
            zone=row.zone_id,
            machine=row.machine_id,
            machine_kind=row.machine_kind,
            age_group=row.age_group,
            programmes=row.programmes or (),
            offline=row.offline,
            staff=row.staff,
            end_reason=row.end_reason.value if row.end_reason is not None else None,
            used_s=row.used_s,
            run_s=row.run_s,
        )
        for row in rows
        if row.ended_at is not None
    ]


def job_lines(site: str, rows: Iterable[MachineJob]) -> list[str]:
    """The ``job`` points of ledger job rows."""
    return [
        points.job_line(
            site,
            ended_at=row.ended_at,
            machine=row.machine_id,
            result=row.result.value,
            duration_s=row.duration_s,
            filament_mm=row.filament_mm,
        )
        for row in rows
    ]


class TelemetryFeed:
    """Queues the hub's facts and writes them as points from one thread.

    Args:
        site: the site tag of every point.
        sink: the writer.
        factory: the store (ended sessions are read back by id).
        live: the live state (occupancy, edges).
        directory: returns the directory decisions use now (machine kinds, zones).
        tz: the site's time zone (occupancy's local weekday and hour).
        capacity: facts queued at most; beyond, dropped and counted.
        period_s: how often the thread drains the queue.
        minute_s: period of occupancy and edge health points.
    """

    def __init__(
        self,
        site: str,
        sink: LineSink,
        factory: sessionmaker[Session],
        live: LiveState,
        directory: Callable[[], Directory],
        *,
        tz: ZoneInfo,
        metrics: Metrics | None = None,
        capacity: int = 200_000,
        period_s: float = 0.5,
        minute_s: float = 60.0,
    ) -> None:
        self.site = site
        self._sink = sink
        self._factory = factory
        self._live = live
        self._directory = directory
        self._tz = tz
        self._metrics = metrics or Metrics()
        self._capacity = capacity
        self._period = period_s
        self._minute = minute_s
        self._queue: deque[tuple[object, ...]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._offsets: dict[str, float] = {}
        self._max_seq: dict[str, int] = {}
        self._acked: dict[str, int] = {}

    # ------------------------------------------------------------------ producers (hub threads)

    def queued(self) -> int:
        """Facts waiting for the feed's thread."""
        return len(self._queue)

    def _put(self, item: tuple[object, ...]) -> None:
        if len(self._queue) >= self._capacity:
            self._metrics.inc("telemetry_dropped", "queue_full")
            return
        self._queue.append(item)

    def access(
        self,
        when: datetime,
        *,
        granted: bool,
        reason: str,
        age_group: str | None,
        zone: str | None,
        machine: str,
    ) -> None:
        """A badge decision was answered (decision path: one append)."""
        self._put((_ACCESS, when, granted, reason, age_group, zone, machine))

    def session_ended(self, session_id: str) -> None:
        """A session ended and is committed; its point is read back from the ledger."""
        self._put((_SESSION, session_id))

    def telemetry(self, edge: str, machine: str, payload: bytes) -> None:
        """A raw ``tele`` payload arrived (decoded on the feed's thread)."""
        self._put((_TELE, edge, machine, payload, time.time()))

    def event(self, edge: str, event: Event) -> None:
        """A journal event arrived (for jobs, the clock offset and the backlog)."""
        self._put((_EVENT, edge, event, time.time()))

    def acknowledged(self, edge: str, through: int) -> None:
        """The hub acknowledged ``edge``'s journal through ``through``."""
        self._put((_ACK, edge, through))

    def edge_changed(self, edge: str, when: datetime) -> None:
        """An edge's status changed: write its health now."""
        self._put((_EDGE, edge, when))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="telemetry-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout)
        self._thread = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued before this call was handed to the writer."""
        deadline = time.monotonic() + timeout
        while self._queue:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        with self._idle:  # the pass that took the last items has finished
            return True

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        next_minute = (time.time() // self._minute + 1) * self._minute
        while True:
            stopping = self._stop.wait(self._period)
            try:
                with self._idle:
                    self._drain()
                    if time.time() >= next_minute:
                        self._tick(datetime.fromtimestamp(next_minute, UTC))
                        next_minute = (time.time() // self._minute + 1) * self._minute
            except Exception:
                self._metrics.inc("telemetry_errors")
                _limited.warning("feed", "telemetry feed failed", exc_info=True)
            if stopping:
                return

    def _drain(self) -> None:
        queue = self._queue
        lines: list[str] = []
        ended: list[str] = []
        directory = self._directory()
        while queue:
            item = queue.popleft()
            kind = item[0]
            try:
                if kind == _ACCESS:
                    _k, when, granted, reason, age, zone, machine = item
                    known = directory.machines.get(str(machine))
                    lines.append(
                        points.access_line(
                            self.site,
                            when,  # type: ignore[arg-type]
                            granted=bool(granted),
                            reason=str(reason),
                            age_group=age,  # type: ignore[arg-type]
                            zone=zone or (known.zone_id if known else None),  # type: ignore[arg-type]
                            machine=str(machine),
                            machine_kind=known.kind if known else None,
                        )
                    )
                elif kind == _SESSION:
                    ended.append(str(item[1]))
                elif kind == _TELE:
                    line = self._tele(directory, *item[1:])  # type: ignore[arg-type]
                    if line is not None:
                        lines.append(line)
                elif kind == _EVENT:
                    line = self._event(*item[1:])  # type: ignore[arg-type]
                    if line is not None:
                        lines.append(line)
                elif kind == _ACK:
                    self._acked[str(item[1])] = int(item[2])  # type: ignore[call-overload]
                elif kind == _EDGE:
                    lines.extend(self._edge_lines(item[2], [str(item[1])]))  # type: ignore[arg-type]
            except (ValueError, TypeError) as err:
                self._metrics.inc("telemetry_dropped", "invalid")
                _limited.warning("invalid", "telemetry point refused: %s", err)
        if ended:
            try:
                lines.extend(self._sessions(ended))
            except SQLAlchemyError:
                # The ledger keeps them: `fabrique telemetry backfill` writes them later.
                self._metrics.inc("telemetry_dropped", "ledger_unreadable", len(ended))
                _limited.warning("ledger", "telemetry: cannot read %d ended session(s)", len(ended))
        if lines:
            self._sink.submit(lines)

    def _tele(
        self, directory: Directory, edge: str, machine: str, payload: bytes, received: float
    ) -> str | None:
        known = directory.machines.get(machine)
        if known is None or known.edge_id != edge:
            return None
        try:
            tele = decode(Telemetry, payload)
        except PayloadError:
            return None  # counted by the live state, which reads the same payloads
        self._offsets[edge] = tele.ts.timestamp() - received
        build = _TELE_KINDS.get(known.kind)
        if build is None:
            return None
        return build(self.site, machine, tele.ts, tele.values)

    def _event(self, edge: str, event: Event, received: float) -> str | None:
        self._max_seq[edge] = max(self._max_seq.get(edge, 0), event.seq)
        if received - event.ts.timestamp() < 5.0:
            self._offsets[edge] = event.ts.timestamp() - received  # a live event, not a replay
        if isinstance(event, JobEnded):
            job = event.body
            return points.job_line(
                self.site,
                ended_at=job.ended_at,
                machine=job.machine,
                result=job.result.value,
                duration_s=job.duration_s,
                filament_mm=job.filament_mm,
            )
        return None

    def _sessions(self, ids: list[str]) -> list[str]:
        with self._factory() as s:
            rows = s.scalars(select(UsageSession).where(UsageSession.id.in_(ids))).all()
            return session_lines(self.site, rows)

    def _edge_lines(self, when: datetime, edges: Iterable[str]) -> list[str]:
        known = self._live.edges()
        lines = []
        for edge in edges:
            liveness = known.get(edge)
            if liveness is None:
                continue
            seen = self._max_seq.get(edge)
            backlog = max(0, seen - self._acked.get(edge, 0)) if seen is not None else None
            lines.append(
                points.edge_line(
                    self.site,
                    edge,
                    when,
                    online=liveness.online,
                    clock_offset_s=self._offsets.get(edge),
                    backlog=backlog,
                )
            )
        return lines

    def _tick(self, when: datetime) -> None:
        directory = self._directory()
        open_by_machine = self._live.open_sessions()
        lines = []
        for zone in sorted(directory.zones):
            machines = [m for m in directory.machines.values() if m.zone_id == zone]
            in_use = sum(1 for m in machines if m.id in open_by_machine)
            sessions = sum(1 for v in open_by_machine.values() if v.zone_id == zone)
            lines.append(
                points.occupancy_line(
                    self.site,
                    when,
                    self._tz,
                    zone=zone,
                    sessions=sessions,
                    machines=len(machines),
                    in_use=in_use,
                )
            )
        lines.extend(self._edge_lines(when, sorted(self._live.edges())))
        if lines:
            self._sink.submit(lines)
