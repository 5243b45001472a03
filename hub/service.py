"""The running hub: policy decisions, ledger, live state and snapshots over MQTT.

:class:`Hub` wires the parts together and implements :class:`hub.control.HubControl`
for the API. Who runs where:

* **paho's network thread** (:mod:`hub.mqtt`) decodes every message and calls the
  ``on_*`` handlers below. Badge requests are decided right there, in memory (the
  directory and the live state; no SQL), and answered on ``cmd/access`` with the
  request's ``req_id``; the identified log row goes to the access-log writer's queue.
  Journal events go to the ledger worker's queue; statuses, states and telemetry
  update the live state.
* **the ledger worker** (:mod:`hub.ledger_worker`) applies journal events to the
  ledger (:mod:`hub.ledger`) in one transaction per run of events, persists edge
  statuses and alerts (:mod:`hub.alerts`), then acknowledges and asks for replays.
* **the access-log writer** (:mod:`hub.accesslog`) batches log rows into the store.
* **the snapshot refresher** (:mod:`hub.snapshots`) has every edge's offline policy
  snapshot recompiled in a worker process and republished when it changed; the hub
  asks it after each reference change and on every (re)connection.

The constructor only assigns; :meth:`Hub.start` loads the store and connects,
:meth:`Hub.stop` announces the hub offline and stops every thread.
"""

from __future__ import annotations

import logging
import random
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self
from uuid import UUID, uuid4

from sqlalchemy.orm import Session, sessionmaker

from hub.accesslog import AccessEntry, AccessLogWriter
from hub.alerts import BADGE_ENUMERATION, EDGE_THROTTLED, EdgeAlerts, describe_foreign_machine
from hub.answered import AnsweredRequests
from hub.commands import CommandWaiters, PendingCommand
from hub.db.engine import transaction
from hub.db.errors import describe
from hub.directory import load_directory, policy_config
from hub.edgecmd import EdgeCommands
from hub.edgekeys import EdgeKeys
from hub.enrolment import (
    CODE_ALREADY_ENROLLED,
    CODE_ENROLLED,
    Enrolment,
    Enrolments,
    EnrolState,
    already_enrolled_message,
    bind_badge,
    enrolled_message,
)
from hub.exposition import Gauges, MetricsServer, registry_for
from hub.ledger import Ledger, LedgerLimits
from hub.ledger_worker import LedgerWorker
from hub.live import LiveState
from hub.metrics import Metrics, RateLimitedLog
from hub.mqtt import HubMqtt
from hub.policy import engine, snapshot, texts
from hub.policy.model import (
    AccessQuery,
    Decision,
    Directory,
    LiveView,
    PolicyConfig,
    UsageView,
)
from hub.retention import RetentionJob
from hub.settings import HubSettings
from hub.snapshots import CompileFn, SnapshotPublisher, settle_heap
from hub.telemetry import InfluxWriter, TelemetryFeed
from hub.telemetry import build as build_telemetry
from hub.throttle import ReaderGuard, edge_throttle
from protocol.messages import (
    AccessDecision,
    AccessRequest,
    BreakRule,
    CommandOutcome,
    EdgeStatus,
    Event,
    JournalCommand,
    MachineAction,
    MachineCommand,
    MachineState,
    PolicySnapshot,
    SessionAction,
    SessionCommand,
    Telemetry,
    utcnow,
)
from protocol.topics import Topics

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)

DecideFn = Callable[[AccessQuery, Directory, LiveView, PolicyConfig], Decision]

#: At most one ``foreign_machine`` alert write per edge this often (seconds): a
#: misconfigured edge may ask for a foreign machine at every badge.
FOREIGN_ALERT_INTERVAL_S = 60.0

INTERNAL_ERROR = "internal_error"


def ledger_limits(settings: HubSettings) -> LedgerLimits:
    """The ledger's bounds on what edges report, from the settings."""
    return LedgerLimits(
        journal_window=settings.journal_window,
        future=timedelta(seconds=settings.event_future_s),
        clock_allowance=timedelta(seconds=settings.usage_clock_allowance_s),
        max_session=timedelta(hours=settings.session_max_h),
        time_scale=settings.demo_time_scale,
    )


class Hub:
    """The hub service of one site (implements :class:`hub.control.HubControl`).

    Args:
        settings: the hub's settings.
        factory: session factory of the migrated store.
        decide: the policy function (default :func:`hub.policy.engine.decide`).
        compile_snapshot: the snapshot compiler (default
            :func:`hub.policy.snapshot.compile_snapshot`).
        clock: the time source (tests pin it).
        refresh_interval_s: how often snapshots are recompiled regardless.
        session_refresh_s: how soon after a session ends the snapshots of its zone
            are recompiled (remaining quotas changed).
        snapshot_workers: worker processes compiling snapshots (0: compile in the
            refresher thread, for tests and injected compilers).
        version: software version announced in ``hub/status``.
    """

    def __init__(
        self,
        settings: HubSettings,
        factory: sessionmaker[Session],
        *,
        decide: DecideFn | None = None,
        compile_snapshot: CompileFn | None = None,
        clock: Callable[[], datetime] = utcnow,
        refresh_interval_s: float = 600.0,
        session_refresh_s: float = 30.0,
        snapshot_workers: int = 1,
        version: str = "",
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.site)
        self.metrics = Metrics()
        self.waiters = CommandWaiters(settings.command_outcome_wait_s)
        self._factory = factory
        self._decide: DecideFn = decide or engine.decide
        self._clock = clock
        self._cfg: PolicyConfig = policy_config(settings)
        self._decision_ttl = timedelta(seconds=settings.decision_ttl_s)
        self._directory = Directory(
            members={}, badges={}, machines={}, zones={}, slots=(), exceptions=(), quotas={}
        )
        self.live = LiveState(
            attempt_window_s=settings.attempt_window_s,
            staff_presence=timedelta(hours=settings.staff_presence_h),
            pending_ttl=timedelta(seconds=settings.decision_ttl_s + 5.0),
            metrics=self.metrics,
            max_denials=settings.denials_max,
        )
        self.alerts = EdgeAlerts(factory, self.metrics)
        self.ledger = Ledger(
            factory, self._cfg, self.metrics, alerts=self.alerts, limits=ledger_limits(settings)
        )
        self.accesslog = AccessLogWriter(
            factory,
            retention_days=settings.access_log_retention_days,
            metrics=self.metrics,
            clock=clock,
        )
        self.retention = RetentionJob(
            factory,
            retention_days=settings.identified_retention_days,
            tz=settings.tz,
            interval_s=settings.retention_interval_s,
            clock=clock,
        )
        self.throttle = edge_throttle(settings, on_throttled=self._throttled)
        self.readers = ReaderGuard(
            limit=settings.enumeration_limit,
            window_s=settings.enumeration_window_s,
            cooldown_s=settings.enumeration_cooldown_s,
        )
        self.mqtt = HubMqtt(settings, self, self.metrics, version=version, throttle=self.throttle)
        self.edge_keys = EdgeKeys(
            settings.edge_keys_dir,
            demo_secret=settings.site_secret_bytes if settings.demo else None,
        )
        self.commands = EdgeCommands(self.mqtt, self.topics, self.edge_keys, self.metrics)
        self.snapshots = SnapshotPublisher(
            settings,
            self._cfg,
            directory=lambda: self._directory,
            live=self.live,
            publish=self.mqtt.publish_paced,
            keys=self.edge_keys.key,
            metrics=self.metrics,
            compile_snapshot=compile_snapshot or snapshot.compile_snapshot,
            clock=clock,
            refresh_interval_s=refresh_interval_s,
            session_refresh_s=session_refresh_s,
            workers=snapshot_workers,
        )
        self.worker = LedgerWorker(
            self.ledger,
            self._publish_journal,
            alerts=self.alerts,
            live=self.live,
            metrics=self.metrics,
            ack_interval_s=settings.ack_interval_s,
            gap_replay_after_s=settings.gap_replay_after_s,
            gap_replay_max_s=settings.gap_replay_max_s,
            gap_alert_after=settings.gap_alert_after,
            on_session_ended=self._sessions_changed,
            clock=clock,
            not_after=lambda: self._clock() + timedelta(seconds=settings.command_ttl_s),
        )
        # Pseudonymous time series (None unless influx_url is set): fed off every path.
        telemetry = build_telemetry(settings, factory, self.live, self._current, self.metrics)
        self.telemetry: TelemetryFeed | None = telemetry[0] if telemetry else None
        self._influx: InfluxWriter | None = telemetry[1] if telemetry else None
        self._ref_lock = threading.Lock()
        self._started = False
        self._ids = random.Random(secrets.randbits(128))
        self._ids_lock = threading.Lock()
        self._foreign_alerted: dict[str, float] = {}
        # A QoS 1 duplicate of a request gets the same answer (one grant, one log row).
        self._answered = AnsweredRequests(ttl_s=2 * settings.decision_ttl_s + 30.0)
        self.enrolments = Enrolments()
        self.registry = registry_for(self.metrics, self.gauges)
        self.metrics_server = (
            MetricsServer(self.registry, settings.metrics_port)
            if settings.metrics_port is not None
            else None
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load the directory and live state, start the workers, connect to the broker."""
        if self._started:
            return
        # The badge answers' thread must not wait behind the ledger's for the GIL.
        sys.setswitchinterval(self.settings.gil_switch_interval_s)
        now = self._clock()
        with transaction(self._factory) as session:
            self._directory = load_directory(session, version=1)
            self.live.load(session, now)
        self.live.set_directory(self._directory)
        settle_heap()
        self.accesslog.start()
        self.worker.start()
        self.retention.start()
        if self.telemetry is not None and self._influx is not None:
            self._influx.start()
            self.telemetry.start()
        keyed = self.edge_keys.edges()
        if not keyed and not self.settings.demo:
            logger.warning(
                "no edge key in %s: the hub sends nothing to an edge without one "
                "(fabrique hub edge-key EDGE)",
                self.settings.edge_keys_dir,
            )
        self.snapshots.start()
        self.mqtt.start()
        if self.metrics_server is not None:
            self.metrics_server.start()
        self._started = True
        logger.info(
            "hub %s started: %d machines, %d members",
            self.settings.site,
            len(self._directory.machines),
            len(self._directory.members),
        )

    def stop(self) -> None:
        """Stop refreshing, apply and acknowledge queued events, announce offline, flush logs."""
        if not self._started:
            return
        if self.metrics_server is not None:
            self.metrics_server.stop()
        self.snapshots.stop()
        self.retention.stop()
        self.worker.stop()
        self.mqtt.stop()
        self.accesslog.stop()
        if self.telemetry is not None and self._influx is not None:
            self.telemetry.stop()
            self._influx.stop()  # flushes what is buffered
        self._started = False
        logger.info("hub %s stopped", self.settings.site)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def directory(self) -> Directory:
        """The directory decisions currently use."""
        return self._directory

    def _current(self) -> Directory:
        return self._directory

    # ------------------------------------------------------------------ MQTT handlers

    def on_connected(self) -> None:
        """Have every compiled snapshot republished, in case the broker lost its retained copy."""
        self.snapshots.republish()

    def on_access_request(self, edge: str, request: AccessRequest, received: float) -> None:
        """Decide in memory and answer on ``cmd/access`` with the request's ``req_id``.

        A request already answered (a QoS 1 duplicate: same edge and ``req_id``) gets
        the same answer again, and is neither decided nor logged a second time.
        """
        again = self._answered.get(edge, request.req_id)
        if again is not None:
            self.metrics.inc("duplicate_requests")
            self.commands.send(edge, again)
            return
        now = self._clock()
        enrolment = self.enrolments.capture(request.machine, edge, request.badge, now)
        if enrolment is not None:
            self._enrol(edge, request, enrolment, now)
            return
        directory = self._directory
        badge = directory.badges.get(request.badge)
        member_id = badge.member_id if badge is not None else None
        query = AccessQuery(badge=request.badge, machine_id=request.machine, edge_id=edge, now=now)
        session_id: str | None = None
        try:
            if self.readers.cooling(request.machine):
                decision = Decision(
                    granted=False,
                    code=engine.Code.TOO_MANY_ATTEMPTS,
                    message=texts.reader_cooldown(),
                )
            else:
                decision = self._decide(
                    query, directory, self.live.view_for(request.badge, member_id, now), self._cfg
                )
            if decision.granted:
                session_id = self._new_session_id()
            answer = self._answer(request, decision, session_id, now)
        except Exception:
            # A bug or bad reference data must still produce a precise answer.
            self.metrics.inc("decision_errors")
            _limited.warning("decide", "decision failed for %s", request.req_id, exc_info=True)
            decision = Decision(granted=False, code=INTERNAL_ERROR, message=texts.decision_failed())
            session_id = None
            answer = self._answer(request, decision, None, now)
        self._answered.remember(edge, request.req_id, answer)
        self.commands.send(edge, answer)
        self.metrics.decision(time.perf_counter() - received, decision.granted, decision.code)
        machine = directory.machines.get(request.machine)
        if decision.code == engine.Code.UNKNOWN_MACHINE:
            self._foreign_request(edge, request.machine, machine.edge_id if machine else None)
        elif (
            decision.code == engine.Code.UNKNOWN_BADGE
            and machine is not None
            and self.readers.unknown_badge(request.machine)
        ):
            self._enumeration(edge, request.machine)
        if self.telemetry is not None:
            self.telemetry.access(
                now,
                granted=decision.granted,
                reason=decision.code,
                age_group=decision.age_group,
                zone=decision.zone_id,
                machine=request.machine,
            )
        mark = self.live.record_decision(
            badge=request.badge,
            machine_id=request.machine,
            zone_id=decision.zone_id or (machine.zone_id if machine else ""),
            decision=decision,
            session_id=session_id,
            now=now,
        )
        self.accesslog.record(
            AccessEntry(
                ts=now,
                edge_id=edge,
                machine_id=request.machine,
                member_id=decision.member_id if decision.member_id is not None else member_id,
                badge_hash=request.badge,
                req_id=request.req_id,
                granted=decision.granted,
                code=decision.code,
                session_id=session_id,
            )
        )
        if mark is not None:
            self.accesslog.record(mark)

    def _enrol(
        self, edge: str, request: AccessRequest, enrolment: Enrolment, now: datetime
    ) -> None:
        """Answer a request captured by an armed enrolment (a refusal: the machine stays
        off) and have the badge bound off this thread (see :mod:`hub.enrolment`)."""
        held = self._directory.badges.get(request.badge)
        if held is not None:
            owner = self._directory.members.get(held.member_id)
            name = owner.first_name if owner is not None else "un autre membre"
            self.enrolments.resolve(enrolment.token, EnrolState.DUPLICATE, owner_first_name=name)
            decision = Decision(
                granted=False, code=CODE_ALREADY_ENROLLED, message=already_enrolled_message(name)
            )
        else:
            decision = Decision(
                granted=False,
                code=CODE_ENROLLED,
                message=enrolled_message(enrolment.first_name),
                first_name=enrolment.first_name,
            )
            threading.Thread(
                target=self._bind_badge, args=(enrolment,), name="badge-enrolment", daemon=True
            ).start()
        answer = self._answer(request, decision, None, now)
        self._answered.remember(edge, request.req_id, answer)
        self.commands.send(edge, answer)
        machine = self._directory.machines.get(request.machine)
        self.live.record_decision(  # the machine's kiosk shows the outcome
            badge=request.badge,
            machine_id=request.machine,
            zone_id=machine.zone_id if machine is not None else "",
            decision=decision,
            session_id=None,
            now=now,
        )
        self.accesslog.record(
            AccessEntry(
                ts=now,
                edge_id=edge,
                machine_id=request.machine,
                member_id=held.member_id if held is not None else enrolment.member_id,
                badge_hash=request.badge,
                req_id=request.req_id,
                granted=False,
                code=decision.code,
            )
        )

    def _bind_badge(self, enrolment: Enrolment) -> None:
        try:
            with transaction(self._factory) as session:
                result = bind_badge(session, enrolment)
        except Exception as err:  # the error text may quote the badge hash: not logged
            logger.error("binding an enrolled badge failed: %s", describe(err))
            self.enrolments.resolve(enrolment.token, EnrolState.FAILED)
            return
        self.enrolments.resolve(
            enrolment.token,
            result.state,
            owner_first_name=result.owner_first_name,
            badge_id=result.badge_id,
        )
        if result.state is EnrolState.BOUND:
            self.reference_changed()

    def arm_enrolment(
        self, machine_id: str, member_id: int, first_name: str, account_id: int
    ) -> Enrolment | None:
        """Bind the next badge seen on ``machine_id`` to ``member_id`` (within a minute)."""
        machine = self._directory.machines.get(machine_id)
        if machine is None:
            return None
        return self.enrolments.arm(
            machine_id, machine.edge_id, member_id, first_name, account_id, self._clock()
        )

    def enrolment(self, token: str) -> Enrolment | None:
        return self.enrolments.get(token, self._clock())

    def cancel_enrolment(self, token: str) -> None:
        self.enrolments.cancel(token)

    def _foreign_request(self, edge: str, machine_id: str, owner: str | None) -> None:
        """``edge`` asked for a machine that is not its own (denied ``unknown_machine``):
        count it, log it (rate-limited) and have the ledger raise one open
        ``foreign_machine`` alert per edge, written at most once a minute."""
        what = describe_foreign_machine(machine_id, owner)
        self.metrics.inc("foreign_machine", "request")
        _limited.warning(
            f"foreign-request:{edge}", "edge %s asked access to %s; denied", edge, what
        )
        now = time.monotonic()
        last = self._foreign_alerted.get(edge)
        if last is None or now - last >= FOREIGN_ALERT_INTERVAL_S:
            self._foreign_alerted[edge] = now
            self.worker.submit_foreign_request(edge, machine_id, what)

    def _throttled(self, edge: str, kind: str) -> None:
        """``edge`` overran its ``kind`` bucket (called at most once per alert interval
        per edge by :class:`hub.throttle.EdgeThrottle`): log and raise ``edge_throttled``."""
        self.metrics.inc("throttle_alerts", kind)
        _limited.warning(
            f"throttled:{edge}", "edge %s sends too many %s messages: throttled", edge, kind
        )
        self.worker.submit_flood_alert(
            EDGE_THROTTLED,
            edge,
            f"edge {edge} sent more {kind} messages than its limit; the excess was dropped",
        )

    def _enumeration(self, edge: str, machine: str) -> None:
        """Many unknown badges on one reader: it cools down; one alert per cool-down."""
        self.metrics.inc("reader_cooldowns")
        _limited.warning(
            f"enumeration:{machine}",
            "reader of %s (edge %s): too many unknown badges, cooling down",
            machine,
            edge,
        )
        self.worker.submit_flood_alert(
            BADGE_ENUMERATION,
            edge,
            f"{self.settings.enumeration_limit} unknown badges or more on the reader of "
            f"{machine} within {self.settings.enumeration_window_s:g} s; refused for "
            f"{self.settings.enumeration_cooldown_s:g} s",
            machine=machine,
        )

    def _new_session_id(self) -> str:
        """A fresh random id in uuid4 hex form.

        Drawn from a PRNG seeded once from the OS: ``uuid4()`` reads the kernel's
        random source on every call, which costs up to a third of a millisecond on
        a loaded Raspberry Pi class machine, on the decision hot path. Session ids
        only need to be unique, not secret (the broker's ACL protects commands).
        """
        with self._ids_lock:
            bits = self._ids.getrandbits(128)
        return UUID(int=bits, version=4).hex

    def _answer(
        self, request: AccessRequest, decision: Decision, session_id: str | None, now: datetime
    ) -> AccessDecision:
        """The wire answer, built without re-validation: it is on the hot path, and
        every field comes from the validated request or the engine's decision (whose
        texts are bounded; names are cut to the contract's lengths here)."""
        granted = decision.granted
        break_rule = (
            BreakRule.model_construct(
                play_min=decision.break_after_min, break_min=decision.break_min
            )
            if granted and decision.break_after_min and decision.break_min
            else None
        )
        if granted and (session_id is None or decision.ends_at is None):
            raise ValueError("a grant needs a session id and an end time")
        return AccessDecision.model_construct(
            v=2,
            mac="",
            req_id=request.req_id,
            machine=request.machine,
            granted=granted,
            code=decision.code,
            message=decision.message[:500],
            session_id=session_id,
            ends_at=decision.ends_at if granted else None,
            break_at=decision.break_at if break_rule is not None else None,
            warn_at=tuple(decision.warn_at) if granted else (),
            break_rule=break_rule,
            staff=decision.staff,
            first_name=decision.first_name[:64] if decision.first_name else None,
            not_after=now + self._decision_ttl,
        )

    def on_event(self, edge: str, event: Event) -> None:
        """Hand a journal event to the ledger worker (SQL never runs in this thread)."""
        self.worker.submit(event)
        if self.telemetry is not None:
            self.telemetry.event(edge, event)

    def on_edge_status(self, edge: str, status: EdgeStatus) -> None:
        """Apply the epoch rule; persist accepted statuses through the ledger worker."""
        now = self._clock()
        was_online = self.live.edges_online().get(edge)
        previous_epoch = self.live.edge_epoch(edge)
        if not self.live.edge_status(edge, status, now):
            self.metrics.inc("stale_status")
            logger.info("edge %s: ignoring stale status (epoch %d)", edge, status.epoch)
            if status.online:  # not a late will: the edge may have lost its epoch
                self.worker.submit_status(edge, status, now, stale=True)
            return
        if was_online != status.online or previous_epoch != status.epoch:  # not a refresh
            logger.info(
                "edge %s %s (epoch %d)",
                edge,
                "online" if status.online else "offline",
                status.epoch,
            )
        if status.rejected:
            _limited.warning(
                f"rejected:{edge}",
                "edge %s dropped %d message(s) on its cmd/* topics: forged, stale, or signed "
                "with another key than its own",
                edge,
                status.rejected,
            )
        self.worker.submit_status(edge, status, now)
        if self.telemetry is not None:
            self.telemetry.edge_changed(edge, now)

    def on_machine_state(self, edge: str, machine: str, state: MachineState | None) -> None:
        if not self.live.machine_state(edge, machine, state):
            self.metrics.inc("foreign_machine", "state")
        elif state is not None:
            self.worker.submit_machine_state(edge, machine, state)

    def on_command_outcome(self, edge: str, outcome: CommandOutcome) -> None:
        """An edge answered a command: wake whoever waits for it."""
        if not self.waiters.resolve(edge, outcome):
            # Late (after the wait), unasked (the demo's own re-arms), or not this
            # edge's to answer: counted, not logged above debug.
            self.metrics.inc("stray_outcomes")
            logger.debug("edge %s: outcome for command %s nobody waits for", edge, outcome.cmd_id)

    def on_telemetry(self, edge: str, machine: str, payload: bytes) -> None:
        if not self.live.telemetry(edge, machine, payload):
            return  # not a machine the site gives to this edge: nothing kept, nothing fed
        if self.telemetry is not None:
            self.telemetry.telemetry(edge, machine, payload)

    def _publish_journal(self, edge: str, command: JournalCommand) -> None:
        self.commands.send(edge, command)
        if self.telemetry is not None and command.ack_through is not None:
            self.telemetry.acknowledged(edge, command.ack_through)

    # ------------------------------------------------------------------ snapshots

    def reference_changed(self) -> None:
        """Reload the directory (new version) now; recompile and republish snapshots soon.

        Decisions use the new directory as soon as this returns. Snapshots are
        compiled by the refresher (off this thread, which may be the API's);
        :meth:`wait_snapshots` waits for them.
        """
        # Presence marks from staff grants are written in batches: flush them so the
        # store holds every presence before it is taken as the truth again.
        self.accesslog.flush(timeout=2.0)
        with self._ref_lock:
            with transaction(self._factory) as session:
                directory = load_directory(session, version=self._directory.version + 1)
                self.live.reload_presence(session, self._clock())
            self._directory = directory
            self.live.set_directory(directory)
        settle_heap()
        logger.info("reference data reloaded (directory v%d)", directory.version)
        self.snapshots.request_refresh()

    def wait_snapshots(self, timeout: float = 30.0) -> bool:
        """Wait until every refresh requested so far (start, reference change) is done."""
        return self.snapshots.wait(timeout)

    def refresh_snapshots(self, timeout: float = 60.0) -> bool:
        """Recompile every edge's snapshot now and wait until the changed ones are out."""
        self.snapshots.request_refresh()
        return self.snapshots.wait(timeout)

    def snapshot_of(self, edge: str) -> PolicySnapshot | None:
        """The last snapshot published for ``edge`` (signed), decoded."""
        return self.snapshots.snapshot_of(edge)

    def _sessions_changed(self, view: UsageView) -> None:
        """A session ended: telemetry reads it back from the ledger; snapshots refresh."""
        if self.telemetry is not None:
            self.telemetry.session_ended(view.session_id)
        self.snapshots.session_ended(view)

    # ------------------------------------------------------------------ commands (HubControl)

    def end_session(self, session_id: str, message: str = "") -> PendingCommand | None:
        """Ask the session's edge to end it; ``None`` if the session is not open or the
        command could not be sent. :meth:`PendingCommand.wait` gives the edge's answer."""
        return self._session_command(session_id, SessionAction.END, message=message)

    def extend_session(
        self, session_id: str, minutes: int, message: str = ""
    ) -> PendingCommand | None:
        """Ask the session's edge to give it ``minutes`` more (see :meth:`end_session`)."""
        return self._session_command(
            session_id, SessionAction.EXTEND, minutes=minutes, message=message
        )

    def _session_command(
        self, session_id: str, action: SessionAction, *, minutes: int | None = None, message: str
    ) -> PendingCommand | None:
        found = self.live.open_session(session_id)
        if found is None:
            return None
        _view, edge = found
        command = SessionCommand(
            cmd_id=uuid4().hex,
            session_id=session_id,
            action=action,
            minutes=minutes,
            message=message[:500],
            not_after=self._clock() + timedelta(seconds=self.settings.command_ttl_s),
        )
        return self._send(edge, command)

    def machine_command(
        self, machine_id: str, action: MachineAction, by: int | None = None
    ) -> PendingCommand | None:
        """Send a staff command (``by``: the staff account) to the machine's edge;
        ``None`` if the machine is unknown or the command could not be sent."""
        machine = self._directory.machines.get(machine_id)
        if machine is None:
            return None
        command = MachineCommand(
            cmd_id=uuid4().hex,
            machine=machine_id,
            action=action,
            not_after=self._clock() + timedelta(seconds=self.settings.command_ttl_s),
            by=by,
        )
        return self._send(machine.edge_id, command)

    def _send(self, edge: str, command: SessionCommand | MachineCommand) -> PendingCommand | None:
        pending = self.waiters.expect(command.cmd_id, edge)  # before: it may answer at once
        if not self.commands.send(edge, command):
            self.waiters.forget(command.cmd_id)
            return None
        return pending

    def machine_states(self) -> Mapping[str, MachineState]:
        return self.live.machine_states()

    def running_job_files(self) -> Mapping[str, str | None]:
        return {m: job.file_name for m, job in self.live.running_jobs().items()}

    def machine_telemetry(self) -> Mapping[str, Telemetry]:
        return self.live.machine_telemetry()

    def edges_online(self) -> Mapping[str, bool]:
        return self.live.edges_online()

    def subscribe_changes(self, listener: Callable[[str, str], None]) -> Callable[[], None]:
        return self.live.subscribe(listener)

    def last_decision(self, machine_id: str) -> tuple[datetime, Decision] | None:
        return self.live.last_decision(machine_id)

    # ------------------------------------------------------------------ reporting

    def status_line(self) -> str:
        """One line for the demo console, in French."""
        unattended = len(self.live.unattended_sessions())
        return texts.hub_status(
            online=sum(1 for up in self.live.edges_online().values() if up),
            sessions=len(self.live.open_sessions()) - unattended,
            decisions=self.metrics.get("decisions"),
            rejected=self.metrics.get("bad_messages"),
            unattended=unattended,
        )

    def gauges(self) -> Gauges:
        """What the hub holds now, for the Prometheus collector (:mod:`hub.exposition`)."""
        queues = {"ledger": self.worker.queued(), "accesslog": self.accesslog.queued()}
        if self.telemetry is not None:
            queues["telemetry"] = self.telemetry.queued()
        return Gauges(
            edges_online=sum(1 for up in self.live.edges_online().values() if up),
            open_sessions=len(self.live.open_sessions()),
            throttled_edges=self.throttle.throttled_edges(),
            readers_cooling=self.readers.cooling_readers(),
            backlog=self.worker.backlog(),
            queues=queues,
            edge_health=self.live.edge_health(),
            edge_rejected=self.live.edge_rejected(),
        )

    def metrics_snapshot(self) -> dict[str, Any]:
        """Counters, latency and live figures, for the API and the demo."""
        data = self.metrics.snapshot()
        p99 = self.metrics.latency_quantile(0.99)
        data["decision_latency"]["p99_bucket_s"] = p99
        data["live"] = {
            "edges_online": sum(1 for up in self.live.edges_online().values() if up),
            "open_sessions": len(self.live.open_sessions()),
            "machines_offline": len(self.live.machines_offline()),
            "directory_version": self._directory.version,
        }
        return data
