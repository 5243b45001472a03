"""In-process counters of the hub service, and a rate-limited warning logger.

The hub's hot paths (paho's network thread answering badge requests, the ledger
worker) must never log every message at INFO: a misbehaving edge sending a thousand
bad payloads a second would flood the journal and slow down every decision. Instead
each event is *counted* here (by a stable label, e.g. ``bad_messages{reason="schema"}``)
and warnings go through :class:`RateLimitedLog`, which logs the first occurrence of
a key and then at most one summary line per interval.

Counters are plain integers behind one lock: increments are a few hundred
nanoseconds, cheap enough for thousands of messages per second.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import Counter
from typing import Any

logger = logging.getLogger(__name__)

#: Upper bounds (seconds) of the decision latency histogram buckets.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.5,
    float("inf"),
)


class Metrics:
    """Thread-safe named counters with optional labels, and one latency histogram.

    ``inc("bad_messages", "schema")`` counts under the key ``bad_messages:schema`` and
    under the total ``bad_messages``; :meth:`snapshot` returns a plain dict copy for
    the API, the demo status line and tests.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._latency = [0] * len(LATENCY_BUCKETS)
        self._latency_sum = 0.0
        self._started = time.monotonic()

    def inc(self, name: str, label: str | None = None, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (and to ``name:label`` when a label is given)."""
        with self._lock:
            self._counts[name] += n
            if label is not None:
                self._counts[f"{name}:{label}"] += n

    def get(self, name: str, label: str | None = None) -> int:
        """Current value of a counter (0 when never incremented)."""
        key = name if label is None else f"{name}:{label}"
        with self._lock:
            return self._counts.get(key, 0)

    def decision(self, seconds: float, granted: bool, code: str) -> None:
        """Count one access decision and its latency, under a single lock (hot path)."""
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        outcome = "decisions:granted" if granted else "decisions:denied"
        with self._lock:
            counts = self._counts
            counts["decisions"] += 1
            counts[outcome] += 1
            counts[f"decision_codes:{code}"] += 1
            self._latency[index] += 1
            self._latency_sum += seconds

    def observe_latency(self, seconds: float) -> None:
        """Record the time one access decision took, from receipt to publish."""
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            self._latency[index] += 1
            self._latency_sum += seconds

    def latency_quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding quantile ``q`` of decision latency."""
        with self._lock:
            total = sum(self._latency)
            if total == 0:
                return None
            rank = q * total
            seen = 0
            for bound, count in zip(LATENCY_BUCKETS, self._latency, strict=True):
                seen += count
                if seen >= rank:
                    return bound
            return LATENCY_BUCKETS[-1]  # pragma: no cover - unreachable

    def latency_histogram(self) -> tuple[list[int], float]:
        """Decision latency per bucket of :data:`LATENCY_BUCKETS` (not cumulative), and
        the sum of every latency (seconds), for the Prometheus histogram."""
        with self._lock:
            return list(self._latency), self._latency_sum

    def uptime(self) -> float:
        """Seconds since these counters were created (the hub's start)."""
        return time.monotonic() - self._started

    def labelled(self, name: str) -> dict[str, int]:
        """Every label of counter ``name`` with its value, e.g. bad messages by reason."""
        prefix = f"{name}:"
        with self._lock:
            return {k[len(prefix) :]: v for k, v in self._counts.items() if k.startswith(prefix)}

    def snapshot(self) -> dict[str, Any]:
        """A copy of every counter, plus uptime and decision latency summary."""
        with self._lock:
            counts = dict(self._counts)
            total = sum(self._latency)
            mean = self._latency_sum / total if total else None
            buckets = {
                ("+Inf" if b == float("inf") else f"{b:g}"): c
                for b, c in zip(LATENCY_BUCKETS, self._latency, strict=True)
            }
        return {
            "uptime_s": round(time.monotonic() - self._started, 3),
            "counters": counts,
            "decision_latency": {"count": total, "mean_s": mean, "buckets": buckets},
        }


class RateLimitedLog:
    """Logs a WARNING the first time a key occurs, then at most once per ``interval_s``.

    Suppressed occurrences are counted and reported in the next line for that key,
    so an operator still sees the scale of a problem without the flood.
    """

    def __init__(self, log: logging.Logger, interval_s: float = 10.0) -> None:
        self._log = log
        self._interval = interval_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warning(self, key: str, msg: str, *args: object, exc_info: bool = False) -> None:
        """Log ``msg % args`` at WARNING unless ``key`` was logged less than an interval ago."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] += 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            self._log.warning(
                msg + " (%d similar suppressed)", *args, suppressed, exc_info=exc_info
            )
        else:
            self._log.warning(msg, *args, exc_info=exc_info)
