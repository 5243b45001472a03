"""Floods through a real broker: one edge is throttled, the others are still answered,
nothing is kept for made-up machines, badge enumeration cools a reader down, and
``/metrics`` shows the counters (issue 12, "Floods" and "Seeing it")."""

from __future__ import annotations

import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from hub.db.engine import transaction
from hub.db.models import Alert
from hub.service import Hub
from protocol.messages import AccessDecision, decode
from tests.conftest import Broker
from tests.hub.hubkit import (
    NOW,
    Journal,
    Probe,
    Seed,
    dumps,
    migrated,
    seed,
    settings_for,
    wait_until,
)

pytestmark = pytest.mark.broker


@dataclass
class Site:
    hub: Hub
    ids: Seed
    edge: Probe  # every command topic of the site

    def request(self, badge: str, machine: str, edge: str = "pi-fab") -> tuple[str, bytes]:
        req_id = uuid.uuid4().hex
        payload = {
            "v": 1,
            "req_id": req_id,
            "edge": edge,
            "machine": machine,
            "badge": badge,
            "ts": NOW.isoformat(),
        }
        return req_id, dumps(payload)

    def ask(
        self, badge: str, machine: str, edge: str = "pi-fab", timeout: float = 10.0
    ) -> AccessDecision:
        req_id, payload = self.request(badge, machine, edge)
        self.edge.publish(self.hub.topics.req_access(edge), payload)
        msg = self.edge.wait_for(
            lambda m: m.topic.endswith("/cmd/access") and m.json()["req_id"] == req_id,
            timeout=timeout,
        )
        return decode(AccessDecision, msg.payload)

    def alerts(self, kind: str) -> list[tuple[str, str | None, str]]:
        with transaction(self.hub._factory) as s:
            rows = s.scalars(select(Alert).where(Alert.kind == kind)).all()
            return [(a.edge_id, a.machine_id, a.detail) for a in rows]

    def scrape(self) -> dict[str, float]:
        """``/metrics`` of the hub, as {sample name{labels}: value}."""
        server = self.hub.metrics_server
        assert server is not None
        assert server.port is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}"] = sample.value
        return out


@pytest.fixture
def make_site(mosquitto: Broker, tmp_path: Path) -> Iterator[Any]:
    started: list[Site] = []

    def start(**overrides: Any) -> Site:
        db_url = f"sqlite:///{tmp_path / 'hub.db'}"
        factory = migrated(db_url)
        ids = seed(factory)
        settings = settings_for(db_url, mosquitto, metrics_port=0, **overrides)
        hub = Hub(settings, factory, clock=lambda: NOW, snapshot_workers=0)
        hub.start()
        assert hub.mqtt.wait_connected(10)
        edge = Probe(mosquitto.host, mosquitto.port, [f"{hub.topics.root}/edge/+/cmd/#"]).start()
        site = Site(hub, ids, edge)
        started.append(site)
        return site

    yield start
    for site in started:
        site.edge.stop()
        site.hub.stop()


def test_a_request_flood_is_throttled_while_another_edge_is_answered(make_site: Any) -> None:
    site = make_site(throttle_requests_per_s=5.0, throttle_requests_burst=20.0)
    hub, ids = site.hub, site.ids
    flooder = Probe(hub.mqtt.settings.mqtt_host, hub.mqtt.settings.mqtt_port, []).start()
    total = 1000
    topic = hub.topics.req_access("pi-fab")
    payloads = [site.request(ids.badge_bob, "printer-1")[1] for _ in range(total)]
    try:

        def flood() -> None:
            for payload in payloads:
                flooder.client.publish(topic, payload, qos=0)

        thread = threading.Thread(target=flood)
        thread.start()
        # While pi-fab floods, pi-game's own badge is still decided.
        answer = site.ask(ids.badge_bob, "pc-1", edge="pi-game")
        assert answer.code != "internal_error"
        thread.join(30)
        wait_until(
            lambda: hub.metrics.get("messages", "req/access") >= total + 1,
            timeout=30,
            what="every request read",
        )
    finally:
        flooder.stop()
    throttled = hub.metrics.get("throttled", "req")
    decided = hub.metrics.get("decisions")
    assert throttled + decided == total + 1  # each request either decided or dropped
    assert throttled >= total // 2  # far beyond burst + rate x the seconds it took
    assert hub.throttle.throttled_edges() == 1
    # The flooding edge is alerted once (the alert write is rate-limited, then one open).
    wait_until(lambda: site.alerts("edge_throttled"), timeout=10, what="edge_throttled alert")
    assert [(e, m) for e, m, _ in site.alerts("edge_throttled")] == [("pi-fab", None)]
    assert hub.metrics.get("throttle_alerts") == 1
    # Seen from Prometheus.
    figures = site.scrape()
    assert figures["fabrique_hub_throttled_messages_total{kind=req}"] == throttled
    assert figures["fabrique_hub_throttled_edges{}"] == 1
    assert figures["fabrique_hub_decisions_total{result=granted}"] >= 1
    assert figures["fabrique_hub_decision_latency_seconds_count{}"] == decided
    assert figures["fabrique_hub_alerts_total{kind=edge_throttled}"] == 1


def test_an_event_flood_is_dropped_before_the_ledger(make_site: Any) -> None:
    site = make_site(throttle_events_per_s=1.0, throttle_events_burst=5.0)
    hub = site.hub
    topic = hub.topics.evt("pi-fab")
    journal = Journal("pi-fab")
    for minute in range(1, 201):
        body = {"session_id": "s" * 32, "machine": "printer-1", "minute": minute}
        event = journal.event("usage_tick", {**body, "elapsed_s": minute * 60.0})
        site.edge.client.publish(topic, dumps(event), qos=0)
    wait_until(lambda: hub.metrics.get("messages", "evt") >= 200, timeout=20, what="read")
    assert hub.metrics.get("throttled", "evt") >= 150
    # The hub still answers the edge whose journal bucket is empty.
    assert site.ask(site.ids.badge_sam, "laser-1").code != "internal_error"


def test_nothing_is_kept_for_made_up_machines(make_site: Any) -> None:
    site = make_site()
    hub, t = site.hub, site.hub.topics
    for i in range(40):
        machine = f"ghost-{i}"
        tele = {"v": 1, "machine": machine, "ts": NOW.isoformat(), "values": {"x": 1.0}}
        state = {"v": 1, "machine": machine, "availability": "fault", "ts": NOW.isoformat()}
        site.edge.client.publish(t.tele("pi-fab", machine), dumps(tele), qos=0)
        site.edge.client.publish(t.state("pi-fab", machine), dumps(state), qos=0)
    wait_until(
        lambda: (
            hub.metrics.get("unknown_machine", "tele") >= 40
            and hub.metrics.get("unknown_machine", "state") >= 40
        ),
        timeout=20,
        what="every ghost message read",
    )
    assert hub.live.latest_telemetry() == {}
    assert not any(m.startswith("ghost-") for m in hub.machine_states())
    assert hub.live.machines_offline() == frozenset()
    # A request for a made-up machine is refused, and not remembered either.
    assert site.ask(site.ids.badge_alice, "ghost-1").code == "unknown_machine"
    assert hub.last_decision("ghost-1") is None


def test_badge_enumeration_cools_the_reader_down(make_site: Any) -> None:
    site = make_site(enumeration_limit=5, enumeration_cooldown_s=600.0)
    ids = site.ids
    for i in range(5):
        assert site.ask(f"{i:064x}", "laser-1").code == "unknown_badge"
    # The reader is cooling down: even a known badge is refused there…
    refused = site.ask(ids.badge_sam, "laser-1")
    assert (refused.granted, refused.code) == (False, "too_many_attempts")
    assert "lecteur" in refused.message
    # …while the next reader is not.
    assert site.ask(ids.badge_alice, "printer-1").granted
    wait_until(lambda: site.alerts("badge_enumeration"), timeout=10, what="alert")
    [(edge, machine, detail)] = site.alerts("badge_enumeration")
    assert (edge, machine) == ("pi-fab", "laser-1")
    assert "5 unknown badges" in detail
    assert site.hub.metrics.get("reader_cooldowns") == 1
    assert site.scrape()["fabrique_hub_readers_cooling{}"] == 1


def test_metrics_are_served_on_loopback_with_every_documented_family(make_site: Any) -> None:
    site = make_site()
    site.ask(site.ids.badge_alice, "printer-1")
    site.edge.publish(site.hub.topics.req_access("pi-fab"), b"{")
    wait_until(lambda: site.hub.metrics.get("bad_messages") >= 1, what="bad message")
    figures = site.scrape()
    assert figures["fabrique_hub_decisions_total{result=granted}"] == 1
    assert figures["fabrique_hub_decision_codes_total{code=granted}"] == 1
    assert figures["fabrique_hub_bad_messages_total{reason=malformed}"] == 1
    assert figures["fabrique_hub_quarantined_events_total{}"] == 0  # absent counter: 0
    assert figures["fabrique_hub_writer_queue_items{writer=ledger}"] >= 0
    assert figures["fabrique_hub_edges_online{}"] == 0
    # Every family the collector exports is documented.
    doc = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    families = {k.split("{")[0] for k in figures}
    for name in families:
        base = name.removesuffix("_total").removesuffix("_bucket").removesuffix("_count")
        base = base.removesuffix("_sum").removesuffix("_created")
        assert f"`{base}`" in doc or f"`{base}_total`" in doc, name


def test_an_edges_health_counters_reach_the_hub_metrics(make_site: Any) -> None:
    """A real EdgeLink reports its health on its status; the hub exports it per edge."""
    from edge.link import EdgeLink, LinkHandler, LinkSettings

    site = make_site()
    hub = site.hub
    s = hub.settings
    link = EdgeLink(
        LinkSettings(site=s.site, edge="pi-fab", host=s.mqtt_host, port=s.mqtt_port),
        LinkHandler(),
    )
    link.start()
    try:
        assert link.wait_up(10)
        wait_until(lambda: "pi-fab" in hub.live.edge_health(), timeout=10, what="health")
        # A bad command to the edge is dropped and counted, then reported.
        site.edge.publish(hub.topics.cmd_machine("pi-fab"), b"{not json")
        wait_until(lambda: link.health().bad_messages == 1, timeout=10, what="edge counted")
        assert link.publish_health(journal_backlog=7)
        wait_until(
            lambda: hub.live.edge_health()["pi-fab"].journal_backlog == 7,
            timeout=10,
            what="refreshed health",
        )
        figures = site.scrape()
    finally:
        link.stop()
    assert figures["fabrique_edge_connects{edge=pi-fab}"] == 1
    assert figures["fabrique_edge_bad_messages{edge=pi-fab}"] == 1
    assert figures["fabrique_edge_journal_backlog{edge=pi-fab}"] == 7
    assert "fabrique_edge_rejected{edge=pi-fab}" in figures  # what its status says it dropped
    # An offline edge reports no health: its gauges go away rather than freeze.
    wait_until(lambda: "pi-fab" not in hub.live.edge_health(), timeout=10, what="offline")
