"""The decision path of issue 15 against a real Mosquitto: buffered reads, QoS 0 answers,
telemetry on its own connection (and the single connection still working when asked)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hub.service import Hub
from protocol.contract import spec
from protocol.topics import Kind
from tests.conftest import Broker
from tests.hub.hubkit import NOW, Seed, dumps, migrated, seed, settings_for, wait_until

pytestmark = pytest.mark.broker


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[Callable[..., tuple[Hub, Seed]]]:
    started: list[Hub] = []

    def make(broker: Broker, **overrides: Any) -> tuple[Hub, Seed]:
        db_url = f"sqlite:///{tmp_path / f'hub-{len(started)}.db'}"
        factory = migrated(db_url)
        ids = seed(factory)
        settings = settings_for(db_url, broker, **overrides)
        hub = Hub(settings, factory, clock=lambda: NOW, snapshot_workers=0)
        hub.start()
        started.append(hub)
        assert hub.mqtt.wait_connected(10)
        return hub, ids

    yield make
    for hub in started:
        hub.stop()


class Edge:
    """A raw paho edge that records each answer with the QoS it was delivered at."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self.answers: dict[str, int] = {}
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"edge-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(5)

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        import json

        with self._cond:
            self.answers[json.loads(msg.payload)["req_id"]] = msg.qos
            self._cond.notify_all()

    def wait_answers(self, n: int, timeout: float = 20.0) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.answers) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.answers)} of {n} answers within {timeout}s"
                self._cond.wait(left)
            return dict(self.answers)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _request(ids: Seed) -> dict[str, Any]:
    return {
        "v": 1,
        "req_id": uuid.uuid4().hex,
        "edge": "pi-fab",
        "machine": "printer-1",
        "badge": ids.badge_alice,
        "ts": NOW.isoformat(),
    }


def test_a_burst_of_requests_is_answered_once_each_at_the_contract_qos(
    mosquitto: Broker, make_hub: Callable[..., tuple[Hub, Seed]]
) -> None:
    """Hundreds of requests sent back to back reach the hub in few large reads (packets
    split across reads included); every one is answered once, at QoS 0."""
    hub, ids = make_hub(mosquitto, throttle_requests_burst=1000.0)  # not a flood test
    edge = Edge(mosquitto, hub.topics.cmd_access("pi-fab"))
    try:
        sent = [_request(ids) for _ in range(400)]
        for body in sent:  # no wait between publishes: the broker batches them
            edge.client.publish(hub.topics.req_access("pi-fab"), dumps(body), qos=1)
        answers = edge.wait_answers(len(sent))
    finally:
        edge.stop()
    assert set(answers) == {b["req_id"] for b in sent}
    assert set(answers.values()) == {spec(Kind.CMD_ACCESS).qos} == {0}
    assert hub.metrics.get("decisions", "granted") == len(sent)
    assert hub.metrics.get("bad_messages") == 0


@pytest.mark.parametrize("own_connection", [True, False])
def test_telemetry_reaches_the_hub_with_or_without_its_own_connection(
    mosquitto: Broker, make_hub: Callable[..., tuple[Hub, Seed]], own_connection: bool
) -> None:
    hub, ids = make_hub(mosquitto, mqtt_telemetry_connection=own_connection)
    assert (hub.mqtt._tele_client is not None) is own_connection
    tele = {"v": 1, "machine": "printer-1", "ts": NOW.isoformat(), "values": {"nozzle": 210.5}}
    edge = Edge(mosquitto, hub.topics.cmd_access("pi-fab"))
    try:
        edge.client.publish(hub.topics.tele("pi-fab", "printer-1"), dumps(tele), qos=0)
        wait_until(lambda: ("pi-fab", "printer-1") in hub.live.latest_telemetry(), what="telemetry")
        body = _request(ids)
        edge.client.publish(hub.topics.req_access("pi-fab"), dumps(body), qos=1)
        assert body["req_id"] in edge.wait_answers(1)
    finally:
        edge.stop()
    assert hub.live.latest_telemetry()[("pi-fab", "printer-1")].values == {"nozzle": 210.5}
    assert hub.metrics.get("messages", "tele") == 1


def test_journal_events_sent_while_the_hub_is_down_wait_on_its_second_connection(
    mosquitto: Broker, tmp_path: Path
) -> None:
    """Events ride the second connection (beside telemetry, out of the decisions' way),
    which is persistent: what an edge journals while the hub restarts waits in the broker
    and is applied when the hub is back."""
    from sqlalchemy import func, select

    from hub.db.models import EdgeEvent
    from tests.hub.hubkit import Journal

    db_url = f"sqlite:///{tmp_path / 'hub.db'}"
    factory = migrated(db_url)
    seed(factory)
    settings = settings_for(db_url, mosquitto, mqtt_client_id=f"hub-{uuid.uuid4().hex[:8]}")

    def events() -> int:
        with factory() as s:
            return int(s.scalar(select(func.count()).select_from(EdgeEvent)) or 0)

    first = Hub(settings, factory, clock=lambda: NOW, snapshot_workers=0)
    first.start()
    assert first.mqtt.wait_connected(10)
    assert Kind.EVT not in {k for k, _qos in first.mqtt._subscriptions}  # not on decisions
    first.stop()
    edge = Edge(mosquitto, first.topics.cmd_access("pi-fab"))
    journal = Journal("pi-fab")
    try:
        body = {"machine": "printer-1", "code": "printer", "detail": "buse"}
        for _ in range(3):
            edge.client.publish(
                first.topics.evt("pi-fab"), dumps(journal.event("machine_fault", body)), qos=1
            ).wait_for_publish(5)
        assert events() == 0
        second = Hub(settings, factory, clock=lambda: NOW, snapshot_workers=0)
        second.start()
        try:
            wait_until(lambda: events() == 3, what="the events queued while the hub was down")
        finally:
            second.stop()
    finally:
        edge.stop()
