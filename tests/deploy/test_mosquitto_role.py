"""The mosquitto role, rendered by Ansible for the example site, proven on a real broker.

The role is applied locally (``-c local``) to the example inventory with its example
vault; every path goes into a temporary folder and the listeners onto free ports. The
broker then runs with exactly the files the role wrote: the password file, the ACL of
DESIGN §3, the TLS listener with the certificates the role generated.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from tests.deploy.ansible_run import INVENTORY
from tests.deploy.conftest import RenderedBroker

pytestmark = [pytest.mark.deploy, pytest.mark.broker]

VAULT = yaml.safe_load((INVENTORY / "vault.example.yml").read_text())
SITE = "marseille-14"
HUB_PASSWORD = VAULT["vault_mqtt_hub_password"]
EDGES = VAULT["vault_mqtt_edge_passwords"]


class Client:
    """A paho MQTT 5 client that records what it receives and the broker's answers."""

    def __init__(
        self,
        port: int,
        user: str | None,
        password: str | None,
        *,
        ca: Path | None = None,
        tls_default: bool = False,
    ) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.subscribed = threading.Event()
        self.granted: list[int] = []
        self.rc: int | None = None
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"t-{user}-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5,
        )
        if user is not None:
            self.c.username_pw_set(user, password)
        if ca is not None:
            self.c.tls_set(ca_certs=str(ca))
        elif tls_default:
            self.c.tls_set()  # the system's CAs only: the site CA is not among them
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *_a: self.disconnected.set()
        self.c.on_message = lambda _c, _u, msg: self.received.append((msg.topic, msg.payload))
        self.c.on_subscribe = self._on_subscribe
        self.c.connect("localhost" if (ca or tls_default) else "127.0.0.1", port)
        self.c.loop_start()

    def _on_connect(
        self, _c: object, _u: object, _f: object, rc: mqtt.ReasonCode, _p: object
    ) -> None:
        self.rc = rc.value
        self.connected.set()

    def _on_subscribe(
        self, _c: object, _u: object, _mid: int, codes: list[mqtt.ReasonCode], _p: object
    ) -> None:
        self.granted = [c.value for c in codes]
        self.subscribed.set()

    def subscribe(self, topic: str) -> list[int]:
        self.subscribed.clear()
        self.c.subscribe(topic, qos=1)
        assert self.subscribed.wait(5)
        return self.granted

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> mqtt.MQTTMessageInfo:
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        return info

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def client(broker: RenderedBroker) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(user: str, password: str | None = None, **kw: object) -> Client:
        pw = password or (HUB_PASSWORD if user == "hub" else EDGES[user])
        port = broker.tls_port if kw.get("ca") else broker.local_port
        cl = Client(port, user, pw, **kw)  # type: ignore[arg-type]
        assert cl.connected.wait(10)
        assert cl.rc == 0, f"{user} refused: {cl.rc}"
        made.append(cl)
        return cl

    yield make
    for cl in made:
        cl.close()


def root(edge: str) -> str:
    return f"fabrique/v1/{SITE}/edge/{edge}"


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_the_role_is_idempotent_and_writes_what_the_broker_needs(broker: RenderedBroker) -> None:
    first, second = broker.runs
    assert first.changed > 0
    assert second.changed == 0, second.output[-3000:]
    conf = (broker.dir / "etc" / "mosquitto.conf").read_text()
    for line in (
        "allow_anonymous false",
        "set_tcp_nodelay true",
        "max_packet_size 1048576",
        "max_queued_messages 100000",
        "persistence true",
    ):
        assert line in conf.splitlines()
    passwd = (broker.dir / "etc" / "fabrique" / "passwd").read_text()
    assert HUB_PASSWORD not in passwd
    assert sorted(line.split(":")[0] for line in passwd.splitlines()) == sorted(["hub", *EDGES])
    assert (broker.dir / "etc" / "fabrique" / "passwd").stat().st_mode & 0o077 == 0
    assert (broker.dir / "etc" / "certs" / "server.key").stat().st_mode & 0o077 == 0


def test_an_edge_sends_its_badge_requests_and_reads_its_decisions(
    client: Callable[..., Client], broker: RenderedBroker
) -> None:
    hub = client("hub")
    assert hub.subscribe(f"{root('+')}/req/access") == [1]
    pi = client("pi-laser", ca=broker.ca)  # over the TLS listener, as deployed
    assert pi.subscribe(f"{root('pi-laser')}/cmd/#") == [1]
    assert pi.publish(f"{root('pi-laser')}/req/access", b"badge").rc == 0
    assert wait_for(lambda: (f"{root('pi-laser')}/req/access", b"badge") in hub.received)
    hub.publish(f"{root('pi-laser')}/cmd/access", b"granted")
    assert wait_for(lambda: (f"{root('pi-laser')}/cmd/access", b"granted") in pi.received)


def test_an_edge_answers_the_hubs_commands_on_its_own_outcome_topic_only(
    client: Callable[..., Client],
) -> None:
    hub = client("hub")
    assert hub.subscribe(f"{root('+')}/outcome") == [1]
    pi = client("pi-laser")
    forged = pi.c.publish(f"{root('pi-printers')}/outcome", b"forged-outcome", qos=1)
    forged.wait_for_publish(5)
    assert pi.publish(f"{root('pi-laser')}/outcome", b"applied").rc == 0
    assert wait_for(lambda: (f"{root('pi-laser')}/outcome", b"applied") in hub.received)
    assert not [t for t, p in hub.received if p == b"forged-outcome"]


def test_an_edge_cannot_write_outside_its_own_subtree(client: Callable[..., Client]) -> None:
    hub = client("hub")
    hub.subscribe(f"fabrique/v1/{SITE}/#")
    pi = client("pi-laser")
    forged = [
        f"{root('pi-printers')}/evt",
        f"{root('pi-printers')}/req/access",
        f"{root('pi-laser')}/cmd/access",
        f"{root('pi-laser')}/policy",
        f"fabrique/v1/{SITE}/hub/status",
    ]
    for topic in forged:
        hub_info = pi.c.publish(topic, b"forged", qos=1)
        hub_info.wait_for_publish(5)
    pi.publish(f"{root('pi-laser')}/evt", b"mine")
    assert wait_for(lambda: (f"{root('pi-laser')}/evt", b"mine") in hub.received)
    # Other tests leave retained statuses on this broker: look for the forged payload.
    assert not [t for t, p in hub.received if p == b"forged"]


def test_an_edge_reads_neither_another_edges_commands_nor_its_policy(
    client: Callable[..., Client],
) -> None:
    pi = client("pi-laser")
    pi.subscribe(f"{root('pi-printers')}/cmd/#")
    pi.subscribe(f"{root('pi-printers')}/policy")
    pi.subscribe(f"{root('pi-laser')}/cmd/#")
    hub = client("hub")
    hub.publish(f"{root('pi-printers')}/cmd/session", b"not-for-pi-laser")
    hub.publish(f"{root('pi-printers')}/policy", b"printers-policy", retain=True)
    hub.publish(f"{root('pi-laser')}/cmd/session", b"for-pi-laser")
    assert wait_for(lambda: any(p == b"for-pi-laser" for _, p in pi.received))
    assert [p for _, p in pi.received] == [b"for-pi-laser"]


@pytest.mark.parametrize(
    ("user", "password"),
    [(None, None), ("pi-laser", "wrong-password-for-pi-laser"), ("stranger", "x" * 20)],
)
def test_anonymous_and_wrong_passwords_are_refused(
    broker: RenderedBroker, user: str | None, password: str | None
) -> None:
    cl = Client(broker.local_port, user, password)
    assert cl.connected.wait(10)
    assert cl.rc not in (None, 0)
    cl.close()


def test_an_oversized_packet_is_refused(
    client: Callable[..., Client], broker: RenderedBroker
) -> None:
    hub = client("hub")
    hub.subscribe(f"{root('pi-laser')}/evt")
    pi = client("pi-laser")
    pi.c.publish(f"{root('pi-laser')}/evt", b"x" * (1024 * 1024 + 1), qos=1)
    assert pi.disconnected.wait(10), "the broker kept a client that sent a packet over the bound"
    time.sleep(0.2)
    assert hub.received == []


def test_tls_without_the_site_ca_is_refused(broker: RenderedBroker) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(broker.tls_port, "pi-laser", EDGES["pi-laser"], tls_default=True)
