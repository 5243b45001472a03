"""Trivial echo responder for ``bench/hotpath.py``: the floor a hub can be measured against.

Usage: ``python bench/_echo_proc.py hub.toml`` (the benchmark's generated hub
configuration: it reads ``site``, ``mqtt_host`` and ``mqtt_port``). It subscribes to
every edge's ``req/access`` only, answers each request at once with a refusal built
from a byte template (no validation, no policy, no log) on the request's
``cmd/access`` at the QoS the contract gives ``cmd/access``, and announces a retained
``hub/status`` online so that the benchmark sees it ready. Same paho client, same
socket options and same external-loop-free ``loop_forever`` as any simple client.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from protocol.contract import spec
from protocol.messages import HubStatus, encode
from protocol.topics import Kind, Topics


def main(argv: list[str]) -> int:
    cfg = tomllib.loads(Path(argv[0]).read_text())
    topics = Topics(cfg["site"])
    qos = spec(Kind.CMD_ACCESS).qos
    prefix = f"{topics.root}/edge/"
    not_after = (datetime.now(UTC) + timedelta(hours=6)).isoformat()

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            req = json.loads(msg.payload)
            edge = msg.topic[len(prefix) :].split("/", 1)[0]
            body = (
                f'{{"v":1,"req_id":"{req["req_id"]}","machine":"{req["machine"]}",'
                f'"granted":false,"code":"echo","message":"","not_after":"{not_after}"}}'
            )
        except (ValueError, KeyError, TypeError):
            return
        c.publish(f"{prefix}{edge}/{Kind.CMD_ACCESS.value}", body, qos=qos)

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        c.subscribe(topics.all_edges(Kind.REQ_ACCESS), qos=1)
        online = HubStatus(online=True, ts=datetime.now(UTC), version="echo")
        c.publish(topics.hub_status(), encode(online), qos=1, retain=True)

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=cfg.get("mqtt_client_id", "bench-echo"),
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    client.max_inflight_messages_set(50)
    client.max_queued_messages_set(0)
    client.on_socket_open = lambda _c, _u, s: s.setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
    )
    client.on_connect = on_connect
    client.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    signal.signal(signal.SIGINT, lambda *_: client.disconnect())
    client.connect(cfg["mqtt_host"], int(cfg["mqtt_port"]), keepalive=30)
    client.loop_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
