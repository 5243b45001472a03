"""The site ACL template, proven against a real Mosquitto with passwords.

An edge must publish only under its own ``edge/{edge}/`` and read only its own
commands, policy and the hub's status (DESIGN §3). This renders the template the
Ansible role installs and tries both the allowed and the forbidden moves.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import Broker

ROOT = Path(__file__).resolve().parents[2]
SITE = "acl-site"
USERS = {"hub": "hub-pass-123", "observer": "obs-pass-123", "pi-1": "pi1-pass-123", "pi-2": "pi2"}


def render(template: str, values: dict[str, str]) -> str:
    """Render the ``{{ name }}`` placeholders of a simple Jinja2 template."""

    def sub(match: re.Match[str]) -> str:
        return values[match.group(1)]

    out = re.sub(r"\{\{\s*(\w+)\s*\}\}", sub, template)
    assert "{{" not in out
    return out


@pytest.fixture(scope="module")
def secured(
    mosquitto_factory: Callable[..., Broker], tmp_path_factory: pytest.TempPathFactory
) -> Broker:
    d = tmp_path_factory.mktemp("acl")
    pw = d / "passwd"
    pw.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()))
    subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True)
    acl = d / "acl"
    acl.write_text(
        render(
            (ROOT / "ansible/roles/mosquitto/templates/acl.j2").read_text(),
            {
                "fabrique_site": SITE,
                "fabrique_hub_user": "hub",
                "fabrique_observer_user": "observer",
            },
        )
    )
    return mosquitto_factory(f"password_file {pw}\nacl_file {acl}", anonymous=False)


class Client:
    """A paho client that records what it receives."""

    def __init__(self, broker: Broker, user: str, password: str) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.granted: list[int] = []
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.rc: int | None = None
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.monotonic_ns()}"
        )
        self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, msg: self.received.append((msg.topic, msg.payload))
        self.c.on_subscribe = self._on_subscribe
        self.c.connect(broker.host, broker.port)
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

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def clients(secured: Broker) -> Iterator[Callable[[str], Client]]:
    made: list[Client] = []

    def make(user: str, password: str | None = None) -> Client:
        cl = Client(secured, user, password or USERS[user])
        assert cl.connected.wait(5)
        made.append(cl)
        return cl

    yield make
    for cl in made:
        cl.close()


def root(edge: str) -> str:
    return f"fabrique/v1/{SITE}/edge/{edge}"


def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_wrong_password_is_refused(secured: Broker) -> None:
    cl = Client(secured, "pi-1", "wrong")
    assert cl.connected.wait(5)
    assert cl.rc != 0
    cl.close()


def test_edge_publishes_only_under_its_own_prefix(clients: Callable[..., Client]) -> None:
    hub = clients("hub")
    assert hub.subscribe(f"fabrique/v1/{SITE}/edge/#") == [1]
    pi1 = clients("pi-1")
    pi1.publish(f"{root('pi-2')}/evt", b"forged")
    pi1.publish(f"{root('pi-1')}/req/access", b"spoofed-cmd-direction")
    pi1.publish(f"{root('pi-1')}/cmd/access", b"forged-decision")
    pi1.publish(f"{root('pi-1')}/evt", b"mine")
    assert wait_for(lambda: any(p == b"mine" for _, p in hub.received))
    topics = {t for t, _ in hub.received}
    assert f"{root('pi-2')}/evt" not in topics
    assert f"{root('pi-1')}/cmd/access" not in topics
    assert f"{root('pi-1')}/req/access" in topics


def test_edge_reads_only_its_own_commands(clients: Callable[..., Client]) -> None:
    pi1 = clients("pi-1")
    assert pi1.subscribe(f"{root('pi-1')}/cmd/#") == [1]
    # Subscribing to someone else's commands is either refused or delivers nothing.
    pi1.subscribe(f"{root('pi-2')}/cmd/#")
    pi1.subscribe(f"fabrique/v1/{SITE}/edge/+/req/access")
    hub = clients("hub")
    hub.publish(f"{root('pi-2')}/cmd/access", b"not-for-pi-1")
    hub.publish(f"{root('pi-2')}/req/access", b"pi-2-request")
    hub.publish(f"{root('pi-1')}/cmd/access", b"for-pi-1")
    assert wait_for(lambda: any(p == b"for-pi-1" for _, p in pi1.received))
    assert [p for _, p in pi1.received] == [b"for-pi-1"]


def test_observer_reads_telemetry_but_cannot_command(clients: Callable[..., Client]) -> None:
    obs = clients("observer")
    obs.subscribe(f"fabrique/v1/{SITE}/edge/+/tele/+")
    pi1 = clients("pi-1")
    pi1.subscribe(f"{root('pi-1')}/cmd/#")
    obs.publish(f"{root('pi-1')}/cmd/session", b"forged-end")
    pi1.publish(f"{root('pi-1')}/tele/m-1", b"42")
    assert wait_for(lambda: any(p == b"42" for _, p in obs.received))
    time.sleep(0.2)  # give a forged command the time it would need to arrive
    assert pi1.received == []
