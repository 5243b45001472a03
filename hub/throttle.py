"""Flood control: per-edge token buckets on the MQTT intake, and badge enumeration guard.

One edge gone mad (or an attacker holding its broker credentials) must not crowd
out the others. :class:`EdgeThrottle` gives every edge one token bucket per kind of
message it sends (requests, journal events, edge status, machine states,
telemetry); a message that finds its bucket empty is dropped *before it is decoded*,
so a flood costs the hub little more than reading it off the socket:

* a dropped **request** goes unanswered: the edge times out and applies its offline
  policy, as it would with the hub away;
* a dropped **event** is not acknowledged, so the edge resends it later (nothing is
  lost, the ledger just sees it later);
* a dropped **state**, **status** or **telemetry** message is replaced by the next one.

The limits (:class:`Limits`, from the hub settings) are generous for a real edge: a
few machines, human badge taps, a journal replayed one window (200 events) at a time.
Buckets are kept for at most ``max_edges`` edge ids; any further id shares one
overflow bucket per kind, so made-up edge ids cannot grow the hub either.

:class:`ReaderGuard` throttles badge enumeration: many unknown badges on one reader
in a short time (someone trying cloned or random UIDs) put the reader in a
cool-down during which every badge on it is refused ``too_many_attempts``.

:class:`EdgeThrottle` is called from the network threads of both hub connections
(decisions and telemetry), so it holds a lock (uncontended: tens of nanoseconds);
:class:`ReaderGuard` only from the decision thread. The counters they feed live in
:class:`hub.metrics.Metrics`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hub.settings import HubSettings

#: Edge id under which every edge beyond ``max_edges`` is throttled together.
OVERFLOW = "*"

#: The kinds of messages throttled, as counted in ``throttled{kind=...}``.
KINDS: tuple[str, ...] = ("req", "evt", "status", "state", "tele")


@dataclass(frozen=True, slots=True)
class Rate:
    """A sustained rate (messages per second) and the burst allowed above it."""

    per_s: float
    burst: float


@dataclass(slots=True)
class TokenBucket:
    """The classic token bucket: ``burst`` tokens, refilled at ``per_s`` a second."""

    per_s: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        """Take one token if there is one (refilling first); False when empty."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.per_s)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class EdgeThrottle:
    """One token bucket per (edge, kind), bounded in number.

    Args:
        limits: the rate of each kind (see :data:`KINDS`); a kind not given is not
            throttled.
        max_edges: edges with a bucket of their own; the others share :data:`OVERFLOW`.
        alert_interval_s: :meth:`allow` reports an edge as *newly* throttled at most
            once per interval (the caller raises the ``edge_throttled`` alert then).
        on_throttled: called with ``(edge, kind)`` when an edge is newly throttled.
        clock: monotonic seconds (tests pin it).
    """

    def __init__(
        self,
        limits: Mapping[str, Rate],
        *,
        max_edges: int = 1024,
        alert_interval_s: float = 300.0,
        on_throttled: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = dict(limits)
        self._max_edges = max(1, max_edges)
        self._alert_interval = alert_interval_s
        self._on_throttled = on_throttled
        self._clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._edges: set[str] = set()
        #: Last time each edge was throttled (bounded like the buckets).
        self._last_throttled: dict[str, float] = {}
        self._last_alert: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, edge: str, kind: str) -> bool:
        """Whether one more ``kind`` message of ``edge`` may be handled now."""
        rate = self._limits.get(kind)
        if rate is None:
            return True
        with self._lock:
            if edge not in self._edges:
                if len(self._edges) >= self._max_edges:
                    edge = OVERFLOW
                else:
                    self._edges.add(edge)
            key = (edge, kind)
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(rate.per_s, rate.burst, rate.burst, now)
            if bucket.take(now):
                return True
            self._last_throttled[edge] = now
            last = self._last_alert.get(edge)
            alert = last is None or now - last >= self._alert_interval
            if alert:
                self._last_alert[edge] = now
        if alert and self._on_throttled is not None:
            self._on_throttled(edge, kind)  # outside the lock: it queues an alert
        return False

    def throttled_edges(self, within_s: float = 60.0) -> int:
        """How many edges were throttled in the last ``within_s`` seconds."""
        horizon = self._clock() - within_s
        return sum(1 for t in list(self._last_throttled.values()) if t >= horizon)

    def tracked_edges(self) -> int:
        """Edges holding buckets of their own (at most ``max_edges``)."""
        return len(self._edges)


@dataclass(slots=True)
class _Reader:
    window_start: float
    unknown: int
    cool_until: float


class ReaderGuard:
    """Cool-down of a reader that sees too many unknown badges (badge enumeration).

    Args:
        limit: unknown badges on one reader within ``window_s`` that start a cool-down.
        window_s: the counting window (fixed, restarted at the first unknown badge).
        cooldown_s: how long every badge on the reader is then refused.
        max_readers: readers tracked at most (the caller only passes known machines;
            the bound keeps memory fixed whatever happens).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        limit: int = 10,
        window_s: float = 30.0,
        cooldown_s: float = 60.0,
        max_readers: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = max(1, limit)
        self._window = window_s
        self._cooldown = cooldown_s
        self._max = max(1, max_readers)
        self._clock = clock
        self._readers: dict[str, _Reader] = {}

    def cooling(self, reader: str) -> bool:
        """Whether ``reader`` is in a cool-down now."""
        r = self._readers.get(reader)
        return r is not None and self._clock() < r.cool_until

    def unknown_badge(self, reader: str) -> bool:
        """Note an unknown badge on ``reader``; True when this starts a cool-down."""
        now = self._clock()
        r = self._readers.get(reader)
        if r is None:
            if len(self._readers) >= self._max:
                self._prune(now)
                if len(self._readers) >= self._max:
                    return False
            r = self._readers[reader] = _Reader(now, 0, 0.0)
        if now - r.window_start > self._window:
            r.window_start, r.unknown = now, 0
        r.unknown += 1
        if r.unknown >= self._limit and now >= r.cool_until:
            r.cool_until = now + self._cooldown
            r.window_start, r.unknown = now, 0
            return True
        return False

    def cooling_readers(self) -> int:
        """Readers in a cool-down now."""
        now = self._clock()
        return sum(1 for r in list(self._readers.values()) if now < r.cool_until)

    def _prune(self, now: float) -> None:
        for reader in [
            k
            for k, r in self._readers.items()
            if now >= r.cool_until and now - r.window_start > self._window
        ]:
            del self._readers[reader]


def edge_throttle(
    settings: HubSettings, on_throttled: Callable[[str, str], None] | None = None
) -> EdgeThrottle:
    """The hub's :class:`EdgeThrottle`, with the limits of its settings."""
    s = settings
    return EdgeThrottle(
        {
            "req": Rate(s.throttle_requests_per_s, s.throttle_requests_burst),
            "evt": Rate(s.throttle_events_per_s, s.throttle_events_burst),
            "status": Rate(s.throttle_status_per_s, s.throttle_status_burst),
            "state": Rate(s.throttle_states_per_s, s.throttle_states_burst),
            "tele": Rate(s.throttle_telemetry_per_s, s.throttle_telemetry_burst),
        },
        max_edges=s.throttle_max_edges,
        alert_interval_s=s.throttle_alert_interval_s,
        on_throttled=on_throttled,
    )
