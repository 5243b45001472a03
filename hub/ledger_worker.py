"""The ledger's worker thread: journal events applied in order, then acknowledged.

:class:`LedgerWorker` is the one thread that writes the ledger (DESIGN §3,
"Exactly-once metering"). paho's network thread only queues what it decoded (journal
events, accepted edge statuses, foreign-request alerts); this thread applies runs of
consecutive events in one transaction (:meth:`hub.ledger.Ledger.apply_many`), statuses
and alerts one at a time (:class:`hub.alerts.EdgeAlerts`), tells the live state and the
snapshot refresher about the sessions that changed, and only after each COMMIT
publishes ``cmd/journal {ack_through}`` (debounced) and ``{replay_from}`` for gaps
still open after ``gap_replay_after_s``. A full queue drops the event, which is not
lost: unacknowledged, the edge replays it.

**Gaps that do not close** are asked again after twice the previous wait, up to
``gap_replay_max_s`` (never a replay request every few seconds forever), and after
``gap_alert_after`` unanswered requests raise one open ``journal_gap`` alert.

**Epochs that go backwards.** A status whose epoch is below the stored one is stale
(a late last will), but an *online* one may also come from an edge that lost its
epoch, or follow a forged status with a huge epoch that would otherwise make the
edge's real statuses stale forever (and its machines ``machine_offline``, across
restarts). Such a status is kept aside and the hub asks the edge to replay from its
last acknowledged seq: when the edge shows it holds the journal the hub has (a replayed
event with the stored event id, or a new event extending the acknowledged run), the
status is accepted, its epoch stored in place of the higher one (``epoch_reset``
alert). An edge the hub has no journal of has nothing to prove and is accepted at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.alerts import EPOCH_RESET, JOURNAL_GAP, EdgeAlerts
from hub.db.errors import describe
from hub.ledger import Applied, Ledger
from hub.live import LiveState, RunningJob
from hub.metrics import Metrics, RateLimitedLog
from hub.policy.model import UsageView
from protocol.messages import EdgeStatus, Event, JournalCommand, MachineState, utcnow

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)

Publish = Callable[[str, JournalCommand], None]


@dataclass(frozen=True, slots=True)
class _Status:
    edge: str
    status: EdgeStatus
    at: datetime
    #: Refused by the epoch rule, but online: accepted once the journal proves it.
    stale: bool = False


@dataclass(frozen=True, slots=True)
class _ForeignRequest:
    edge: str
    machine: str
    what: str


@dataclass(frozen=True, slots=True)
class _MachineState:
    edge: str
    machine: str
    state: MachineState


@dataclass(frozen=True, slots=True)
class _FloodAlert:
    kind: str
    edge: str
    detail: str
    machine: str | None


#: What the worker's queue carries besides events (handled one at a time, in order).
_Item = Event | _Status | _ForeignRequest | _MachineState | _FloodAlert
_NotEvents = (_Status, _ForeignRequest, _MachineState, _FloodAlert)


class LedgerWorker:
    """The one thread that writes the ledger, and publishes acks and replay requests.

    paho's network thread only :meth:`submit`s; this thread applies each event,
    updates the live state after the commit, then (debounced by ``ack_interval_s``,
    or as soon as the queue is idle) publishes ``ack_through`` for each edge that
    sent something, and ``replay_from`` for gaps older than ``gap_replay_after_s``
    (re-armed after each request rather than repeated on every event).
    """

    def __init__(
        self,
        ledger: Ledger,
        publish: Publish,
        *,
        alerts: EdgeAlerts | None = None,
        live: LiveState | None = None,
        metrics: Metrics | None = None,
        ack_interval_s: float = 0.2,
        gap_replay_after_s: float = 5.0,
        gap_replay_max_s: float = 300.0,
        gap_alert_after: int = 5,
        on_session_ended: Callable[[UsageView], None] | None = None,
        not_after: Callable[[], datetime] | None = None,
        max_queue: int = 100_000,
        batch: int = 200,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._ledger = ledger
        #: The hub's clock: when events are received (the ledger's bounds use it).
        self._clock = clock
        self._alerts = alerts or ledger.alerts
        self._batch = max(1, batch)
        self._publish = publish
        #: The freshness bound of each journal command (the hub's clock + command TTL).
        self._not_after = not_after or (lambda: utcnow() + timedelta(seconds=30))
        self._live = live
        self._metrics = metrics or Metrics()
        self._ack_interval = ack_interval_s
        self._gap_after = gap_replay_after_s
        self._gap_max = max(gap_replay_max_s, gap_replay_after_s)
        self._gap_alert_after = max(1, gap_alert_after)
        self._on_ended = on_session_ended
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._ack_due: dict[str, int] = {}
        self._last_ack: dict[str, float] = {}
        #: Edges with an open gap: when the next replay request is due.
        self._gaps: dict[str, float] = {}
        #: Replay requests sent for the open gap, and the seq they asked from.
        self._gap_tries: dict[str, tuple[int, int]] = {}
        self._through: dict[str, int] = {}
        #: Online statuses refused by the epoch rule, waiting for the journal's proof.
        self._stale: dict[str, _Status] = {}
        self._proof_asked: dict[str, float] = {}
        self._max_seen: dict[str, int] = {}
        self._done = threading.Condition()
        self._enqueued = 0
        self._finished = 0

    # ------------------------------------------------------------------ producers

    def submit(self, event: Event) -> bool:
        """Queue an event for the worker (never blocks); False when the queue is full.

        A dropped event is not lost: it is not acknowledged, so the edge replays it.
        """
        return self._put(event)

    def submit_status(
        self, edge: str, status: EdgeStatus, at: datetime, *, stale: bool = False
    ) -> bool:
        """Queue an accepted edge status for persistence (and an ack if it is online);
        ``stale``: an online status the epoch rule refused, to be proven by the journal."""
        return self._put(_Status(edge, status, at, stale))

    def submit_foreign_request(self, edge: str, machine: str, what: str) -> bool:
        """Queue the ``foreign_machine`` alert for a denied access request (see
        :meth:`EdgeAlerts.foreign_request`); the service throttles how often."""
        return self._put(_ForeignRequest(edge, machine, what))

    def submit_machine_state(self, edge: str, machine: str, state: MachineState) -> bool:
        """Queue a machine's accepted retained state for its alerts (running without a
        session, faults resolved: :meth:`EdgeAlerts.machine_state`)."""
        return self._put(_MachineState(edge, machine, state))

    def submit_flood_alert(
        self, kind: str, edge: str, detail: str, machine: str | None = None
    ) -> bool:
        """Queue an ``edge_throttled`` / ``badge_enumeration`` alert (see
        :meth:`EdgeAlerts.flood`); the service rate-limits how often."""
        return self._put(_FloodAlert(kind, edge, detail, machine))

    def _put(self, item: _Item) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._metrics.inc("ledger_dropped", "queue_full")
            _limited.warning("full", "ledger queue full: dropping (the edge will replay)")
            return False
        with self._done:
            self._enqueued += 1
        return True

    def queued(self) -> int:
        """Items waiting for the worker (events, statuses, alerts)."""
        return self._queue.qsize()

    def backlog(self) -> dict[str, int]:
        """Per edge, events seen beyond its acknowledged point (a gap awaiting replay)."""
        through, seen = dict(self._through), dict(self._max_seen)
        return {edge: max(0, seen.get(edge, t) - t) for edge, t in through.items()}

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted before this call has been processed."""
        with self._done:
            target = self._enqueued
            return self._done.wait_for(lambda: self._finished >= target, timeout)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Arm gaps left open before a restart, then start the worker thread."""
        if self._thread is not None:
            return
        now = time.monotonic()
        for edge, through in self._ledger.open_gaps().items():
            self._through[edge] = through
            self._gaps[edge] = now + self._gap_after
        self._thread = threading.Thread(target=self._run, name="ledger-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Process what is queued, publish the last acks, and stop."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("ledger worker did not stop within %.1fs", timeout)
        self._thread = None

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        while True:
            items: list[_Item | None] = []
            try:
                items.append(self._queue.get(timeout=min(self._ack_interval, 0.1)))
                while len(items) < self._batch and items[-1] is not None:
                    items.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            stop = bool(items) and items[-1] is None
            work = [i for i in items if i is not None]
            if work:
                try:
                    self._process_many(work)
                except Exception as err:
                    # Never let one event (or a store outage) kill the worker: the events
                    # stay unacknowledged and the edge replays them.
                    self._metrics.inc("ledger_errors")
                    _limited.warning("process", "ledger failed to apply items: %s", describe(err))
                finally:
                    with self._done:
                        self._finished += len(work)
                        self._done.notify_all()
            if stop:
                self._flush_acks(force=True)
                return
            try:
                self._flush_acks(force=self._queue.empty())
                self._check_gaps()
            except Exception as err:
                self._metrics.inc("ledger_errors")
                _limited.warning("publish", "ledger failed to publish: %s", describe(err))

    def _process_many(self, items: Sequence[_Item]) -> None:
        """Statuses one at a time, runs of consecutive events in one transaction.

        Each status or alert fails alone (counted, logged without values): the events
        and statuses after it are still processed.
        """
        run: list[Event] = []
        for item in [*items, None]:
            if (
                isinstance(item, _Status | _ForeignRequest | _MachineState | _FloodAlert)
                or item is None
            ):
                if run:
                    for applied in self._ledger.apply_many(run, self._clock()):
                        self._after_safely(applied)
                    run = []
                if item is not None:
                    try:
                        self._process(item)
                    except Exception as err:
                        self._metrics.inc("ledger_errors", "status")
                        _limited.warning(
                            "status", "ledger failed to record a status: %s", describe(err)
                        )
            else:
                run.append(item)

    def _process(self, item: _Item) -> None:
        if isinstance(item, _FloodAlert):
            self._alerts.flood(item.kind, item.edge, item.detail, item.machine)
            return
        if isinstance(item, _ForeignRequest):
            self._alerts.foreign_request(item.edge, item.machine, item.what)
            return
        if isinstance(item, _MachineState):
            self._alerts.machine_state(item.edge, item.machine, item.state)
            return
        if isinstance(item, _Status):
            if item.stale:
                self._ask_proof(item)
                return
            if self._alerts.record_status(item.edge, item.status, item.at) and item.status.online:
                self._stale.pop(item.edge, None)
                through, max_seen = self._ledger.cursor(item.edge)
                self._note(item.edge, through, max_seen)
            return
        self._after(self._ledger.apply(item, self._clock()))

    # ------------------------------------------------------------------ epochs

    def _ask_proof(self, item: _Status) -> None:
        """An online status with an older epoch: have the edge prove its journal."""
        edge = item.edge
        self._stale[edge] = item
        through, _max_seen = self._ledger.cursor(edge)
        if through == 0:
            self._reset_epoch(item, "the hub holds no journal of this edge")
            return
        now = time.monotonic()
        if now - self._proof_asked.get(edge, -1e9) < self._gap_after:
            return
        self._proof_asked[edge] = now
        logger.info(
            "edge %s: online with epoch %d below the stored one; asking replay from %d",
            edge,
            item.status.epoch,
            through,
        )
        self._publish(edge, JournalCommand(replay_from=through, not_after=self._not_after()))
        self._metrics.inc("replays_requested", "epoch")

    def _reset_epoch(self, item: _Status, why: str) -> None:
        edge, status = item.edge, item.status
        self._stale.pop(edge, None)
        self._proof_asked.pop(edge, None)
        previous = self._alerts.reset_epoch(edge, status, item.at)
        if self._live is not None:
            self._live.edge_status(edge, status, item.at, force=True)
        self._metrics.inc("epoch_resets")
        logger.warning("edge %s: epoch reset from %s to %d (%s)", edge, previous, status.epoch, why)
        self._alerts.alert(
            EPOCH_RESET,
            edge,
            f"edge {edge}: its epoch went back from {previous} to {status.epoch} ({why}); "
            "a status with a forged epoch, or an edge that lost its state",
        )

    def _after_safely(self, applied: Applied) -> None:
        """:meth:`_after`, failing alone: the next events are still acknowledged."""
        try:
            self._after(applied)
        except Exception as err:
            self._note(applied.edge, applied.ack_through, applied.max_seen)
            self._metrics.inc("ledger_errors", "after")
            _limited.warning("after", "ledger failed after applying an event: %s", describe(err))

    def _after(self, applied: Applied) -> None:
        """Note the cursor, then tell live state and the snapshot refresher."""
        self._note(applied.edge, applied.ack_through, applied.max_seen)
        stale = self._stale.get(applied.edge)
        if stale is not None and applied.proves_journal:
            self._reset_epoch(stale, f"its journal continues at seq {applied.seq}")
        if applied.session is not None and self._live is not None:
            self._live.session_changed(applied.session, applied.session_edge or applied.edge)
        if applied.job_machine is not None and self._live is not None:
            started = applied.job_started
            if started is not None:
                job = RunningJob(started.file_name, started.session_id, utcnow())
                self._live.job_started(applied.job_machine, job)
            else:
                self._live.job_ended(applied.job_machine)
        if (
            applied.ended
            and not applied.duplicate
            and applied.session is not None
            and self._on_ended is not None
        ):
            self._on_ended(applied.session)

    def _note(self, edge: str, through: int, max_seen: int) -> None:
        self._ack_due[edge] = through
        self._through[edge] = through
        self._max_seen[edge] = max_seen
        if max_seen > through:
            self._gaps.setdefault(edge, time.monotonic() + self._gap_after)
        else:
            self._gaps.pop(edge, None)
            self._gap_tries.pop(edge, None)

    def _flush_acks(self, *, force: bool) -> None:
        now = time.monotonic()
        for edge in list(self._ack_due):
            if force or now - self._last_ack.get(edge, 0.0) >= self._ack_interval:
                through = self._ack_due.pop(edge)
                self._publish(
                    edge, JournalCommand(ack_through=through, not_after=self._not_after())
                )
                self._last_ack[edge] = now
                self._metrics.inc("acks_sent")

    def _check_gaps(self) -> None:
        now = time.monotonic()
        for edge, due in list(self._gaps.items()):
            if now < due:
                continue
            first_missing = self._through.get(edge, 0) + 1
            tries, asked_from = self._gap_tries.get(edge, (0, first_missing))
            tries = tries + 1 if asked_from == first_missing else 1  # progress: start over
            self._gap_tries[edge] = (tries, first_missing)
            logger.info(
                "edge %s: gap still open, asking replay from %d (request %d)",
                edge,
                first_missing,
                tries,
            )
            self._publish(
                edge, JournalCommand(replay_from=first_missing, not_after=self._not_after())
            )
            self._gaps[edge] = now + min(self._gap_after * 2**tries, self._gap_max)
            self._metrics.inc("replays_requested")
            if tries == self._gap_alert_after:
                self._gap_alert(edge, first_missing, tries)

    def _gap_alert(self, edge: str, first_missing: int, tries: int) -> None:
        self._metrics.inc("journal_gaps")
        _limited.warning(
            f"gap:{edge}",
            "edge %s: seq %d still missing after %d replays",
            edge,
            first_missing,
            tries,
        )
        self._alerts.alert(
            JOURNAL_GAP,
            edge,
            f"edge {edge}: journal seq {first_missing} still missing after {tries} replay "
            "requests; later events are applied but not acknowledged",
        )
