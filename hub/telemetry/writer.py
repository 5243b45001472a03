"""The one owner of the InfluxDB connection: batches, retries, a bounded buffer.

:class:`InfluxWriter` hands line-protocol chunks to ``influxdb-client``'s batching
write API, which writes them from its own thread, retrying with exponential backoff
(``retry_interval_ms`` doubled up to ``max_retry_delay_ms``, for at most
``max_retry_time_ms``). Everything not yet confirmed written counts against
``capacity`` lines: past it new lines are dropped and counted
(``telemetry_dropped``), never queued without bound, so an InfluxDB that is down or
slow costs memory within a bound and nothing else. The SQL ledger stays the truth:
what was dropped is rewritten by ``fabrique telemetry backfill``.

:meth:`InfluxWriter.stop` flushes what is buffered (within ``close_wait_s``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hub.metrics import Metrics, RateLimitedLog

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)

#: Lines per chunk handed to the client (one HTTP body may hold several chunks).
CHUNK_LINES = 2_000


@dataclass(frozen=True, slots=True)
class InfluxTarget:
    """Where and how to write. ``token`` is ``user:password`` for InfluxDB 1.8's v2
    compatibility endpoint, whose ``org`` is ``-`` and ``bucket`` is ``database/rp``."""

    url: str
    token: str
    org: str
    bucket: str
    timeout_s: float = 10.0
    batch_chunks: int = 5
    flush_interval_ms: int = 1_000
    retry_interval_ms: int = 1_000
    max_retries: int = 8
    max_retry_delay_ms: int = 30_000
    max_retry_time_ms: int = 180_000
    close_wait_s: float = 10.0


class InfluxWriter:
    """Writes line protocol to InfluxDB (v2 write API) in batches, within a bound.

    Args:
        target: the server, credentials and batching options.
        capacity: lines accepted but not yet written, at most.
        metrics: counters ``telemetry_lines`` (written), ``telemetry_dropped`` (by
            reason), ``telemetry_errors`` and ``telemetry_retries``.
    """

    def __init__(
        self, target: InfluxTarget, *, capacity: int = 100_000, metrics: Metrics | None = None
    ) -> None:
        self.target = target
        self._capacity = max(1, capacity)
        self._metrics = metrics or Metrics()
        self._lock = threading.Lock()
        self._pending = 0  # lines handed to the client, not yet written or failed
        self._idle = threading.Condition(self._lock)
        self._client: Any = None
        self._api: Any = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Create the client and its batching write API (no request is made yet)."""
        if self._api is not None:
            return
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import WriteOptions, WriteType
        from reactivex.scheduler import ThreadPoolScheduler

        t = self.target
        client = InfluxDBClient(
            url=t.url, token=t.token, org=t.org, timeout=int(t.timeout_s * 1000), enable_gzip=True
        )
        options = WriteOptions(
            write_type=WriteType.batching,
            batch_size=max(1, t.batch_chunks),
            flush_interval=t.flush_interval_ms,
            jitter_interval=0,
            retry_interval=t.retry_interval_ms,
            max_retries=t.max_retries,
            max_retry_delay=t.max_retry_delay_ms,
            max_retry_time=t.max_retry_time_ms,
            exponential_base=2,
            max_close_wait=int(t.close_wait_s * 1000),
            write_scheduler=ThreadPoolScheduler(max_workers=1),
        )
        self._api = client.write_api(
            write_options=options,
            success_callback=self._written,
            error_callback=self._failed,
            retry_callback=self._retrying,
        )
        self._client = client
        logger.info("telemetry: writing to %s (bucket %s)", t.url, t.bucket)

    def stop(self) -> None:
        """Flush what is buffered (at most ``close_wait_s``) and close the client."""
        api, client = self._api, self._client
        self._api = self._client = None
        if api is None:
            return
        api.close()
        client.close()
        with self._lock:
            lost, self._pending = self._pending, 0
        if lost:
            self._metrics.inc("telemetry_dropped", "shutdown", lost)
            logger.warning("telemetry: %d line(s) not written before shutdown", lost)

    # ------------------------------------------------------------------ writing

    @property
    def pending(self) -> int:
        """Lines accepted and not yet written (or given up)."""
        return self._pending

    def submit(self, lines: Sequence[str]) -> int:
        """Hand ``lines`` to the client; returns how many were accepted.

        Lines beyond the capacity are dropped and counted. Never blocks on the network.
        """
        api = self._api
        if api is None or not lines:
            if lines:
                self._metrics.inc("telemetry_dropped", "stopped", len(lines))
            return 0
        with self._lock:
            room = self._capacity - self._pending
            take = max(0, min(room, len(lines)))
            self._pending += take
        if take < len(lines):
            self._metrics.inc("telemetry_dropped", "buffer_full", len(lines) - take)
            _limited.warning(
                "full", "telemetry buffer full (%d lines): dropping points", self._capacity
            )
        for start in range(0, take, CHUNK_LINES):
            chunk = "\n".join(lines[start : min(take, start + CHUNK_LINES)])
            api.write(bucket=self.target.bucket, org=self.target.org, record=chunk)
        return take

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every accepted line is written or given up (tests, backfill)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    # ------------------------------------------------------------------ callbacks (client thread)

    @staticmethod
    def _count(data: str | bytes) -> int:
        if isinstance(data, bytes):
            return data.count(b"\n") + 1 if data else 0
        return data.count("\n") + 1 if data else 0

    def _settle(self, n: int) -> None:
        with self._idle:
            self._pending = max(0, self._pending - n)
            if self._pending == 0:
                self._idle.notify_all()

    def _written(self, _conf: tuple[str, str, str], data: str | bytes) -> None:
        n = self._count(data)
        self._metrics.inc("telemetry_lines", None, n)
        self._settle(n)

    def _failed(self, _conf: tuple[str, str, str], data: str | bytes, err: Exception) -> None:
        n = self._count(data)
        self._metrics.inc("telemetry_errors")
        self._metrics.inc("telemetry_dropped", "write_failed", n)
        # The exception's text, never the data: the server may quote a line back.
        _limited.warning("failed", "telemetry: %d line(s) not written: %s", n, type(err).__name__)
        self._settle(n)

    def _retrying(self, _conf: tuple[str, str, str], _data: str | bytes, err: Exception) -> None:
        self._metrics.inc("telemetry_retries")
        _limited.warning("retry", "telemetry: write failed (%s), retrying", type(err).__name__)
