"""Issue 12, "Forged messages": a client with broker access cannot command an edge.

Through the test's real Mosquitto, a real hub (not in demo mode: no derived keys) and
real agents, each edge holding its own key provisioned by the hub. The attacker is a
plain MQTT client that may publish on the edges' topics (a leaked password, a too-wide
ACL) and knows the site secret (any gaming PC holds it).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from devices.actuators import LatchedActuator, SimulatedActuator
from edge.agent import Agent
from edge.clock import FakeClock
from edge.feedback import FeedbackEvent
from edge.session import FeedbackKind
from hub import edgekeys, snapshots
from hub.alerts import FORGED_MESSAGES
from hub.db.models import Alert
from hub.edgekeys import EdgeKeys
from hub.policy import engine
from hub.policy.model import AccessQuery, Decision, Directory, LiveView, PolicyConfig
from hub.service import Hub
from protocol.files import write_private
from protocol.messages import (
    MAX_POLICY_PAYLOAD,
    AccessDecision,
    Availability,
    EdgeStatus,
    JournalCommand,
    MachineAction,
    MachineCommand,
    PolicySnapshot,
    SessionAction,
    SessionCommand,
    decode,
    encode,
)
from protocol.signing import (
    demo_edge_key,
    key_to_text,
    policy_key,
    sign,
    sign_snapshot,
    verify,
    verify_snapshot,
)
from protocol.topics import Topics
from tests.conftest import Broker
from tests.edge.conftest import (
    SECRET,
    UNKNOWN_UID,
    HubRunner,
    Site,
    edge_settings,
    hub_settings,
    member_uid,
    present,
    seed_site,
    state_of,
    wait_until,
)
from tests.hub.hubkit import Probe

pytestmark = pytest.mark.broker

T0 = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)


def actuator_of(agent: Agent, machine: str) -> SimulatedActuator:
    act = agent.unit(machine).actuator
    if isinstance(act, LatchedActuator):
        act = act.inner
    assert isinstance(act, SimulatedActuator)
    return act


class Site12:
    """A hub holding per-edge keys, its agents, an attacker's client and a gate on decisions."""

    def __init__(
        self,
        mosquitto: Broker,
        tmp_path: Path,
        edges: dict[str, int],
        keyless: tuple[str, ...] = (),
    ) -> None:
        self.broker = mosquitto
        self.tmp_path = tmp_path
        self.site: Site = seed_site(f"sqlite:///{tmp_path / 'hub.db'}", edges)
        self.topics = Topics(self.site.site)
        self.clock = FakeClock(wall=T0)
        self.keys_dir = tmp_path / "hub-keys"
        self.keys = EdgeKeys(self.keys_dir)
        for edge in edges:
            if edge not in keyless:
                self.keys.provision(edge)
        settings = hub_settings(
            self.site,
            mosquitto,
            demo=False,  # no key derived from the site secret, for anyone
            session_secret=secrets.token_hex(32),
            edge_keys_dir=self.keys_dir,
        )
        self.runner = HubRunner(self.site, mosquitto, self.clock.now)
        self.runner.settings = settings
        #: Decisions wait for this gate: the attacker's forgeries get there first.
        self.gate = threading.Event()
        self.gate.set()
        self.hub = Hub(
            settings,
            self.runner.factory,
            decide=self._gated,
            snapshot_workers=0,
            clock=self.clock.now,
        )
        self.hub.start()
        assert self.hub.wait_snapshots(30)
        self.agents: list[Agent] = []
        self.events: list[FeedbackEvent] = []

    def _gated(
        self, query: AccessQuery, directory: Directory, live: LiveView, cfg: PolicyConfig
    ) -> Decision:
        assert self.gate.wait(15), "the test never opened the gate"
        return engine.decide(query, directory, live, cfg)

    def key(self, edge: str) -> bytes:
        key = self.keys.key(edge)
        assert key is not None
        return key

    def agent(self, edge: str) -> Agent:
        key_file = self.tmp_path / f"{edge}.key"  # the copy given to the edge
        write_private(key_file, (key_to_text(self.key(edge)) + "\n").encode())
        settings = edge_settings(
            self.tmp_path,
            self.site.site,
            edge,
            self.broker.port,
            self.site.edges[edge],
            edge_key=None,
            edge_key_file=key_file,
        )
        agent = Agent(settings, clock=self.clock)
        agent.stream.subscribe(self.events.append)
        agent.start()
        self.agents.append(agent)
        wait_until(lambda: agent.hub_online, 15, "hub online")
        wait_until(lambda: agent.policy_version, 15, "policy snapshot")
        return agent

    def feedback(self, machine: str, kind: FeedbackKind) -> list[FeedbackEvent]:
        return [e for e in self.events if e.machine == machine and e.kind is kind]

    def close(self) -> None:
        self.gate.set()
        for agent in reversed(self.agents):
            agent.stop()
        self.hub.stop()
        self.runner.close()


@pytest.fixture
def site12(mosquitto: Broker, tmp_path: Path) -> Iterator[Callable[..., Site12]]:
    made: list[Site12] = []

    def make(edges: dict[str, int], keyless: tuple[str, ...] = ()) -> Site12:
        s = Site12(mosquitto, tmp_path, edges, keyless)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def attacker(s: Site12, *topics: str) -> Probe:
    return Probe(s.broker.host, s.broker.port, list(topics)).start()


def rejected(agent: Agent, reason: str) -> int:
    return agent.intake.rejections.get(reason, 0)


def forged_alerts(s: Site12, edge: str) -> list[str]:
    with s.runner.factory() as session:
        return list(
            session.scalars(
                select(Alert.detail).where(
                    Alert.kind == FORGED_MESSAGES,
                    Alert.edge_id == edge,
                    Alert.resolved_at.is_(None),
                )
            )
        )


def forgeries(s: Site12, message: Any, edge: str, other: str | None = None) -> list[bytes]:
    """What an attacker can make of ``message``: unsigned, with keys it can derive from
    the site secret (the demo fallback, contract v1's snapshot key), with another edge's."""
    out = [
        encode(message),
        encode(sign(message, demo_edge_key(SECRET.encode(), edge))),
        encode(sign(message, policy_key(SECRET.encode(), edge))),
    ]
    if other is not None:
        out.append(encode(sign(message, s.key(other))))
    return out


def test_a_forged_grant_is_dropped_and_the_real_refusal_wins(
    site12: Callable[..., Site12],
) -> None:
    s = site12({"pi-a": 1, "pi-b": 1})
    agent = s.agent("pi-a")
    spy = attacker(s, s.topics.req_access("pi-a"))
    try:
        s.gate.clear()  # the hub answers only once the forgeries were handled
        present(agent, "m-01", UNKNOWN_UID)
        request = spy.wait_for(lambda m: m.topic == s.topics.req_access("pi-a"), 5).json()
        forged = AccessDecision(
            req_id=request["req_id"],
            machine="m-01",
            granted=True,
            code="granted",
            message="Vas-y !",
            session_id="forged-session",
            ends_at=s.clock.now() + timedelta(hours=2),
            staff=True,
            not_after=s.clock.now() + timedelta(minutes=5),
        )
        payloads = forgeries(s, forged, "pi-a", other="pi-b")
        for payload in payloads:
            spy.publish(s.topics.cmd_access("pi-a"), payload)
        wait_until(lambda: rejected(agent, "mac") == len(payloads), 10, "forgeries dropped")
        assert state_of(agent, "m-01") == "awaiting_decision"
        s.gate.set()
        denied = wait_until(lambda: s.feedback("m-01", FeedbackKind.DENY), 10, "real refusal")
        assert "badge" in denied[0].message.lower()
        assert actuator_of(agent, "m-01").history == [False]
        assert agent.journal.last_seq() == 0  # no session was ever started
        # The count travels on the edge's retained status.
        status = attacker(s, s.topics.edge_status("pi-a"))
        try:
            status.wait_for(lambda m: decode(EdgeStatus, m.payload).rejected == len(payloads), 15)
        finally:
            status.stop()
        # ...and staff get one open alert about it.
        alert = wait_until(lambda: forged_alerts(s, "pi-a"), 10, "forged_messages alert")
        assert f"dropped {len(payloads)} message(s)" in alert[0]
    finally:
        spy.stop()


def test_forged_session_and_machine_commands_are_dropped(
    site12: Callable[..., Site12],
) -> None:
    s = site12({"pi-a": 2, "pi-b": 1})
    agent = s.agent("pi-a")
    present(agent, "m-01", member_uid(1))
    wait_until(lambda: state_of(agent, "m-01") == "active", 10, "granted by the real hub")
    session_id = agent.view("m-01").session.session_id
    assert session_id is not None  # an attacker reads it on the retained state/m-01
    later = s.clock.now() + timedelta(minutes=5)
    spy = attacker(s)
    try:
        n = 0
        for action in (SessionAction.END, SessionAction.EXTEND):
            cmd = SessionCommand(
                cmd_id=f"forged-{action.value}",
                session_id=session_id,
                action=action,
                minutes=600 if action is SessionAction.EXTEND else None,
                not_after=later,
            )
            for payload in forgeries(s, cmd, "pi-a", other="pi-b"):
                spy.publish(s.topics.cmd_session("pi-a"), payload)
                n += 1
        for i, machine in enumerate(("m-01", "m-02")):
            cmd_m = MachineCommand(
                cmd_id=f"forged-m-{i}",
                machine=machine,
                action=MachineAction.MAINTENANCE_ON,
                not_after=later,
            )
            for payload in forgeries(s, cmd_m, "pi-a", other="pi-b"):
                spy.publish(s.topics.cmd_machine("pi-a"), payload)
                n += 1
        wait_until(lambda: rejected(agent, "mac") == n, 10, "forgeries dropped")
        assert state_of(agent, "m-01") == "active"
        assert agent.view("m-01").session.session_id == session_id
        assert agent.view("m-02").availability is Availability.FREE
        # The hub's own commands, signed with pi-a's key, still work.
        wait_until(lambda: s.hub.end_session(session_id, "On range !"), 5, "hub knows it")
        wait_until(lambda: state_of(agent, "m-01") == "idle", 10, "ended by staff")
        assert s.hub.machine_command("m-02", MachineAction.MAINTENANCE_ON)
        wait_until(
            lambda: agent.view("m-02").availability is Availability.MAINTENANCE, 10, "maint."
        )
        assert rejected(agent, "mac") == n
    finally:
        spy.stop()


def test_an_ack_through_beyond_the_journal_is_refused(site12: Callable[..., Site12]) -> None:
    s = site12({"pi-a": 1})
    agent = s.agent("pi-a")
    present(agent, "m-01", member_uid(1))
    wait_until(lambda: state_of(agent, "m-01") == "active", 10, "active")
    wait_until(lambda: agent.acked_through == 1, 10, "session_started acknowledged")
    spy = attacker(s)
    try:
        forged = JournalCommand(ack_through=10**9, not_after=s.clock.now() + timedelta(minutes=5))
        for payload in forgeries(s, forged, "pi-a"):
            spy.publish(s.topics.cmd_journal("pi-a"), payload)
        wait_until(lambda: rejected(agent, "mac") == 3, 10, "forged acks dropped")
        # Even under the edge's own key (a confused hub) it is refused: nothing beyond
        # what the journal holds can have been received.
        spy.publish(s.topics.cmd_journal("pi-a"), encode(sign(forged, s.key("pi-a"))))
        wait_until(lambda: rejected(agent, "ack_beyond") == 1, 10, "ack beyond refused")
        assert agent.acked_through == 1
        # The journal keeps flowing: the session's end is sent and acknowledged.
        present(agent, "m-01", member_uid(1))
        wait_until(lambda: state_of(agent, "m-01") == "idle", 10, "badged out")
        last = agent.journal.last_seq()
        assert last > 1
        wait_until(lambda: agent.acked_through == last, 10, "journal acknowledged")
    finally:
        spy.stop()


def test_an_oversized_snapshot_is_refused_before_parsing(site12: Callable[..., Site12]) -> None:
    s = site12({"pi-a": 1, "pi-b": 1})
    agent = s.agent("pi-a")
    version = agent.policy_version
    spy = attacker(s)
    try:
        # Not even JSON past the first byte: it is refused on its size alone.
        spy.publish(s.topics.policy("pi-a"), b"{" + b" " * MAX_POLICY_PAYLOAD)
        wait_until(lambda: rejected(agent, "oversized") == 1, 10, "oversized dropped")
        assert agent.policy_version == version
        # A newer snapshot signed with what the site secret gives (contract v1's key, the
        # demo key) or with another edge's key is refused too.
        current = agent.policy.snapshot
        assert current is not None
        assert version is not None
        newer = current.model_copy(update={"version": version + 1, "signature": ""})
        for key in (
            policy_key(SECRET.encode(), "pi-a"),
            demo_edge_key(SECRET.encode(), "pi-a"),
            s.key("pi-b"),
        ):
            spy.publish(s.topics.policy("pi-a"), encode(sign_snapshot(newer, key)))
        wait_until(lambda: rejected(agent, "signature") == 3, 10, "forged snapshots dropped")
        assert agent.policy_version == version
        # The edge keeps serving.
        present(agent, "m-01", member_uid(1))
        wait_until(lambda: state_of(agent, "m-01") == "active", 10, "still answering")
    finally:
        spy.stop()


def test_a_replayed_stale_command_is_dropped(site12: Callable[..., Site12]) -> None:
    s = site12({"pi-a": 1})
    agent = s.agent("pi-a")
    spy = attacker(s, s.topics.cmd_machine("pi-a"))
    try:
        assert s.hub.machine_command("m-01", MachineAction.MAINTENANCE_ON)
        wait_until(lambda: agent.view("m-01").availability is Availability.MAINTENANCE, 10, "on")
        assert s.hub.machine_command("m-01", MachineAction.MAINTENANCE_OFF)
        wait_until(lambda: agent.view("m-01").availability is Availability.FREE, 10, "off")
        captured = spy.wait_for(lambda m: b"maintenance_on" in m.payload, 5).payload
        genuine = decode(MachineCommand, captured)
        assert verify(genuine, s.key("pi-a"))
        # Past its not_after (on the edge's clock), the genuine message replayed is dropped.
        ttl = (genuine.not_after - s.clock.now()).total_seconds()
        s.clock.advance(ttl + 1)
        agent.wake()
        spy.publish(s.topics.cmd_machine("pi-a"), captured)
        wait_until(lambda: rejected(agent, "stale") == 1, 10, "stale replay dropped")
        assert agent.view("m-01").availability is Availability.FREE
    finally:
        spy.stop()


def test_one_edges_key_cannot_verify_another_edges_messages(
    site12: Callable[..., Site12],
) -> None:
    s = site12({"pi-a": 1, "pi-b": 1})
    a = s.agent("pi-a")
    b = s.agent("pi-b")
    spy = attacker(s, s.topics.cmd_access("pi-b"), s.topics.policy("pi-b"))
    try:
        present(b, "m-02", member_uid(2))
        wait_until(lambda: state_of(b, "m-02") == "active", 10, "b granted")
        grant_b = spy.wait_for(lambda m: m.topic == s.topics.cmd_access("pi-b"), 5).payload
        snap_b = spy.wait_for(lambda m: m.topic == s.topics.policy("pi-b"), 5).payload
        decision = decode(AccessDecision, grant_b)
        snapshot = decode(PolicySnapshot, snap_b)
        assert verify(decision, s.key("pi-b"))
        assert verify_snapshot(snapshot, s.key("pi-b"))
        assert not verify(decision, s.key("pi-a"))
        assert not verify_snapshot(snapshot, s.key("pi-a"))
        # pi-b's genuine grant, replayed to pi-a for pi-a's own pending request.
        s.gate.clear()
        req_spy = attacker(s, s.topics.req_access("pi-a"))
        try:
            present(a, "m-01", UNKNOWN_UID)
            request = req_spy.wait_for(lambda m: m.topic == s.topics.req_access("pi-a")).json()
        finally:
            req_spy.stop()
        moved = decision.model_copy(update={"req_id": request["req_id"], "machine": "m-01"})
        spy.publish(s.topics.cmd_access("pi-a"), encode(moved))
        wait_until(lambda: rejected(a, "mac") == 1, 10, "b's grant dropped by a")
        s.gate.set()
        wait_until(lambda: s.feedback("m-01", FeedbackKind.DENY), 10, "real refusal")
        assert actuator_of(a, "m-01").history == [False]
    finally:
        spy.stop()


def test_an_edge_keyed_while_the_hub_runs_gets_its_snapshot_and_answers(
    site12: Callable[..., Site12], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "KEY_RETRY_S", 0.5)  # 15 s in production
    monkeypatch.setattr(edgekeys, "CACHE_S", 0.0)  # 10 s in production
    s = site12({"pi-a": 1, "pi-b": 1}, keyless=("pi-b",))
    assert s.hub.snapshot_of("pi-a") is not None
    assert s.hub.snapshot_of("pi-b") is None  # no key: nothing signed, nothing sent
    s.keys.provision("pi-b")  # what `fabrique hub edge-key pi-b` does, the hub running
    b = s.agent("pi-b")  # online, and its snapshot came without a restart
    present(b, "m-02", member_uid(2))
    wait_until(lambda: state_of(b, "m-02") == "active", 10, "granted online")
    assert rejected(b, "mac") == 0
