"""The hub service through a real broker: decisions, liveness, snapshots, commands."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from hub.control import HubControl
from hub.db.engine import transaction
from hub.db.models import AccessLog, Alert, Badge, StaffPresence, UsageSession
from hub.policy.model import AccessQuery, Decision, Directory, LiveView, PolicyConfig
from hub.service import Hub
from protocol.messages import (
    AccessDecision,
    HubStatus,
    MachineAction,
    MachineCommand,
    PolicySnapshot,
    SessionCommand,
    decode,
    utcnow,
)
from protocol.signing import demo_edge_key, verify_snapshot
from protocol.topics import Kind
from tests.conftest import Broker
from tests.hub.hubkit import (
    NOW,
    SECRET,
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
    edge: Probe  # subscribed to every command and policy topic of the site

    def ask(self, badge: str, machine: str, edge: str = "pi-fab") -> AccessDecision:
        """Send a badge request as ``edge`` and wait for the hub's answer."""
        req_id = uuid.uuid4().hex
        payload = {
            "v": 1,
            "req_id": req_id,
            "edge": edge,
            "machine": machine,
            "badge": badge,
            "ts": NOW.isoformat(),
        }
        self.edge.publish(self.hub.topics.req_access(edge), dumps(payload))
        msg = self.edge.wait_for(
            lambda m: m.topic.endswith("/cmd/access") and m.json()["req_id"] == req_id
        )
        assert not msg.retain
        return decode(AccessDecision, msg.payload)


def start_site(broker: Broker, tmp_path: Path, **hub_kwargs: Any) -> Site:
    db_url = f"sqlite:///{tmp_path / 'hub.db'}"
    factory = migrated(db_url)
    ids = seed(factory)
    hub_kwargs.setdefault("snapshot_workers", 0)
    hub = Hub(settings_for(db_url, broker), factory, clock=lambda: NOW, **hub_kwargs)
    hub.start()
    assert hub.mqtt.wait_connected(10)
    t = hub.topics
    edge = Probe(broker.host, broker.port, [f"{t.root}/edge/+/cmd/#", t.all_edges(Kind.POLICY)])
    edge.start()
    return Site(hub, ids, edge)


@pytest.fixture
def site(mosquitto: Broker, tmp_path: Path) -> Iterator[Site]:
    s = start_site(mosquitto, tmp_path)
    yield s
    s.edge.stop()
    s.hub.stop()


def test_grants_and_refusals_round_trip(site: Site) -> None:
    ids, hub = site.ids, site.hub
    grant = site.ask(ids.badge_alice, "printer-1")
    assert grant.granted
    assert grant.code == "granted"
    assert grant.first_name == "Alice"
    assert not grant.staff
    assert grant.session_id is not None
    assert len(grant.session_id) == 32
    assert grant.ends_at is not None
    assert grant.ends_at > NOW
    assert grant.not_after == NOW + timedelta(seconds=hub.settings.decision_ttl_s)

    busy = site.ask(ids.badge_bob, "printer-1")  # reserved by Alice's fresh grant
    assert (busy.granted, busy.code) == (False, "machine_busy")
    untrained = site.ask(ids.badge_bob, "laser-1")
    assert (untrained.granted, untrained.code) == (False, "training_missing")
    assert "formation" in untrained.message.lower()
    unknown = site.ask("0" * 64, "laser-1")
    assert (unknown.granted, unknown.code, unknown.session_id) == (False, "unknown_badge", None)
    revoked = site.ask(ids.badge_revoked, "laser-1")
    assert revoked.code == "badge_revoked"
    foreign = site.ask(ids.badge_alice, "pc-1")  # pc-1 belongs to pi-game, not pi-fab
    assert foreign.code == "unknown_machine"

    assert hub.metrics.get("decisions", "granted") == 1
    assert hub.metrics.get("decisions", "denied") == 5
    assert hub.accesslog.flush()
    with hub._factory() as s:
        rows = s.scalars(select(AccessLog).order_by(AccessLog.id)).all()
    assert [(r.code, r.member_id, r.offline) for r in rows] == [
        ("granted", ids.alice, False),
        ("machine_busy", ids.bob, False),
        ("training_missing", ids.bob, False),
        ("unknown_badge", None, False),
        ("badge_revoked", ids.alice, False),
        ("unknown_machine", ids.alice, False),
    ]
    assert rows[0].session_id == grant.session_id


def test_staff_badge_marks_presence_in_the_zone(site: Site) -> None:
    ids, hub = site.ids, site.hub
    grant = site.ask(ids.badge_sam, "laser-1")
    assert grant.granted
    assert grant.staff
    assert grant.code == "granted_staff"
    assert hub.live.staff_present(NOW) == {"fablab": frozenset({ids.sam})}
    assert hub.accesslog.flush()
    with hub._factory() as s:
        marks = s.scalars(select(StaffPresence)).all()
    assert [(m.member_id, m.zone_id, m.since) for m in marks] == [(ids.sam, "fablab", NOW)]
    assert marks[0].until == NOW + timedelta(hours=hub.settings.staff_presence_h)


def test_presence_marked_on_the_api_reaches_the_live_state(site: Site) -> None:
    """The API writes staff_presence rows then calls reference_changed()."""
    ids, hub = site.ids, site.hub
    grant = site.ask(ids.badge_sam, "laser-1")  # a staff grant marks presence (batched)
    assert grant.staff
    with transaction(hub._factory) as s:
        s.add(
            StaffPresence(
                member_id=ids.sam, zone_id="gaming", since=NOW, until=NOW + timedelta(hours=1)
            )
        )
    hub.reference_changed()
    assert hub.live.staff_present(NOW) == {
        "fablab": frozenset({ids.sam}),  # the grant's mark was flushed, not lost
        "gaming": frozenset({ids.sam}),
    }
    with transaction(hub._factory) as s:  # "mark me absent" everywhere
        for row in s.scalars(select(StaffPresence)):
            s.delete(row)
    hub.reference_changed()
    assert hub.live.staff_present(NOW) == {}


def test_stale_last_will_does_not_take_a_newer_connection_offline(site: Site) -> None:
    hub, ids, edge = site.hub, site.ids, site.edge
    status = hub.topics.edge_status("pi-fab")

    def publish(online: bool, epoch: int) -> None:
        payload = {"v": 1, "online": online, "epoch": epoch, "machines": ["laser-1", "printer-1"]}
        edge.publish(status, dumps(payload), retain=True)

    publish(True, 5)
    wait_until(lambda: hub.edges_online() == {"pi-fab": True}, what="edge online")
    publish(False, 4)  # the will of the previous connection, delivered late
    wait_until(lambda: hub.metrics.get("stale_status") == 1, what="stale status counted")
    assert hub.edges_online() == {"pi-fab": True}
    assert site.ask(ids.badge_alice, "printer-1").granted

    publish(False, 5)  # the will of the current connection
    wait_until(lambda: hub.edges_online() == {"pi-fab": False}, what="edge offline")
    assert hub.live.machines_offline() >= {"laser-1", "printer-1"}
    assert site.ask(ids.badge_sam, "laser-1").code == "machine_offline"
    edge.publish(status, b"", retain=True)  # leave no retained status on the shared broker


def test_machine_state_and_telemetry_are_tracked(site: Site) -> None:
    hub, ids, edge = site.hub, site.ids, site.edge
    t = hub.topics
    state = {"v": 1, "machine": "laser-1", "availability": "fault", "ts": NOW.isoformat()}
    edge.publish(t.state("pi-fab", "laser-1"), dumps(state), retain=True)
    tele = {"v": 1, "machine": "printer-1", "ts": NOW.isoformat(), "values": {"nozzle": 210.5}}
    edge.publish(t.tele("pi-fab", "printer-1"), dumps(tele), qos=0)
    wait_until(lambda: "printer-1" in {m for _, m in hub.live.latest_telemetry()}, what="tele")

    assert hub.machine_states()["laser-1"].availability == "fault"
    assert hub.live.latest_telemetry()[("pi-fab", "printer-1")].values == {"nozzle": 210.5}
    # Another edge speaking for printer-1 is neither kept nor shown as its telemetry.
    rogue = {**tele, "values": {"nozzle": 20.0}}
    edge.publish(t.tele("pi-rogue", "printer-1"), dumps(rogue), qos=0)
    wait_until(lambda: hub.metrics.get("unknown_machine", "tele") >= 1, what="rogue")
    assert ("pi-rogue", "printer-1") not in hub.live.latest_telemetry()
    assert hub.machine_telemetry()["printer-1"].values == {"nozzle": 210.5}
    assert site.ask(ids.badge_sam, "laser-1").code == "machine_offline"
    edge.publish(t.state("pi-fab", "laser-1"), b"", retain=True)  # cleared
    wait_until(lambda: "laser-1" not in hub.machine_states(), what="state cleared")
    assert site.ask(ids.badge_sam, "laser-1").granted


def test_bad_telemetry_is_dropped_and_counted_when_read(site: Site) -> None:
    """Telemetry is validated lazily (it is most of the traffic); bad payloads still
    never reach a reader, and they are counted."""
    hub, ids, edge = site.hub, site.ids, site.edge
    t = hub.topics
    good = {"v": 1, "machine": "printer-1", "ts": NOW.isoformat(), "values": {"bed": 60}}
    foreign = {**good, "machine": "printer-1"}  # names another machine than its topic
    edge.publish(t.tele("pi-fab", "printer-1"), dumps(good), qos=0)
    edge.publish(t.tele("pi-game", "pc-1"), b"\xff not json", qos=0)
    edge.publish(t.tele("pi-fab", "laser-1"), dumps(foreign), qos=0)
    edge.publish(t.tele("pi-fab", "big"), b"{" + b" " * 70_000 + b"}", qos=0)
    wait_until(lambda: hub.metrics.get("bad_messages", "malformed") >= 1, what="size refused")
    wait_until(lambda: len(hub.live._telemetry) >= 3, what="telemetry stored")
    latest = hub.live.latest_telemetry()
    assert set(latest) == {("pi-fab", "printer-1")}
    assert hub.metrics.get("bad_messages", "telemetry") == 2
    assert site.ask(ids.badge_sam, "laser-1").granted  # the hub still answers


def test_snapshot_republished_on_revocation_only(mosquitto: Broker, tmp_path: Path) -> None:
    # The real set-up: snapshots compiled in a worker process.
    site = start_site(mosquitto, tmp_path, snapshot_workers=1)
    hub, ids, edge = site.hub, site.ids, site.edge
    topic = hub.topics.policy("pi-fab")
    key = demo_edge_key(SECRET.encode(), "pi-fab")  # the demo hub's fallback
    try:
        first_msg = edge.wait_for(lambda m: m.topic == topic, timeout=20)
        late = Probe(mosquitto.host, mosquitto.port, [topic]).start()  # a rebooted edge
        try:
            assert late.wait_for(lambda m: m.topic == topic).retain
        finally:
            late.stop()
        first = decode(PolicySnapshot, first_msg.payload)
        assert verify_snapshot(first, key)
        assert ids.badge_alice in {e.badge for e in first.entries}
        assert first.valid_until > NOW
        assert hub.wait_snapshots()
        published = hub.metrics.get("snapshots_published")
        assert published == 2  # pi-fab and pi-game

        hub.reference_changed()  # nothing relevant changed: nothing republished
        assert hub.wait_snapshots()
        assert hub.metrics.get("snapshots_published") == published
        with transaction(hub._factory) as s:
            s.execute(update(Badge).where(Badge.hash == ids.badge_alice).values(revoked_at=NOW))
        hub.reference_changed()
        assert hub.wait_snapshots()

        def versions() -> list[PolicySnapshot]:
            # A reconnection may republish the same snapshot: count distinct versions.
            seen: dict[int, PolicySnapshot] = {}
            for m in edge.on(topic):
                snap = decode(PolicySnapshot, m.payload)
                seen.setdefault(snap.version, snap)
            return list(seen.values())

        wait_until(lambda: len(versions()) >= 2, what="second snapshot")
        assert versions()[0].version == first.version
        assert len(versions()) == 2
        second = versions()[1]
        assert ids.badge_alice not in {e.badge for e in second.entries if e.windows}
        assert second.version > first.version
        assert verify_snapshot(second, key)
        assert hub.snapshot_of("pi-fab") == second
        assert hub.directory.badges[ids.badge_alice].revoked
    finally:
        site.edge.stop()
        site.hub.stop()


def test_end_session_and_machine_command_are_sent_once(site: Site) -> None:
    control: HubControl = site.hub  # the API's seam (checked by mypy)
    hub, ids, edge = site.hub, site.ids, site.edge
    t = hub.topics
    j = Journal("pi-game")
    start = j.session("s-open", "pc-1", ids.badge_bob, NOW, 600)[0]
    edge.publish(t.evt("pi-game"), dumps(start))
    wait_until(lambda: "pc-1" in hub.live.open_sessions(), what="session open")

    assert control.end_session("s-open", "Fermeture de la salle")
    assert not control.end_session("no-such-session")
    msg = edge.wait_for(lambda m: m.topic == t.cmd_session("pi-game"))
    command = decode(SessionCommand, msg.payload)
    assert (command.session_id, command.action, command.message) == (
        "s-open",
        "end",
        "Fermeture de la salle",
    )
    assert command.not_after == NOW + timedelta(seconds=hub.settings.command_ttl_s)
    assert not msg.retain

    assert control.machine_command("laser-1", MachineAction.MAINTENANCE_ON)
    assert not control.machine_command("nope", MachineAction.PAUSE)
    mmsg = edge.wait_for(lambda m: m.topic == t.cmd_machine("pi-fab"))
    mc = decode(MachineCommand, mmsg.payload)
    assert (mc.machine, mc.action, mmsg.retain) == ("laser-1", "maintenance_on", False)
    assert hub.status_line().startswith("0 bornes en ligne · 1 session ouverte · ")


def test_a_failing_policy_still_answers_precisely(mosquitto: Broker, tmp_path: Path) -> None:
    def broken(q: AccessQuery, d: Directory, live: LiveView, cfg: PolicyConfig) -> Decision:
        raise KeyError("corrupted reference data")

    s = start_site(mosquitto, tmp_path, decide=broken)
    try:
        answer = s.ask(s.ids.badge_alice, "printer-1")
        again = s.ask(s.ids.badge_alice, "printer-1")
    finally:
        s.edge.stop()
        s.hub.stop()
    assert (answer.granted, answer.code) == (False, "internal_error")
    assert answer.message.startswith("Le hub n'a pas pu décider")
    assert again.code == "internal_error"
    assert s.hub.metrics.get("decision_errors") == 2


def test_stop_publishes_offline_status(mosquitto: Broker, tmp_path: Path) -> None:
    s = start_site(mosquitto, tmp_path)
    topic = s.hub.topics.hub_status()
    s.edge.stop()
    s.hub.stop()
    watcher = Probe(mosquitto.host, mosquitto.port, [topic]).start()
    try:
        retained = watcher.wait_for(lambda m: m.topic == topic)
    finally:
        watcher.stop()
    assert retained.retain
    assert decode(HubStatus, retained.payload).online is False


# --------------------------------------------------------------------------- alerts


def open_alerts(hub: Hub, kind: str) -> list[Alert]:
    with hub._factory() as s:
        return list(s.scalars(select(Alert).where(Alert.kind == kind, Alert.resolved_at.is_(None))))


def test_foreign_machine_events_and_requests_are_refused_and_alerted(site: Site) -> None:
    hub, ids, edge = site.hub, site.ids, site.edge
    t = hub.topics
    events = Journal("pi-fab").session("s-pc", "pc-1", ids.badge_bob, NOW, 65)  # pi-game's PC
    for e in events:
        edge.publish(t.evt("pi-fab"), dumps(e))
    edge.wait_for(
        lambda m: m.topic == t.cmd_journal("pi-fab") and m.json().get("ack_through") == len(events)
    )
    denied = site.ask(ids.badge_bob, "pc-1")  # as pi-fab
    assert (denied.granted, denied.code, denied.session_id) == (False, "unknown_machine", None)
    assert denied.message == "Cette machine n'est pas reconnue : préviens un animateur."
    assert site.ask(ids.badge_bob, "ghost-1").code == "unknown_machine"
    assert hub.worker.drain()

    assert "pc-1" not in hub.live.open_sessions()
    with hub._factory() as s:
        assert s.scalars(select(UsageSession)).all() == []
    alerts = open_alerts(hub, "foreign_machine")
    assert [(a.edge_id, a.machine_id) for a in alerts] == [("pi-fab", "pc-1")]
    assert hub.metrics.get("foreign_machine", "event") == len(events)
    assert hub.metrics.get("foreign_machine", "request") == 2
    assert site.ask(ids.badge_bob, "pc-1", edge="pi-game").granted  # its own edge may


def test_edge_offline_alert_from_a_last_will_then_a_goodbye(site: Site, mosquitto: Broker) -> None:
    hub = site.hub
    topic = hub.topics.edge_status("pi-game")
    t0 = utcnow()  # the edge's own clock

    def status(online: bool, epoch: int, after_s: float, goodbye: bool = False) -> bytes:
        ts = t0 + timedelta(seconds=after_s)
        return dumps(
            {
                "v": 1,
                "online": online,
                "epoch": epoch,
                "machines": ["pc-1"],
                "ts": ts.isoformat(),
                "goodbye": goodbye,
            }
        )

    lost = Probe(mosquitto.host, mosquitto.port, [])
    lost.client.will_set(topic, status(False, 1, 0), qos=1, retain=True)
    lost.start()
    lost.publish(topic, status(True, 1, 1), retain=True)
    wait_until(lambda: hub.edges_online().get("pi-game") is True, what="edge online")
    assert open_alerts(hub, "edge_offline") == []
    lost.client.loop_stop()
    sock = lost.client.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)  # no DISCONNECT: the broker sends the will
    wait_until(lambda: len(open_alerts(hub, "edge_offline")) == 1, timeout=10, what="alert")
    (alert,) = open_alerts(hub, "edge_offline")
    assert alert.edge_id == "pi-game"
    assert "connection lost (last will)" in alert.detail
    assert "machines: pc-1" in alert.detail

    back = Probe(mosquitto.host, mosquitto.port, []).start()
    try:
        back.publish(topic, status(True, 2, 60), retain=True)
        wait_until(lambda: open_alerts(hub, "edge_offline") == [], what="alert resolved")
        back.publish(topic, status(False, 2, 120, goodbye=True), retain=True)  # planned stop
        wait_until(lambda: len(open_alerts(hub, "edge_offline")) == 1, what="second alert")
    finally:
        back.publish(topic, b"", retain=True)  # leave no retained status on the shared broker
        back.stop()
    (planned,) = open_alerts(hub, "edge_offline")
    assert "planned stop (the edge said goodbye)" in planned.detail
    with hub._factory() as s:
        first = s.get(Alert, alert.id)
        assert first is not None
        assert first.resolved_at is not None
