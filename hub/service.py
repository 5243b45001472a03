"""The running hub: policy decisions, ledger, live state and snapshots over MQTT.

:class:`Hub` wires the parts together and implements :class:`hub.control.HubControl`
for the API. Who runs where:

* **paho's network thread** (:mod:`hub.mqtt`) decodes every message and calls the
  ``on_*`` handlers below. Badge requests are decided right there, in memory (the
  directory and the live state; no SQL), and answered on ``cmd/access`` with the
  request's ``req_id``; the identified log row goes to the access-log writer's queue.
  Journal events go to the ledger worker's queue; statuses, states and telemetry
  update the live state.
* **the ledger worker** (:mod:`hub.ledger`) applies journal events in one
  transaction each, then acknowledges them and asks for replays.
* **the access-log writer** (:mod:`hub.accesslog`) batches log rows into the store.
* **the snapshot refresher** has every edge's offline policy snapshot recompiled
  at start, after each reference change, every ``refresh_interval_s``, just after
  local midnight, and (for zones with quotas) shortly after sessions end, and
  republishes it retained only when what it grants changed (its fingerprint) or
  when its validity runs low. The compilation itself runs in a worker *process*
  (:func:`compile_changed`): it is seconds of CPU on a big site, and in this process
  it would keep the GIL from the MQTT network thread and delay every badge answer.

The constructor only assigns; :meth:`Hub.start` loads the store and connects,
:meth:`Hub.stop` announces the hub offline and stops every thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import multiprocessing
import os
import random
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from types import TracebackType
from typing import Any, Self
from uuid import UUID, uuid4

from sqlalchemy.orm import Session, sessionmaker

from hub.accesslog import AccessEntry, AccessLogWriter
from hub.db.engine import transaction
from hub.directory import load_directory, policy_config
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
from hub.ledger import Ledger, LedgerWorker, describe_foreign_machine
from hub.live import LiveState
from hub.metrics import Metrics, RateLimitedLog
from hub.mqtt import HubMqtt
from hub.policy import engine, snapshot
from hub.policy.model import (
    AccessQuery,
    Decision,
    Directory,
    LiveView,
    PolicyConfig,
    SessionView,
)
from hub.settings import HubSettings
from protocol.messages import (
    AccessDecision,
    AccessRequest,
    BreakRule,
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
    decode,
    encode,
    utcnow,
)
from protocol.signing import policy_key, sign_snapshot
from protocol.topics import Topics

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)

DecideFn = Callable[[AccessQuery, Directory, LiveView, PolicyConfig], Decision]
CompileFn = Callable[..., PolicySnapshot]

#: At most one ``foreign_machine`` alert write per edge this often (seconds): a
#: misconfigured edge may ask for a foreign machine at every badge.
FOREIGN_ALERT_INTERVAL_S = 60.0

INTERNAL_ERROR = "internal_error"
INTERNAL_ERROR_MESSAGE = "Le hub n'a pas pu décider. Réessaie, ou appelle un animateur."


@dataclass(frozen=True, slots=True)
class SnapshotJob:
    """Everything needed to recompile some edges' snapshots, picklable for a worker process."""

    edges: tuple[str, ...]
    directory: Directory
    sessions: Mapping[int, Sequence[SessionView]]
    cfg: PolicyConfig
    now: datetime
    days: int
    validity: timedelta
    site_secret: bytes
    #: edge -> (fingerprint, version, valid_until) of what is published now.
    previous: Mapping[str, tuple[str, int, datetime]]
    #: The first version number a new snapshot may take.
    version_floor: int


@dataclass(frozen=True, slots=True)
class CompiledSnapshot:
    """A signed snapshot ready to publish, as the bytes that go on the wire."""

    edge: str
    fingerprint: str
    version: int
    valid_until: datetime
    payload: bytes


def compile_changed(
    job: SnapshotJob, compile_fn: CompileFn
) -> tuple[list[CompiledSnapshot], dict[str, str]]:
    """Compile ``job.edges`` and return the snapshots that must be (re)published.

    A snapshot is republished when its fingerprint (what it grants) changed, or
    when the published one has used up half of its validity (its windows and
    ``valid_until`` must stay ahead of the clock). New versions are numbered from
    ``job.version_floor`` on. Runs in a worker process in production (compiling
    hundreds of snapshots is seconds of CPU that must not hold the GIL of the
    process answering badges); failures are returned per edge, never raised.
    """
    changed: list[CompiledSnapshot] = []
    errors: dict[str, str] = {}
    version = job.version_floor
    memo = snapshot.SnapshotMemo()  # member entries shared by edges alike in shape
    for edge in job.edges:
        previous = job.previous.get(edge)
        try:
            candidate = compile_fn(
                edge,
                job.directory,
                job.sessions,
                job.cfg,
                now=job.now,
                version=previous[1] if previous else 1,
                days=job.days,
                validity=job.validity,
                memo=memo,
            )
            fingerprint = snapshot.snapshot_fingerprint(candidate)
            if (
                previous is not None
                and previous[0] == fingerprint
                and previous[2] - job.now > job.validity / 2
            ):
                continue
            signed = sign_snapshot(
                candidate.model_copy(update={"version": version}),
                policy_key(job.site_secret, edge),
            )
            changed.append(
                CompiledSnapshot(edge, fingerprint, version, signed.valid_until, encode(signed))
            )
            version += 1
        except Exception as err:  # one edge's bad data must not block the others
            errors[edge] = f"{type(err).__name__}: {err}"
    return changed, errors


def _background_priority(parent_pid: int) -> None:
    """Run the snapshot compiler below the hub and the broker in the CPU scheduler,
    and make it die with the hub even when the hub is killed with SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        except OSError:  # pragma: no cover - no libc: rely on stop()
            logger.debug("could not tie the snapshot worker to the hub's life")
        if os.getppid() != parent_pid:  # the hub died before prctl took effect
            raise SystemExit(0)
    try:
        os.nice(10)
    except OSError:  # pragma: no cover - not permitted: compile at normal priority
        logger.debug("could not lower the snapshot worker's priority")


def _settle_heap() -> None:
    """Move the long-lived objects (directory, live state) out of the collector's way.

    Measured under load, full collections scanning the directory took 35-116 ms and
    showed up as the p99 of badge answers. After a (re)load everything alive is
    frozen (never scanned again until unfrozen) and the young generation is allowed
    to grow before a minor collection runs.
    """
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 20_000), max(gen1, 20), max(gen2, 20))


def french_int(n: int) -> str:
    """An integer with French digit grouping (narrow no-break spaces): 1 204."""
    return f"{n:,}".replace(",", "\u202f")


def _plural(n: int, one: str, many: str) -> str:
    return f"{french_int(n)} {one if n == 1 else many}"


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
        self._factory = factory
        self._decide: DecideFn = decide or engine.decide
        self._compile_fn: CompileFn = compile_snapshot or snapshot.compile_snapshot
        self._clock = clock
        self._refresh_interval = refresh_interval_s
        self._session_refresh = session_refresh_s
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
        )
        self.ledger = Ledger(factory, self._cfg, self.metrics)
        self.accesslog = AccessLogWriter(
            factory,
            retention_days=settings.access_log_retention_days,
            metrics=self.metrics,
            clock=clock,
        )
        self.worker = LedgerWorker(
            self.ledger,
            self._publish_journal,
            live=self.live,
            metrics=self.metrics,
            ack_interval_s=settings.ack_interval_s,
            gap_replay_after_s=settings.gap_replay_after_s,
            on_session_ended=self._sessions_changed,
        )
        self.mqtt = HubMqtt(settings, self, self.metrics, version=version)
        self._workers = snapshot_workers
        self._pool: ProcessPoolExecutor | None = None
        self._snapshots: dict[str, CompiledSnapshot] = {}
        self._snapshot_version = 0
        self._ref_lock = threading.RLock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._refreshed = threading.Condition()
        self._requested = 0  # generation of full refreshes asked for
        self._done = 0  # generation of the last full refresh completed
        self._republish = threading.Event()
        self._dirty_zones: set[str] = set()
        self._dirty_since: float | None = None
        self._refresher: threading.Thread | None = None
        self._started = False
        self._ids = random.Random(secrets.randbits(128))
        self._ids_lock = threading.Lock()
        self._access_topics: dict[str, str] = {}
        self._foreign_alerted: dict[str, float] = {}
        self.enrolments = Enrolments()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load the directory and live state, start the workers, connect to the broker."""
        if self._started:
            return
        now = self._clock()
        with transaction(self._factory) as session:
            self._directory = load_directory(session, version=1)
            self.live.load(session, now)
        self.live.set_directory(self._directory)
        _settle_heap()
        self.accesslog.start()
        self.worker.start()
        if self._workers > 0:
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_background_priority,
                initargs=(os.getpid(),),
            )
        self._stopping.clear()
        self._requested += 1  # compile every snapshot as soon as the refresher runs
        self._refresher = threading.Thread(
            target=self._refresh_loop, name="snapshot-refresher", daemon=True
        )
        self._refresher.start()
        self.mqtt.start()
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
        self._stopping.set()
        self._wake.set()
        if self._refresher is not None:
            self._refresher.join(30)
            self._refresher = None
        if self._pool is not None:
            # Do not wait for a compilation in flight (seconds on a big site).
            workers = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in workers:
                if process.is_alive():
                    process.terminate()
            self._pool = None
        self.worker.stop()
        self.mqtt.stop()
        self.accesslog.stop()
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

    # ------------------------------------------------------------------ MQTT handlers

    def on_connected(self) -> None:
        """Have every compiled snapshot republished, in case the broker lost its retained copy."""
        # Paced from the refresher thread: never queue megabytes in this (paho's) thread.
        self._republish.set()
        self._wake.set()

    def on_access_request(self, edge: str, request: AccessRequest, received: float) -> None:
        """Decide in memory and answer on ``cmd/access`` with the request's ``req_id``."""
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
            decision = Decision(granted=False, code=INTERNAL_ERROR, message=INTERNAL_ERROR_MESSAGE)
            session_id = None
            answer = self._answer(request, decision, None, now)
        self.mqtt.publish(self._cmd_access_topic(edge), answer, qos=1)
        self.metrics.decision(time.perf_counter() - received, decision.granted, decision.code)
        machine = directory.machines.get(request.machine)
        if decision.code == engine.Code.UNKNOWN_MACHINE:
            self._foreign_request(edge, request.machine, machine.edge_id if machine else None)
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
        self.mqtt.publish(
            self._cmd_access_topic(edge), self._answer(request, decision, None, now), qos=1
        )
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
        except Exception:
            logger.exception("binding an enrolled badge failed")
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

    def _cmd_access_topic(self, edge: str) -> str:
        topic = self._access_topics.get(edge)
        if topic is None:
            topic = self._access_topics[edge] = self.topics.cmd_access(edge)
        return topic

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
            v=1,
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

    def on_edge_status(self, edge: str, status: EdgeStatus) -> None:
        """Apply the epoch rule; persist accepted statuses through the ledger worker."""
        now = self._clock()
        if not self.live.edge_status(edge, status, now):
            self.metrics.inc("stale_status")
            logger.info("edge %s: ignoring stale status (epoch %d)", edge, status.epoch)
            return
        logger.info(
            "edge %s %s (epoch %d)", edge, "online" if status.online else "offline", status.epoch
        )
        self.worker.submit_status(edge, status, now)

    def on_machine_state(self, edge: str, machine: str, state: MachineState | None) -> None:
        if not self.live.machine_state(edge, machine, state):
            self.metrics.inc("foreign_machine", "state")

    def on_telemetry(self, edge: str, machine: str, payload: bytes) -> None:
        self.live.telemetry(edge, machine, payload)

    def _publish_journal(self, edge: str, command: JournalCommand) -> None:
        self.mqtt.publish(self.topics.cmd_journal(edge), command, qos=1)

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
        _settle_heap()
        logger.info("reference data reloaded (directory v%d)", directory.version)
        self._request_refresh()

    def _request_refresh(self) -> int:
        with self._refreshed:
            self._requested += 1
            generation = self._requested
        self._wake.set()
        return generation

    def wait_snapshots(self, timeout: float = 30.0) -> bool:
        """Wait until every refresh requested so far (start, reference change) is done."""
        with self._refreshed:
            target = self._requested
            return self._refreshed.wait_for(lambda: self._done >= target, timeout)

    def refresh_snapshots(self, timeout: float = 60.0) -> bool:
        """Recompile every edge's snapshot now and wait until the changed ones are out."""
        self._request_refresh()
        return self.wait_snapshots(timeout)

    def snapshot_of(self, edge: str) -> PolicySnapshot | None:
        """The last snapshot published for ``edge`` (signed), decoded."""
        with self._ref_lock:
            pub = self._snapshots.get(edge)
        return decode(PolicySnapshot, pub.payload) if pub else None

    def _sessions_changed(self, view: SessionView) -> None:
        """A session ended: its zone's snapshots carry remaining quotas; refresh them soon."""
        if not any(zone == view.zone_id for zone, _group in self._directory.quotas):
            return
        with self._refreshed:
            self._dirty_zones.add(view.zone_id)
            if self._dirty_since is None:
                self._dirty_since = time.monotonic()
        self._wake.set()

    def _compile(self, edges: Sequence[str]) -> list[str]:
        """Compile ``edges`` (in the worker process if any) and publish what changed."""
        now = self._clock()
        with self._ref_lock:
            previous = {
                e: (p.fingerprint, p.version, p.valid_until) for e, p in self._snapshots.items()
            }
            floor = max(self._snapshot_version + 1, int(now.timestamp()))
        job = SnapshotJob(
            edges=tuple(edges),
            directory=self._directory,
            sessions=self.live.member_sessions(),
            cfg=self._cfg,
            now=now,
            days=self.settings.snapshot_days,
            validity=timedelta(hours=self.settings.snapshot_validity_h),
            site_secret=self.settings.site_secret_bytes,
            previous=previous,
            version_floor=floor,
        )
        if self._pool is not None:
            future = self._pool.submit(compile_changed, job, self._compile_fn)
            while not self._stopping.is_set():
                done, _pending = wait([future], timeout=0.2)
                if done:
                    break
            if not future.done():
                return []  # stopping: a snapshot compiled now would never be published
            changed, errors = future.result()
        else:
            changed, errors = compile_changed(job, self._compile_fn)
        for edge, error in errors.items():
            self.metrics.inc("snapshot_errors")
            logger.error("cannot compile the snapshot of edge %s: %s", edge, error)
        with self._ref_lock:
            for compiled in changed:
                self._snapshots[compiled.edge] = compiled
                self._snapshot_version = max(self._snapshot_version, compiled.version)
            wanted = {m.edge_id for m in self._directory.machines.values()}
            for gone in set(self._snapshots) - wanted:
                del self._snapshots[gone]
        for compiled in changed:
            if self._stopping.is_set():
                break  # on_connected republishes every cached snapshot on the next start
            self.mqtt.publish_paced(
                self.topics.policy(compiled.edge), compiled.payload, retain=True
            )
            self.metrics.inc("snapshots_published")
        if changed:
            logger.info(
                "policy snapshots republished for %d edge(s): %s",
                len(changed),
                ", ".join(c.edge for c in changed[:10]),
            )
        return [c.edge for c in changed]

    def _republish_all(self) -> None:
        """Publish every cached snapshot again (after a (re)connection), one at a time."""
        with self._ref_lock:
            published = list(self._snapshots.values())
        for pub in published:
            if self._stopping.is_set() or self._republish.is_set():
                return  # stopping, or connected again meanwhile: that pass will do it
            self.mqtt.publish_paced(self.topics.policy(pub.edge), pub.payload, retain=True)

    def _next_midnight(self, now: datetime) -> datetime:
        tz = self.settings.tz
        tomorrow: date = now.astimezone(tz).date() + timedelta(days=1)
        return datetime.combine(tomorrow, dtime(0, 0, 5), tzinfo=tz)

    def _refresh_loop(self) -> None:
        """Full refreshes on request, every ``refresh_interval_s`` and after local
        midnight; partial ones (zones whose quotas changed) ``session_refresh_s`` after
        the first session ended."""
        next_full = time.monotonic() + self._refresh_interval
        midnight = self._next_midnight(self._clock())
        while not self._stopping.is_set():
            if self._republish.is_set():
                self._republish.clear()
                self._republish_all()
            with self._refreshed:
                requested, done = self._requested, self._done
                dirty_since = self._dirty_since
            now_m = time.monotonic()
            due = next_full
            if requested > done:
                due = now_m
            if dirty_since is not None:
                due = min(due, dirty_since + self._session_refresh)
            to_midnight = (midnight - self._clock()).total_seconds()
            due = min(due, now_m + max(to_midnight, 0.0))
            if due > now_m:
                self._wake.wait(due - now_m)
                self._wake.clear()
                continue  # re-evaluate: woken by a request, a stop, or time is up
            full = requested > done or now_m >= next_full or to_midnight <= 0
            with self._refreshed:
                zones, self._dirty_zones = self._dirty_zones, set()
                self._dirty_since = None
            directory = self._directory
            if full:
                edges = sorted({m.edge_id for m in directory.machines.values()})
            else:
                edges = sorted(
                    {m.edge_id for m in directory.machines.values() if m.zone_id in zones}
                )
            try:
                self.live.housekeeping(self._clock())
                self._compile(edges)
            except Exception:
                self.metrics.inc("snapshot_errors")
                logger.exception("snapshot refresh failed")
            if full:
                next_full = time.monotonic() + self._refresh_interval
                midnight = self._next_midnight(self._clock())
                with self._refreshed:
                    self._done = requested
                    self._refreshed.notify_all()

    # ------------------------------------------------------------------ commands (HubControl)

    def end_session(self, session_id: str, message: str = "") -> bool:
        """Ask the session's edge to end it; False if the session is not open."""
        return self._session_command(session_id, SessionAction.END, message=message)

    def extend_session(self, session_id: str, minutes: int, message: str = "") -> bool:
        """Ask the session's edge to give it ``minutes`` more; False if it is not open."""
        return self._session_command(
            session_id, SessionAction.EXTEND, minutes=minutes, message=message
        )

    def _session_command(
        self, session_id: str, action: SessionAction, *, minutes: int | None = None, message: str
    ) -> bool:
        found = self.live.open_session(session_id)
        if found is None:
            return False
        _view, edge = found
        command = SessionCommand(
            cmd_id=uuid4().hex,
            session_id=session_id,
            action=action,
            minutes=minutes,
            message=message[:500],
            not_after=self._clock() + timedelta(seconds=self.settings.command_ttl_s),
        )
        return self.mqtt.publish(self.topics.cmd_session(edge), command, qos=1)

    def machine_command(self, machine_id: str, action: MachineAction) -> bool:
        """Send a staff command to the machine's edge; False if the machine is unknown."""
        machine = self._directory.machines.get(machine_id)
        if machine is None:
            return False
        command = MachineCommand(
            cmd_id=uuid4().hex,
            machine=machine_id,
            action=action,
            not_after=self._clock() + timedelta(seconds=self.settings.command_ttl_s),
        )
        return self.mqtt.publish(self.topics.cmd_machine(machine.edge_id), command, qos=1)

    def machine_states(self) -> Mapping[str, MachineState]:
        return self.live.machine_states()

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
        online = sum(1 for up in self.live.edges_online().values() if up)
        unattended = len(self.live.unattended_sessions())
        sessions = len(self.live.open_sessions()) - unattended
        return " · ".join(
            (
                _plural(online, "borne en ligne", "bornes en ligne"),
                _plural(sessions, "session ouverte", "sessions ouvertes"),
                *(
                    (_plural(unattended, "travail qui finit seul", "travaux qui finissent seuls"),)
                    if unattended
                    else ()
                ),
                _plural(self.metrics.get("decisions"), "décision", "décisions"),
                _plural(self.metrics.get("bad_messages"), "message rejeté", "messages rejetés"),
            )
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
