"""The hub's MQTT link against a real Mosquitto: bad input, TCP_NODELAY, will, reconnects."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.service import Hub
from protocol.messages import HubStatus, decode
from tests.conftest import Broker
from tests.hub.hubkit import (
    NOW,
    Probe,
    Received,
    Seed,
    dumps,
    migrated,
    seed,
    settings_for,
    wait_until,
)

pytestmark = pytest.mark.broker


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[Callable[[Broker], tuple[Hub, Seed]]]:
    started: list[Hub] = []

    def make(broker: Broker) -> tuple[Hub, Seed]:
        db_url = f"sqlite:///{tmp_path / f'hub-{len(started)}.db'}"
        factory = migrated(db_url)
        ids = seed(factory)
        hub = Hub(settings_for(db_url, broker), factory, clock=lambda: NOW, snapshot_workers=0)
        hub.start()
        started.append(hub)
        assert hub.mqtt.wait_connected(10)
        return hub, ids

    yield make
    for hub in started:
        hub.stop()


def request(ids: Seed, edge: str = "pi-fab", **changes: Any) -> dict[str, Any]:
    body = {
        "v": 1,
        "req_id": uuid.uuid4().hex,
        "edge": edge,
        "machine": "printer-1",
        "badge": ids.badge_alice,
        "ts": NOW.isoformat(),
    }
    body.update(changes)
    return body


def answer_to(req_id: str) -> Callable[[Received], bool]:
    return lambda m: bool(m.json()["req_id"] == req_id)


def test_each_bad_message_is_counted_and_the_next_good_one_answered(
    mosquitto: Broker, make_hub: Callable[[Broker], tuple[Hub, Seed]]
) -> None:
    hub, ids = make_hub(mosquitto)
    t = hub.topics
    req = t.req_access("pi-fab")
    missing_badge = request(ids)
    del missing_badge["badge"]
    bad: list[tuple[str, str, bytes]] = [
        ("malformed", req, b'{"v": 1, "req_id": '),  # invalid JSON
        ("malformed", req, b"42"),
        ("malformed", req, b"null"),
        ("schema", req, dumps(missing_badge)),
        ("malformed", req, b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'),  # 1 MB
        ("edge_mismatch", req, dumps(request(ids, edge="pi-game"))),  # foreign edge in body
        ("version", req, dumps({k: v for k, v in request(ids).items() if k != "v"})),
        ("id", f"{t.root}/edge/PI_FAB/req/access", dumps(request(ids))),
        ("malformed", t.evt("pi-fab"), b"[1, 2]"),
        ("schema", t.edge_status("pi-fab"), b'{"v": 1, "online": "maybe", "epoch": 1}'),
    ]
    edge = Probe(mosquitto.host, mosquitto.port, [t.cmd_access("pi-fab")]).start()
    try:
        good_ids: list[str] = []
        for _reason, topic, payload in bad:
            edge.publish(topic, payload)
            good = request(ids)
            good_ids.append(good["req_id"])
            edge.publish(req, dumps(good))
            answer = edge.wait_for(answer_to(good["req_id"]))
            assert answer.json()["granted"] is True
            assert answer.json()["code"] == "granted"
        answered = [m.json()["req_id"] for m in edge.on(t.cmd_access("pi-fab"))]
    finally:
        edge.stop()

    assert answered == good_ids  # every good request answered, no bad one ever was
    expected: dict[str, int] = {}
    for reason, _topic, _payload in bad:
        expected[reason] = expected.get(reason, 0) + 1
    # The bad event came on the hub's second connection (events ride beside telemetry):
    # counted on its own thread, maybe just after the last good answer.
    wait_until(lambda: hub.metrics.labelled("bad_messages") == expected, 10, "bad messages")
    assert hub.metrics.get("bad_messages") == len(bad)
    assert hub.metrics.get("decisions", "granted") == len(bad)
    assert "10 messages rejetés" in hub.status_line().replace("\u202f", " ")


def test_hub_socket_has_tcp_nodelay(
    mosquitto: Broker, make_hub: Callable[[Broker], tuple[Hub, Seed]]
) -> None:
    hub, _ids = make_hub(mosquitto)
    sock = hub.mqtt.socket()
    assert isinstance(sock, socket.socket)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_last_will_then_reconnect_announces_online_again(
    mosquitto: Broker, make_hub: Callable[[Broker], tuple[Hub, Seed]]
) -> None:
    hub, _ids = make_hub(mosquitto)
    status_topic = hub.topics.hub_status()
    watcher = Probe(mosquitto.host, mosquitto.port, [status_topic]).start()
    try:
        watcher.wait_for(lambda m: m.json()["online"] is True)
        # Drop the TCP connection without DISCONNECT: the broker publishes the will.
        hub.mqtt.socket().shutdown(socket.SHUT_RDWR)
        will = watcher.wait_for(lambda m: m.json()["online"] is False, timeout=10)
        assert decode(HubStatus, will.payload).online is False
        back = watcher.wait_for(
            lambda m: m.json()["online"] is True and m is not watcher.messages[0], timeout=10
        )
        # By identity: a QoS 1 announce cut off before its PUBACK is resent, equal to the first.
        order = [id(m) for m in watcher.messages]
        assert order.index(id(back)) > order.index(id(will))
    finally:
        watcher.stop()
    assert hub.mqtt.wait_connected(10)
    assert hub.metrics.get("mqtt_connects") >= 2


def test_broker_restart_reconnects_and_republishes_retained_state(
    mosquitto_factory: Callable[..., Broker],
    make_hub: Callable[[Broker], tuple[Hub, Seed]],
) -> None:
    broker = mosquitto_factory()
    hub, ids = make_hub(broker)
    assert hub.wait_snapshots()  # compiled and published before the restart
    first_socket = hub.mqtt.socket()
    broker.restart()  # persistence is off: every retained message is gone

    wait_until(lambda: hub.mqtt.socket() not in (None, first_socket), 15, "new socket")
    assert hub.mqtt.wait_connected(15)
    assert hub.mqtt.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    t = hub.topics
    edge = Probe(
        broker.host, broker.port, [t.policy("pi-fab"), t.hub_status(), t.cmd_access("pi-fab")]
    )
    edge.start()
    try:
        edge.wait_for(lambda m: m.topic == t.policy("pi-fab"))  # republished on reconnect
        late = Probe(broker.host, broker.port, [t.policy("pi-fab"), t.hub_status()]).start()
        try:  # ... and retained: a subscriber arriving later still gets both
            status = late.wait_for(lambda m: m.topic == t.hub_status())
            policy = late.wait_for(lambda m: m.topic == t.policy("pi-fab"))
        finally:
            late.stop()
        assert status.retain
        assert json.loads(status.payload)["online"] is True
        assert policy.retain
        assert json.loads(policy.payload)["edge"] == "pi-fab"
        good = request(ids)
        edge.publish(t.req_access("pi-fab"), dumps(good))
        answer = edge.wait_for(lambda m: m.topic == t.cmd_access("pi-fab"))
        assert answer.json()["req_id"] == good["req_id"]
    finally:
        edge.stop()
