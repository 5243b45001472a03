"""Pseudonymous time series for InfluxDB: points, the writer, the hub's feed, backfill.

* :mod:`hub.telemetry.points` builds line protocol from the hub's facts (schema:
  :mod:`protocol.telemetry_schema`);
* :mod:`hub.telemetry.writer` owns the InfluxDB client (batches, retries, a bound);
* :mod:`hub.telemetry.feed` is what the hub service feeds, off its decision path;
* :mod:`hub.telemetry.backfill` rewrites sessions and jobs from the ledger.

:func:`build` makes the writer and the feed from the settings (None when off).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from hub.live import LiveState
from hub.metrics import Metrics
from hub.policy.model import Directory
from hub.settings import HubSettings
from hub.telemetry.feed import TelemetryFeed
from hub.telemetry.writer import InfluxTarget, InfluxWriter

__all__ = ["InfluxTarget", "InfluxWriter", "TelemetryFeed", "build", "target_of"]


def target_of(settings: HubSettings) -> InfluxTarget | None:
    """Where the settings say to write (None: telemetry is off)."""
    where = settings.influx_target
    if where is None:
        return None
    url, token, org, bucket = where
    return InfluxTarget(url, token, org, bucket, timeout_s=settings.influx_timeout_s)


def build(
    settings: HubSettings,
    factory: sessionmaker[Session],
    live: LiveState,
    directory: Callable[[], Directory],
    metrics: Metrics,
) -> tuple[TelemetryFeed, InfluxWriter] | None:
    """The hub's feed and writer (nothing connects yet), or None when telemetry is off."""
    target = target_of(settings)
    if target is None:
        return None
    writer = InfluxWriter(target, capacity=settings.influx_buffer, metrics=metrics)
    feed = TelemetryFeed(
        settings.site, writer, factory, live, directory, tz=settings.tz, metrics=metrics
    )
    return feed, writer
