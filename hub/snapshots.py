"""Offline policy snapshots: compiled off the decision path, published retained when they change.

:class:`SnapshotPublisher` owns every edge's published snapshot (its fingerprint,
version and signed bytes), the worker process pool that compiles them and the
*refresher* thread that decides when. Snapshots are recompiled at start, after each
reference change (:meth:`SnapshotPublisher.request_refresh`), every
``refresh_interval_s``, just after local midnight, and (for zones with quotas)
``session_refresh_s`` after a session ended there (:meth:`SnapshotPublisher.session_ended`).
One is republished, retained on ``edge/{edge}/policy``, only when what it grants changed
(its fingerprint) or when its validity runs low (:func:`compile_changed`), one at a
time (``publish_paced``) so that megabytes of snapshots never queue in front of the
badge answers. After a (re)connection every cached snapshot is published again
(:meth:`SnapshotPublisher.republish`), in case the broker lost its retained copy.

The compilation runs in a worker *process* (:func:`compile_changed`, picklable
:class:`SnapshotJob` in, :class:`CompiledSnapshot` out): it is seconds of CPU on a big
site, and in the hub's process it would keep the GIL from the MQTT network thread and
delay every badge answer. The worker runs at a lower priority and dies with the hub
(:func:`background_priority`).

The publisher reads the directory and the live state it is given; it never writes
them. :func:`settle_heap` is the hub's garbage-collector tuning after a (re)load of the
directory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime

from hub.live import LiveState
from hub.metrics import Metrics, RateLimitedLog
from hub.policy import snapshot
from hub.policy.model import Directory, PolicyConfig, UsageView
from hub.settings import HubSettings
from protocol.messages import MAX_POLICY_PAYLOAD, PolicySnapshot, decode, encode
from protocol.signing import sign_snapshot
from protocol.topics import Topics

logger = logging.getLogger(__name__)
_keyless_log = RateLimitedLog(logger, interval_s=600.0)

CompileFn = Callable[..., PolicySnapshot]
#: Publish one retained payload and wait for the broker (``HubMqtt.publish_paced``).
PublishPaced = Callable[..., bool]
#: An edge's own key (:class:`hub.edgekeys.EdgeKeys.key`), None when it has none.
KeyFn = Callable[[str], bytes | None]
#: How soon the snapshots of edges that had no key are compiled again (seconds): a key
#: provisioned while the hub runs (``fabrique hub edge-key``) is used without waiting
#: for the next full refresh.
KEY_RETRY_S = 15.0


@dataclass(frozen=True, slots=True)
class SnapshotJob:
    """Everything needed to recompile some edges' snapshots, picklable for a worker process."""

    edges: tuple[str, ...]
    directory: Directory
    sessions: Mapping[int, Sequence[UsageView]]
    cfg: PolicyConfig
    now: datetime
    days: int
    validity: timedelta
    #: edge -> its own key (:mod:`hub.edgekeys`); an edge missing here gets no snapshot.
    keys: Mapping[str, bytes]
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
        key = job.keys.get(edge)
        if key is None:
            errors[edge] = "no key for this edge (fabrique hub edge-key)"
            continue
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
            signed = sign_snapshot(candidate.model_copy(update={"version": version}), key)
            payload = encode(signed)
            if len(payload) > MAX_POLICY_PAYLOAD:  # the edge would refuse it unread
                raise ValueError(f"{len(payload)} bytes exceed the bound {MAX_POLICY_PAYLOAD}")
            changed.append(
                CompiledSnapshot(edge, fingerprint, version, signed.valid_until, payload)
            )
            version += 1
        except Exception as err:  # one edge's bad data must not block the others
            errors[edge] = f"{type(err).__name__}: {err}"
    return changed, errors


def background_priority(parent_pid: int) -> None:
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


def settle_heap() -> None:
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


class SnapshotPublisher:
    """Compiles every edge's offline snapshot and publishes the ones that changed.

    Args:
        settings: the hub's settings (site, snapshot horizon and validity, site secret,
            time zone for midnight).
        cfg: the policy tunables the snapshots are compiled with.
        directory: returns the directory decisions use now (read at each compilation).
        live: the live state (member sessions for quotas, housekeeping before a pass).
        publish: ``HubMqtt.publish_paced``.
        metrics: the hub's counters (``snapshots_published``, ``snapshot_errors``).
        compile_snapshot: the compiler (default
            :func:`hub.policy.snapshot.compile_snapshot`).
        clock: the time source.
        refresh_interval_s: how often snapshots are recompiled regardless.
        session_refresh_s: how soon after a session ends the snapshots of its zone
            are recompiled (remaining quotas changed).
        workers: worker processes compiling snapshots (0: compile in the refresher
            thread, for tests and injected compilers).
    """

    def __init__(
        self,
        settings: HubSettings,
        cfg: PolicyConfig,
        *,
        directory: Callable[[], Directory],
        live: LiveState,
        publish: PublishPaced,
        keys: KeyFn,
        metrics: Metrics,
        compile_snapshot: CompileFn,
        clock: Callable[[], datetime],
        refresh_interval_s: float = 600.0,
        session_refresh_s: float = 30.0,
        workers: int = 1,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.site)
        self._cfg = cfg
        self._directory = directory
        self._live = live
        self._publish = publish
        self._keys = keys
        self._metrics = metrics
        self._compile_fn = compile_snapshot
        self._clock = clock
        self._refresh_interval = refresh_interval_s
        self._session_refresh = session_refresh_s
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._snapshots: dict[str, CompiledSnapshot] = {}
        self._snapshot_version = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._refreshed = threading.Condition()
        self._requested = 0  # generation of full refreshes asked for
        self._done = 0  # generation of the last full refresh completed
        self._republish = threading.Event()
        self._dirty_zones: set[str] = set()
        #: Edges whose last compile found no key, and when to try them again.
        self._keyless: set[str] = set()
        self._keyless_retry = 0.0
        self._dirty_since: float | None = None
        self._refresher: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the worker pool and the refresher, which compiles every snapshot at once."""
        if self._workers > 0:
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=background_priority,
                initargs=(os.getpid(),),
            )
        self._stopping.clear()
        self._requested += 1  # compile every snapshot as soon as the refresher runs
        self._refresher = threading.Thread(
            target=self._refresh_loop, name="snapshot-refresher", daemon=True
        )
        self._refresher.start()

    def stop(self) -> None:
        """Stop the refresher; abandon a compilation in flight (seconds on a big site)."""
        self._stopping.set()
        self._wake.set()
        if self._refresher is not None:
            self._refresher.join(30)
            self._refresher = None
        if self._pool is not None:
            workers = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in workers:
                if process.is_alive():
                    process.terminate()
            self._pool = None

    # ------------------------------------------------------------------ requests

    def request_refresh(self) -> int:
        """Have every snapshot recompiled soon; returns the refresh's generation."""
        with self._refreshed:
            self._requested += 1
            generation = self._requested
        self._wake.set()
        return generation

    def wait(self, timeout: float = 30.0) -> bool:
        """Wait until every refresh requested so far (start, reference change) is done."""
        with self._refreshed:
            target = self._requested
            return self._refreshed.wait_for(lambda: self._done >= target, timeout)

    def republish(self) -> None:
        """Have every compiled snapshot published again (the broker may have lost them).

        Paced from the refresher thread: never queues megabytes in the caller's
        (paho's) thread.
        """
        self._republish.set()
        self._wake.set()

    def session_ended(self, view: UsageView) -> None:
        """A session ended: its zone's snapshots carry remaining quotas; refresh them soon."""
        if not any(zone == view.zone_id for zone, _group in self._directory().quotas):
            return
        with self._refreshed:
            self._dirty_zones.add(view.zone_id)
            if self._dirty_since is None:
                self._dirty_since = time.monotonic()
        self._wake.set()

    def snapshot_of(self, edge: str) -> PolicySnapshot | None:
        """The last snapshot published for ``edge`` (signed), decoded."""
        with self._lock:
            pub = self._snapshots.get(edge)
        return decode(PolicySnapshot, pub.payload) if pub else None

    # ------------------------------------------------------------------ refresher thread

    def _compile(self, edges: Sequence[str]) -> list[str]:
        """Compile ``edges`` (in the worker process if any) and publish what changed."""
        now = self._clock()
        directory = self._directory()
        keys = {e: k for e in edges if (k := self._keys(e)) is not None}
        wanted = {m.edge_id for m in directory.machines.values()}
        with self._refreshed:
            keyless = (self._keyless - set(edges)) | (set(edges) - set(keys))
            self._keyless = keyless & wanted
            self._keyless_retry = time.monotonic() + KEY_RETRY_S
        with self._lock:
            previous = {
                e: (p.fingerprint, p.version, p.valid_until) for e, p in self._snapshots.items()
            }
            floor = max(self._snapshot_version + 1, int(now.timestamp()))
        job = SnapshotJob(
            edges=tuple(edges),
            directory=directory,
            sessions=self._live.member_sessions(),
            cfg=self._cfg,
            now=now,
            days=self.settings.snapshot_days,
            validity=timedelta(hours=self.settings.snapshot_validity_h),
            keys=keys,
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
            self._metrics.inc("snapshot_errors")
            if edge in self._keyless:  # retried every KEY_RETRY_S: say it now and then
                _keyless_log.warning(f"nokey:{edge}", "no snapshot for edge %s: %s", edge, error)
            else:
                logger.error("cannot compile the snapshot of edge %s: %s", edge, error)
        with self._lock:
            for compiled in changed:
                self._snapshots[compiled.edge] = compiled
                self._snapshot_version = max(self._snapshot_version, compiled.version)
            wanted = {m.edge_id for m in self._directory().machines.values()}
            for gone in set(self._snapshots) - wanted:
                del self._snapshots[gone]
        for compiled in changed:
            if self._stopping.is_set():
                break  # republish() sends every cached snapshot after the next connection
            self._publish(self.topics.policy(compiled.edge), compiled.payload, retain=True)
            self._metrics.inc("snapshots_published")
        if changed:
            logger.info(
                "policy snapshots republished for %d edge(s): %s",
                len(changed),
                ", ".join(c.edge for c in changed[:10]),
            )
        return [c.edge for c in changed]

    def _republish_all(self) -> None:
        """Publish every cached snapshot again (after a (re)connection), one at a time."""
        with self._lock:
            published = list(self._snapshots.values())
        for pub in published:
            if self._stopping.is_set() or self._republish.is_set():
                return  # stopping, or connected again meanwhile: that pass will do it
            self._publish(self.topics.policy(pub.edge), pub.payload, retain=True)

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
                keyless = set(self._keyless) if self._keyless else set()
                keyless_retry = self._keyless_retry
            now_m = time.monotonic()
            due = next_full
            if requested > done:
                due = now_m
            if dirty_since is not None:
                due = min(due, dirty_since + self._session_refresh)
            if keyless:
                due = min(due, keyless_retry)
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
            machines = self._directory().machines.values()
            if full:
                edges = sorted({m.edge_id for m in machines})
            else:
                edges = sorted({m.edge_id for m in machines if m.zone_id in zones})
                if keyless and now_m >= keyless_retry:
                    edges = sorted(set(edges) | keyless)
            try:
                self._live.housekeeping(self._clock())
                self._compile(edges)
            except Exception:
                self._metrics.inc("snapshot_errors")
                logger.exception("snapshot refresh failed")
            if full:
                next_full = time.monotonic() + self._refresh_interval
                midnight = self._next_midnight(self._clock())
                with self._refreshed:
                    self._done = requested
                    self._refreshed.notify_all()
