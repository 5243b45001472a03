"""The simulated edges and their link, against a real Mosquitto and a scripted fake hub.

The fake hub is a plain paho client in the test: it grants or denies by badge hash,
records journal events, and acknowledges them (or not, to exercise resends and
``replay_from``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.sim import (
    SimBadge,
    SimConfigError,
    SimEdge,
    SimJournal,
    SimMachine,
    SimSettings,
    Simulator,
    load_sim_settings,
)
from protocol.ids import badge_hash
from protocol.messages import (
    AccessDecision,
    AccessRequest,
    Availability,
    EdgeStatus,
    EndReason,
    HubStatus,
    JournalCommand,
    MachineAction,
    MachineCommand,
    MachineState,
    SessionEnded,
    SessionEndedBody,
    SessionStarted,
    SessionStartedBody,
    UsageTick,
    UsageTickBody,
    decode,
    decode_event,
    encode,
    utcnow,
)
from protocol.topics import Kind, Topics, parse_topic
from tests.conftest import Broker

SECRET = "test-site-secret-0123456789"
GOOD = "04AA000000000001"
BAD = "04AA000000000002"


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")


class FakeHub:
    """Answers access requests and records what the edges publish."""

    def __init__(self, broker: Broker, site: str, *, ack: bool = True) -> None:
        self.topics = Topics(site)
        self.ack = ack
        self.grant_first_only = False
        self.ends_in_s = 7200.0
        self.granted = 0
        self.grant_hash = badge_hash(SECRET.encode(), GOOD)
        self.requests: list[AccessRequest] = []
        self.events: dict[str, dict[int, Any]] = {}
        self.deliveries: list[tuple[str, int]] = []
        self.statuses: list[EdgeStatus] = []
        self.states: dict[str, MachineState] = {}
        self.tele = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-hub-{site}")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        for kind in (Kind.REQ_ACCESS, Kind.EVT, Kind.EDGE_STATUS, Kind.STATE, Kind.TELE):
            self.client.subscribe(self.topics.all_edges(kind), qos=1)
        self.client.loop_start()
        self.client.publish(
            self.topics.hub_status(),
            encode(HubStatus(online=True, ts=utcnow())),
            qos=1,
            retain=True,
        ).wait_for_publish(5)

    def close(self) -> None:
        self.client.publish(self.topics.hub_status(), b"", qos=1, retain=True).wait_for_publish(5)
        self.client.loop_stop()
        self.client.disconnect()

    def send(self, edge: str, kind: Kind, payload: bytes) -> None:
        self.client.publish(self.topics.edge(edge, kind), payload, qos=1)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parsed = parse_topic(msg.topic)
        edge = parsed.edge or ""
        with self.lock:
            if parsed.kind is Kind.REQ_ACCESS:
                req = decode(AccessRequest, bytes(msg.payload))
                self.requests.append(req)
                granted = req.badge == self.grant_hash and not (
                    self.grant_first_only and self.granted
                )
                self.granted += granted
                decision = AccessDecision(
                    req_id=req.req_id,
                    machine=req.machine,
                    granted=granted,
                    code="ok" if granted else "unknown_badge",
                    message="Bonne séance" if granted else "Badge inconnu",
                    session_id=uuid.uuid4().hex if granted else None,
                    ends_at=utcnow() + timedelta(seconds=self.ends_in_s) if granted else None,
                    not_after=utcnow() + timedelta(seconds=10),
                )
                self.send(edge, Kind.CMD_ACCESS, encode(decision))
            elif parsed.kind is Kind.EVT:
                event = decode_event(bytes(msg.payload))
                self.deliveries.append((edge, event.seq))
                self.events.setdefault(edge, {})[event.seq] = event
                if self.ack:
                    self._ack(edge)
            elif parsed.kind is Kind.EDGE_STATUS and msg.payload:
                self.statuses.append(decode(EdgeStatus, bytes(msg.payload)))
            elif parsed.kind is Kind.STATE and msg.payload:
                state = decode(MachineState, bytes(msg.payload))
                self.states[state.machine] = state
            elif parsed.kind is Kind.TELE:
                self.tele += 1

    def _ack(self, edge: str) -> None:
        seqs = self.events.get(edge, {})
        through = 0
        while through + 1 in seqs:
            through += 1
        if through:
            self.send(edge, Kind.CMD_JOURNAL, encode(JournalCommand(ack_through=through)))

    def of_type(self, edge: str, cls: type) -> list[Any]:
        with self.lock:
            return [e for e in self.events.get(edge, {}).values() if isinstance(e, cls)]


def settings(broker: Broker, site: str, tmp_path: Path, **extra: Any) -> SimSettings:
    data: dict[str, Any] = {
        "site": site,
        "mqtt_host": broker.host,
        "mqtt_port": broker.port,
        "site_secret": SECRET,
        "speed": 600.0,  # a simulated minute lasts 0.1 s
        "mean_arrival_min": 1.0,
        "resend_s": 0.5,
        "tele_interval_s": 0.5,
        "state_dir": tmp_path / "state",
        "seed": 7,
        "edges": [
            SimEdge(
                id="pi-a",
                machines=(
                    SimMachine(
                        id="pc-a",
                        kind="gaming_pc",
                        badges=(
                            SimBadge(uid=GOOD, label="Inès", weight=3),
                            SimBadge(uid=BAD, label="Inconnu"),
                        ),
                    ),
                ),
            ),
            SimEdge(
                id="pi-b",
                machines=(
                    SimMachine(id="printer-b", kind="printer_3d", badges=(SimBadge(uid=BAD),)),
                ),
            ),
        ],
    }
    data.update(extra)
    return SimSettings.model_validate(data)


@pytest.fixture
def site() -> str:
    return f"sim-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def running(mosquitto: Broker, site: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start a fake hub and a simulator thread; both stopped at the end."""
    started: list[tuple[threading.Thread, threading.Event, FakeHub]] = []

    def start(*, ack: bool = True, **extra: Any) -> tuple[FakeHub, Simulator, list[str]]:
        hub = FakeHub(mosquitto, site, ack=ack)
        lines: list[str] = []
        sim = Simulator(settings(mosquitto, site, tmp_path, **extra), narrate=lines.append)
        stop = threading.Event()
        thread = threading.Thread(target=sim.run, args=(stop,), daemon=True)
        thread.start()
        started.append((thread, stop, hub))
        return hub, sim, lines

    yield start
    for thread, stop, hub in started:
        stop.set()
        thread.join(15)
        hub.close()
        assert not thread.is_alive()


@pytest.mark.broker
def test_sessions_flow_through_the_journal(running: Callable[..., Any]) -> None:
    hub, sim, lines = running()
    wait_for(lambda: len(hub.of_type("pi-a", SessionEnded)) >= 2, 20, "two ended sessions")
    started = hub.of_type("pi-a", SessionStarted)
    ticks = hub.of_type("pi-a", UsageTick)
    ended = hub.of_type("pi-a", SessionEnded)
    assert started
    assert ticks
    assert {e.body.session_id for e in ended} <= {s.body.session_id for s in started}
    assert all(e.body.reason in (EndReason.BADGE_OUT, EndReason.TIME_UP) for e in ended)
    # Simulated minutes: elapsed_s counts whole simulated minutes, ticks never exceed the end.
    for tick in ticks:
        assert tick.body.elapsed_s == tick.body.minute * 60
    for end in ended:
        last = max(
            (t.body.minute for t in ticks if t.body.session_id == end.body.session_id), default=0
        )
        assert end.body.duration_s >= last * 60
    # Sequence numbers are dense from 1 and badges are hashes of the configured UIDs.
    assert sorted(hub.events["pi-a"]) == list(range(1, len(hub.events["pi-a"]) + 1))
    good = badge_hash(SECRET.encode(), GOOD)
    assert {s.body.badge for s in started} == {good}
    # Denied badges are narrated in French with the hub's message; the printer edge only
    # ever had the unknown badge, so it never journaled anything.
    assert any("refusé — Badge inconnu" in line for line in lines)
    assert any("accordé jusqu'à" in line for line in lines)
    assert "pi-b" not in hub.events
    assert sim.decisions >= 3
    # Retained states and telemetry were published; both edges announced themselves online.
    wait_for(lambda: {"pc-a", "printer-b"} <= set(hub.states), 5, "states")
    assert hub.tele > 0
    assert {s.online for s in hub.statuses} == {True}
    assert all(s.epoch >= 1 for s in hub.statuses)


@pytest.mark.broker
def test_unacknowledged_events_are_resent_and_replayed(running: Callable[..., Any]) -> None:
    # One short session (granted for 1 s at speed 1: started + ended), then only denials:
    # the journal holds exactly two events, and no stall-resend happens within the test.
    hub, _sim, _lines = running(ack=False, speed=1.0, mean_arrival_min=0.02, resend_s=60.0)
    hub.grant_first_only = True
    hub.ends_in_s = 1.0

    def delivered(seq: int) -> int:
        with hub.lock:
            return sum(1 for e, s in hub.deliveries if e == "pi-a" and s == seq)

    wait_for(lambda: delivered(1) == 1 and delivered(2) == 1, 15, "started and ended")
    ended = hub.of_type("pi-a", SessionEnded)
    assert [e.body.reason for e in ended] == [EndReason.TIME_UP]
    assert ended[0].body.duration_s == pytest.approx(1.0, abs=0.2)

    hub.send("pi-a", Kind.CMD_JOURNAL, encode(JournalCommand(replay_from=2)))
    wait_for(lambda: delivered(2) == 2, 10, "replay of seq 2")
    assert delivered(1) == 1

    # Once acknowledged, nothing comes back, even on replay_from 1. A maintenance
    # command behind them is the barrier: its state echo comes after any replay.
    hub.send("pi-a", Kind.CMD_JOURNAL, encode(JournalCommand(ack_through=2)))
    hub.send("pi-a", Kind.CMD_JOURNAL, encode(JournalCommand(replay_from=1)))
    hub.send(
        "pi-a",
        Kind.CMD_MACHINE,
        encode(
            MachineCommand(
                cmd_id="maint-1",
                machine="pc-a",
                action=MachineAction.MAINTENANCE_ON,
                not_after=utcnow() + timedelta(seconds=30),
            )
        ),
    )
    wait_for(
        lambda: (
            hub.states.get("pc-a") is not None
            and hub.states["pc-a"].availability is Availability.MAINTENANCE
        ),
        10,
        "maintenance state",
    )
    assert (delivered(1), delivered(2)) == (1, 2)
    assert 3 not in hub.events.get("pi-a", {})


@pytest.mark.broker
def test_bad_payloads_are_dropped_and_the_link_survives(running: Callable[..., Any]) -> None:
    hub, sim, _lines = running()
    wait_for(lambda: sim.decisions >= 1, 10, "a first decision")
    for garbage in (b"not json", b'{"v": 2}', b"[]", b'{"v":1,"req_id":"x"}'):
        hub.send("pi-a", Kind.CMD_ACCESS, garbage)
        hub.send("pi-a", Kind.CMD_JOURNAL, garbage)
    before = sim.decisions
    wait_for(lambda: sim.decisions >= before + 2, 10, "decisions after garbage")


@pytest.mark.broker
def test_stop_ends_sessions_and_says_offline(mosquitto: Broker, site: str, tmp_path: Path) -> None:
    hub = FakeHub(mosquitto, site)
    try:
        sim = Simulator(
            settings(mosquitto, site, tmp_path, mean_arrival_min=0.1, speed=60.0), narrate=None
        )
        stop = threading.Event()
        thread = threading.Thread(target=sim.run, args=(stop,), daemon=True)
        thread.start()
        wait_for(lambda: len(hub.of_type("pi-a", SessionStarted)) >= 1, 10, "a session")
        stop.set()
        thread.join(15)
        assert not thread.is_alive()
        ended = hub.of_type("pi-a", SessionEnded)
        started = hub.of_type("pi-a", SessionStarted)
        assert {e.body.session_id for e in ended} == {s.body.session_id for s in started}
        assert any(e.body.reason is EndReason.EDGE_RESTART for e in ended)
        wait_for(lambda: any(not s.online for s in hub.statuses), 5, "offline status")
        wait_for(lambda: hub.states["pc-a"].availability.value == "offline", 5, "offline state")
        # Everything was acknowledged before leaving: the journal file holds nothing pending.
        journal = SimJournal("pi-a", tmp_path / "state" / "pi-a.json")
        assert journal.load() == []
        assert journal.unacked() == []
        assert journal.next_seq == max(hub.events["pi-a"]) + 1
    finally:
        hub.close()


def _started(seq: int, sid: str) -> Callable[[int, str, int], SessionStarted]:
    def make(s: int, event_id: str, epoch: int) -> SessionStarted:
        now = utcnow()
        return SessionStarted(
            edge="pi-a",
            seq=s,
            event_id=event_id,
            epoch=epoch,
            ts=now,
            body=SessionStartedBody(
                session_id=sid,
                machine="pc-a",
                badge=badge_hash(SECRET.encode(), GOOD),
                started_at=now,
            ),
        )

    return make


def test_journal_survives_a_restart_and_reports_open_sessions(tmp_path: Path) -> None:
    path = tmp_path / "pi-a.json"
    journal = SimJournal("pi-a", path)
    assert journal.load() == []
    assert journal.next_epoch() == 1
    journal.append(_started(1, "s1"))
    journal.append(
        lambda s, e, ep: UsageTick(
            edge="pi-a",
            seq=s,
            event_id=e,
            epoch=ep,
            ts=utcnow(),
            body=UsageTickBody(session_id="s1", machine="pc-a", minute=1, elapsed_s=60.0),
        )
    )
    journal.append(_started(3, "s2"))
    journal.append(
        lambda s, e, ep: SessionEnded(
            edge="pi-a",
            seq=s,
            event_id=e,
            epoch=ep,
            ts=utcnow(),
            body=SessionEndedBody(
                session_id="s2",
                machine="pc-a",
                reason=EndReason.BADGE_OUT,
                duration_s=5.0,
                ended_at=utcnow(),
            ),
        )
    )
    assert journal.ack(2) == 2
    assert [e.seq for e in journal.unacked()] == [3, 4]
    assert [e.seq for e in journal.unacked(4)] == [4]

    again = SimJournal("pi-a", path)
    left_open = again.load()
    assert [(sid, o.machine, o.elapsed_s) for sid, o in left_open] == [("s1", "pc-a", 60.0)]
    assert again.next_seq == 5
    assert again.next_epoch() == 2
    assert [e.seq for e in again.unacked()] == [3, 4]
    assert isinstance(again.unacked()[0], SessionStarted)


def test_unreadable_journal_never_reuses_sequence_numbers(tmp_path: Path) -> None:
    path = tmp_path / "pi-a.json"
    path.write_text("{broken")
    journal = SimJournal("pi-a", path)
    assert journal.load() == []
    assert journal.next_seq > 1_000_000


def test_config_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(SimConfigError, match="cannot read"):
        load_sim_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("site = [")
    with pytest.raises(SimConfigError, match="not valid TOML"):
        load_sim_settings(bad)
    dup = tmp_path / "dup.toml"
    dup.write_text(
        f'site_secret = "{SECRET}"\n'
        '[[edges]]\nid = "e1"\n[[edges.machines]]\nid = "m1"\nbadges = [{uid = "04AA"}]\n'
        '[[edges]]\nid = "e2"\n[[edges.machines]]\nid = "m1"\nbadges = [{uid = "04AB"}]\n'
    )
    with pytest.raises(ValueError, match="duplicate machine ids: m1"):
        load_sim_settings(dup)
    ok = tmp_path / "ok.toml"
    ok.write_text(
        f'site_secret = "{SECRET}"\nspeed = 2\n'
        '[[edges]]\nid = "e1"\n[[edges.machines]]\nid = "m1"\nkind = "laser"\n'
        'badges = [{uid = "04:aa:bb", label = "Amina"}]\n'
    )
    loaded = load_sim_settings(ok, speed=5.0)
    assert loaded.speed == 5.0
    assert loaded.edges[0].machines[0].badges[0].uid == "04AABB"
