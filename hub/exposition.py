"""The hub's figures for Prometheus (``prometheus-client``), served on loopback only.

:class:`HubCollector` turns the in-process counters of :class:`hub.metrics.Metrics`
and a few live gauges into Prometheus metric families *when scraped* (nothing is
added to the hot paths: the counters are the ones the hub already keeps). Each
metric is documented in ``docs/metrics.md``; the names are stable.

:class:`MetricsServer` serves them on ``http://127.0.0.1:{metrics_port}/metrics``
(a setting; off when unset). Loopback only, on purpose: the figures name edges and
machines, so they are scraped by a Prometheus on the hub's machine, or through an
SSH tunnel or an authenticating reverse proxy, never straight from the network.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from hub.metrics import LATENCY_BUCKETS, Metrics
from protocol.messages import EdgeHealth

logger = logging.getLogger(__name__)

PREFIX = "fabrique_hub_"

#: (metric, help, counter in :class:`Metrics`, label name or None) of every counter
#: exported as is; a counter never incremented is exported as 0 (or without samples
#: when it is labelled).
COUNTERS: tuple[tuple[str, str, str, str | None], ...] = (
    ("decisions", "Access decisions answered, by result.", "decisions", "result"),
    ("decision_codes", "Access decisions answered, by reason code.", "decision_codes", "code"),
    ("decision_errors", "Decisions that failed inside the hub (internal_error).",
     "decision_errors", None),
    ("messages", "MQTT messages received from edges, by topic kind.", "messages", "kind"),
    ("bad_messages", "Messages dropped as invalid, by reason.", "bad_messages", "reason"),
    ("throttled_messages", "Messages dropped by an edge's token bucket, by kind.",
     "throttled", "kind"),
    ("throttle_alerts", "edge_throttled alerts raised, by the kind that overflowed.",
     "throttle_alerts", "kind"),
    ("reader_cooldowns", "Readers put in a cool-down for too many unknown badges.",
     "reader_cooldowns", None),
    ("unknown_machine_messages", "States and telemetry about machines the site does not "
     "give to that edge (ignored), by kind.", "unknown_machine", "kind"),
    ("denials_forgotten", "Badges whose recent denials were forgotten to bound memory.",
     "denials_forgotten", None),
    ("ledger_errors", "Failures of the ledger worker.", "ledger_errors", None),
    ("ledger_dropped", "Items the ledger queue refused (full), by reason.",
     "ledger_dropped", "reason"),
    ("quarantined_events", "Journal events quarantined as poison (kept, acknowledged, "
     "not applied).", "quarantined", None),
    ("quarantined_events_by_reason", "Journal events quarantined, by reason.",
     "quarantined", "reason"),
    ("alerts", "Alerts raised about edges, by kind.", "alerts", "kind"),
    ("publish_failed", "Publishes paho refused, by reason.", "publish_failed", "reason"),
    ("mqtt_disconnects", "Losses of the broker connection.", "mqtt_disconnects", None),
    ("telemetry_dropped", "Telemetry facts dropped (feed queue full), by reason.",
     "telemetry_dropped", "reason"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Gauges:
    """What the hub is holding right now (read when scraped)."""

    edges_online: int = 0
    open_sessions: int = 0
    throttled_edges: int = 0
    readers_cooling: int = 0
    #: Events seen beyond each edge's acknowledged point.
    backlog: Mapping[str, int] = field(default_factory=dict)
    #: Items waiting in each writer's queue (ledger, access log, telemetry).
    queues: Mapping[str, int] = field(default_factory=dict)
    #: The health counters each online edge last reported on its status.
    edge_health: Mapping[str, EdgeHealth] = field(default_factory=dict)
    #: Hub→edge messages each online edge dropped, from its status (``rejected``).
    edge_rejected: Mapping[str, int] = field(default_factory=dict)


#: (field of :class:`~protocol.messages.EdgeHealth`, help) exported as
#: ``fabrique_edge_{field}{edge=...}``.
EDGE_HEALTH: tuple[tuple[str, str], ...] = (
    ("uptime_s", "Seconds since the edge's process started (as it reported)."),
    ("connects", "Connections the edge made since it started (more than 1: reconnects)."),
    ("journal_backlog", "Journal events the edge holds that the hub has not acknowledged."),
    ("bad_messages", "Messages from the hub the edge dropped as invalid."),
    ("handler_errors", "Handler failures on the edge on received messages."),
)


class HubCollector(Collector):
    """A Prometheus collector reading :class:`Metrics` and ``gauges()`` at scrape time."""

    def __init__(self, metrics: Metrics, gauges: Callable[[], Gauges]) -> None:
        self._metrics = metrics
        self._gauges = gauges

    def collect(self) -> Iterator[Any]:
        m = self._metrics
        for name, doc, counter, label in COUNTERS:
            if label is None:
                yield CounterMetricFamily(PREFIX + name, doc, value=m.get(counter))
                continue
            family = CounterMetricFamily(PREFIX + name, doc, labels=[label])
            for value, count in sorted(m.labelled(counter).items()):
                family.add_metric([value], count)
            yield family
        buckets, total = m.latency_histogram()
        cumulative, running = [], 0
        for bound, count in zip(LATENCY_BUCKETS, buckets, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else f"{bound:g}", running))
        yield HistogramMetricFamily(
            PREFIX + "decision_latency_seconds",
            "Time from receipt of a badge request to the publish of its answer.",
            buckets=cumulative,
            sum_value=total,
        )
        g = self._gauges()
        scalars: tuple[tuple[str, str, int], ...] = (
            ("edges_online", "Edges whose last status says online.", g.edges_online),
            ("open_sessions", "Sessions open in the ledger.", g.open_sessions),
            ("throttled_edges", "Edges throttled in the last minute.", g.throttled_edges),
            ("readers_cooling", "Readers in a badge-enumeration cool-down.", g.readers_cooling),
        )
        for gauge, doc, amount in scalars:
            yield GaugeMetricFamily(PREFIX + gauge, doc, value=amount)
        backlog = GaugeMetricFamily(
            PREFIX + "edge_backlog_events",
            "Journal events seen beyond an edge's acknowledged point (a gap awaiting replay).",
            labels=["edge"],
        )
        for edge, n in sorted(g.backlog.items()):
            backlog.add_metric([edge], n)
        yield backlog
        queues = GaugeMetricFamily(
            PREFIX + "writer_queue_items", "Items waiting in a writer's queue.", labels=["writer"]
        )
        for writer, n in sorted(g.queues.items()):
            queues.add_metric([writer], n)
        yield queues
        yield GaugeMetricFamily(
            PREFIX + "uptime_seconds", "Seconds since the hub started.", value=m.uptime()
        )
        for attr, doc in EDGE_HEALTH:
            edge_family = GaugeMetricFamily(f"fabrique_edge_{attr}", doc, labels=["edge"])
            for edge, health in sorted(g.edge_health.items()):
                edge_family.add_metric([edge], getattr(health, attr))
            yield edge_family
        rejected = GaugeMetricFamily(
            "fabrique_edge_rejected",
            "Hub→edge messages the edge dropped (bad MAC, stale, ack beyond its journal).",
            labels=["edge"],
        )
        for edge, n in sorted(g.edge_rejected.items()):
            rejected.add_metric([edge], n)
        yield rejected


def registry_for(metrics: Metrics, gauges: Callable[[], Gauges]) -> CollectorRegistry:
    """A registry of its own (never the process-wide default) holding the hub's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(metrics, gauges))
    return registry


class MetricsServer:
    """``/metrics`` on ``127.0.0.1:port`` in a daemon thread (port 0: any free port)."""

    HOST = "127.0.0.1"

    def __init__(self, registry: CollectorRegistry, port: int) -> None:
        self._registry = registry
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        """The port served on (the real one when 0 was asked), None when not serving."""
        return int(self._server.server_port) if self._server is not None else None

    def start(self) -> bool:
        """Serve; False (logged) when the port cannot be bound: the hub runs on without."""
        if self._server is not None:
            return True
        try:
            self._server, self._thread = start_http_server(
                self._port, addr=self.HOST, registry=self._registry
            )
        except OSError as err:
            logger.error("metrics: cannot serve on %s:%d: %s", self.HOST, self._port, err)
            return False
        logger.info("metrics: serving on http://%s:%d/metrics", self.HOST, self.port)
        return True

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
