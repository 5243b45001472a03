"""The edge agent against a real Mosquitto and the real hub (in this process, on a fake clock).

Each test seeds a small site, starts :class:`hub.service.Hub` and one or more
:class:`edge.agent.Agent` with simulated readers and actuators, and checks what the
machine did, what the journal holds and what the hub's ledger recorded.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devices.actuators import LatchedActuator, SimulatedActuator
from devices.pc import SimulatedSessionLock
from edge import agent as agent_module
from edge.agent import Agent, AgentError
from edge.clock import FakeClock
from edge.feedback import FeedbackEvent
from edge.session import FeedbackKind
from protocol.messages import (
    AccessDecision,
    Availability,
    EndReason,
    HubStatus,
    JournalCommand,
    MachineAction,
    SessionEnded,
    SessionStartedBody,
    UsageTickBody,
    encode,
)
from protocol.signing import demo_edge_key, sign, sign_snapshot
from protocol.topics import Topics
from tests.conftest import Broker, free_port
from tests.edge.conftest import (
    SECRET,
    STAFF_UID,
    UNKNOWN_UID,
    HubRunner,
    Site,
    advance,
    bh,
    edge_settings,
    journal_types,
    member_uid,
    present,
    state_of,
    wait_until,
)
from tests.hub.hubkit import Probe

pytestmark = pytest.mark.broker

T0 = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)

#: pi-a's key: the demo-mode test hub's fallback (no key file).
KEY_A = demo_edge_key(SECRET.encode(), "pi-a")


class Rig:
    """A seeded hub on a fake clock and the agents of the test."""

    def __init__(self, site: Site, hub: HubRunner, clock: FakeClock, tmp_path: Path) -> None:
        self.site, self.hub, self.clock, self.tmp_path = site, hub, clock, tmp_path
        self.agents: list[Agent] = []
        self.events: list[FeedbackEvent] = []

    def agent(self, edge: str, machines: list[Any] | None = None, **overrides: Any) -> Agent:
        broker_port = overrides.pop("broker_port", self.hub.settings.mqtt_port)
        settings = edge_settings(
            self.tmp_path,
            self.site.site,
            edge,
            broker_port,
            machines if machines is not None else self.site.edges[edge],
            **overrides,
        )
        agent = Agent(settings, clock=self.clock)
        agent.stream.subscribe(self.events.append)
        agent.start()
        self.agents.append(agent)
        return agent

    def online(self, agent: Agent) -> Agent:
        wait_until(lambda: agent.hub_online, 15, "hub online")
        wait_until(lambda: agent.policy_version, 15, "policy snapshot")
        return agent

    def feedback(self, machine: str, kind: FeedbackKind) -> list[FeedbackEvent]:
        return [e for e in self.events if e.machine == machine and e.kind is kind]

    def close(self) -> None:
        for agent in reversed(self.agents):
            agent.stop()


@pytest.fixture
def rig(
    hub_runner_factory: Callable[..., tuple[Site, HubRunner]], tmp_path: Path
) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(edges: dict[str, int], **kwargs: Any) -> Rig:
        clock = FakeClock(wall=T0)
        site, hub = hub_runner_factory(edges, clock=clock.now, **kwargs)
        r = Rig(site, hub, clock, tmp_path)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def actuator_of(agent: Agent, machine: str) -> SimulatedActuator:
    act = agent.unit(machine).actuator
    if isinstance(act, LatchedActuator):
        act = act.inner
    assert isinstance(act, SimulatedActuator)
    return act


# --------------------------------------------------------------------------- online path


def test_badge_switches_the_machine_and_the_hub_meters_exactly(rig: Callable[..., Rig]) -> None:
    r = rig({"pi-a": 2})
    agent = r.online(r.agent("pi-a"))
    act = actuator_of(agent, "m-01")
    assert act.history == [False]  # off at start

    present(agent, "m-01", member_uid(1))
    wait_until(lambda: act.history[-1] is True, 5, "machine on")
    wait_until(lambda: state_of(agent, "m-01") == "active", 5, "view published")
    assert r.feedback("m-01", FeedbackKind.GRANT)
    session_id = agent.view("m-01").session.session_id
    assert session_id is not None

    advance(r.clock, [agent], 185.25)  # three usage ticks, then a quarter second
    present(agent, "m-01", member_uid(1))  # badge-out
    wait_until(lambda: state_of(agent, "m-01") == "idle", 5, "session ended")
    assert act.history == [False, True, False]
    assert journal_types(agent) == [
        "session_started",
        "usage_tick",
        "usage_tick",
        "usage_tick",
        "session_ended",
    ]
    wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 10, "acknowledged")
    row = r.hub.sessions()[session_id]
    assert row.used_s == pytest.approx(185.25, abs=1e-6)
    assert row.last_minute == 3
    assert row.end_reason == EndReason.BADGE_OUT
    assert row.member_id is not None
    # The retained state followed: in use, then free again.
    hub = r.hub.hub
    assert hub is not None
    wait_until(
        lambda: (s := hub.machine_states().get("m-01")) and s.availability is Availability.FREE,
        5,
        "state free",
    )


def test_refusal_shows_the_hubs_french_message_and_leaves_the_machine_off(
    rig: Callable[..., Rig],
) -> None:
    r = rig({"pi-a": 1})
    agent = r.online(r.agent("pi-a"))
    present(agent, "m-01", UNKNOWN_UID)
    denied = wait_until(lambda: r.feedback("m-01", FeedbackKind.DENY), 5, "refusal")
    assert "badge" in denied[0].message.lower()
    assert actuator_of(agent, "m-01").history == [False]
    assert agent.journal.last_seq() == 0  # nothing journaled for a refusal decided online


def test_staff_commands_end_and_maintenance(rig: Callable[..., Rig]) -> None:
    r = rig({"pi-a": 2})
    agent = r.online(r.agent("pi-a"))
    hub = r.hub.hub
    assert hub is not None
    present(agent, "m-01", member_uid(1))
    wait_until(lambda: state_of(agent, "m-01") == "active", 5, "active")
    session_id = agent.view("m-01").session.session_id
    assert session_id is not None
    wait_until(lambda: hub.end_session(session_id, "On range !"), 5, "hub knows the session")
    wait_until(lambda: state_of(agent, "m-01") == "idle", 5, "ended by staff")
    ended = [e for e in agent.journal.replay_from(1) if isinstance(e, SessionEnded)]
    assert [e.body.reason for e in ended] == [EndReason.STAFF]

    assert hub.machine_command("m-02", MachineAction.MAINTENANCE_ON)
    wait_until(
        lambda: agent.view("m-02").availability is Availability.MAINTENANCE, 5, "maintenance"
    )
    present(agent, "m-02", member_uid(2))
    wait_until(lambda: r.feedback("m-02", FeedbackKind.DENY), 5, "refused in maintenance")
    assert not any(actuator_of(agent, "m-02").history)  # switched off again, never on


# --------------------------------------------------------------------------- offline path


def test_silent_hub_decides_offline_after_the_timeout(
    mosquitto: Broker, hub_runner_factory: Callable[..., tuple[Site, HubRunner]], tmp_path: Path
) -> None:
    site, runner = hub_runner_factory({"pi-a": 1}, start=False)
    runner.start()  # publish a signed snapshot, then go silent without saying goodbye
    hub = runner.hub
    assert hub is not None
    topics = Topics(site.site)
    snapshot = wait_until(lambda: hub.snapshot_of("pi-a"), 10, "snapshot")
    runner.stop()
    probe = Probe(mosquitto.host, mosquitto.port, []).start()  # a hub that never answers
    try:
        probe.publish(topics.policy("pi-a"), encode(snapshot), retain=True)
        probe.publish(
            topics.hub_status(), encode(HubStatus(online=True, ts=datetime.now(UTC))), retain=True
        )
        settings = edge_settings(
            tmp_path, site.site, "pi-a", mosquitto.port, ["m-01"], drain_timeout_s=0
        )
        with Agent(settings) as agent:
            wait_until(lambda: agent.hub_online and agent.policy_version, 10, "online, policy")
            act = actuator_of(agent, "m-01")
            t0 = time.perf_counter()
            present(agent, "m-01", member_uid(1))
            wait_until(lambda: act.history[-1] is True, 5, "granted offline")
            waited = time.perf_counter() - t0
            assert 0.5 <= waited < 1.5
            wait_until(lambda: state_of(agent, "m-01") == "active", 5, "view published")
            view = agent.view("m-01").session
            assert view.offline
            assert journal_types(agent) == ["offline_decision", "session_started"]
    finally:
        probe.publish(topics.hub_status(), b"", retain=True)
        probe.publish(topics.policy("pi-a"), b"", retain=True)
        probe.stop()


def test_laser_offline_is_staff_only(rig: Callable[..., Rig]) -> None:
    r = rig({"pi-a": 0}, laser_edge="pi-a")
    laser = {
        "id": "laser-1",
        "kind": "laser",
        "actuator": {"kind": "actuator.sim", "options": {"latch_on_fault": True}},
    }
    agent = r.online(r.agent("pi-a", [laser]))
    r.hub.stop()  # the hub says goodbye: decisions are taken alone at once
    wait_until(lambda: not agent.hub_online, 10, "hub offline")
    present(agent, "laser-1", member_uid(1))
    refusal = wait_until(lambda: r.feedback("laser-1", FeedbackKind.DENY), 5, "member refused")
    assert refusal[0].message.startswith(("Hors-ligne", "Le serveur ne répond pas"))
    assert not any(actuator_of(agent, "laser-1").history)
    advance(r.clock, [agent], 2)
    present(agent, "laser-1", STAFF_UID)
    wait_until(lambda: state_of(agent, "laser-1") == "active", 5, "staff granted")
    assert agent.view("laser-1").session.staff
    codes = [getattr(e.body, "code", None) for e in agent.journal.replay_from(1)]
    # Members are not even in a staff-only edge's snapshot: unknown there.
    assert codes[0] in ("offline_staff_only", "offline_unknown_badge")
    assert codes[1] == "offline_granted_staff"


def test_policy_snapshot_survives_a_restart_without_broker(
    rig: Callable[..., Rig], tmp_path: Path
) -> None:
    r = rig({"pi-a": 1})
    first = r.online(r.agent("pi-a"))
    version = first.policy_version
    first.stop()
    r.agents.remove(first)
    assert (tmp_path / "pi-a" / "policy.json").exists()
    assert stat.S_IMODE((tmp_path / "pi-a" / "policy.json").stat().st_mode) == 0o600
    # No broker at all this time: the cached snapshot still decides.
    agent = r.agent("pi-a", broker_port=free_port())
    assert agent.policy_version == version
    present(agent, "m-01", member_uid(1))
    wait_until(lambda: state_of(agent, "m-01") == "active", 5, "granted offline")
    assert agent.view("m-01").session.offline


# --------------------------------------------------------------------------- machines


def test_laser_fault_cuts_and_latches_until_cleared(
    rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "OUTPUT_RETRY_S", 0.1)
    r = rig({"pi-a": 0}, laser_edge="pi-a")
    laser = {"id": "laser-1", "kind": "laser"}  # plain actuator: the agent latches it
    agent = r.online(r.agent("pi-a", [laser]))
    unit = agent.unit("laser-1")
    assert isinstance(unit.actuator, LatchedActuator)
    act = actuator_of(agent, "laser-1")
    present(agent, "laser-1", STAFF_UID)
    wait_until(lambda: act.history[-1] is True, 5, "laser on")

    agent.signal("laser-1", "fault", source="exhaust", detail="extraction en panne")
    wait_until(lambda: state_of(agent, "laser-1") == "idle", 5, "session ended")
    assert act.history[-1] is False
    assert agent.view("laser-1").availability is Availability.FAULT
    ended = [e for e in agent.journal.replay_from(1) if isinstance(e, SessionEnded)]
    assert ended[-1].body.reason is EndReason.FAULT
    assert "machine_fault" in journal_types(agent)

    advance(r.clock, [agent], 5)
    present(agent, "laser-1", STAFF_UID)  # refused while the fault lasts
    wait_until(lambda: r.feedback("laser-1", FeedbackKind.DENY), 5, "refused")
    assert act.history[-1] is False

    agent.signal("laser-1", "fault_cleared", source="exhaust")
    wait_until(lambda: agent.view("laser-1").availability is Availability.FREE, 5, "cleared")
    assert act.history[-1] is False  # never back on by itself
    advance(r.clock, [agent], 5)
    present(agent, "laser-1", STAFF_UID)
    wait_until(lambda: act.history[-1] is True, 5, "a new grant re-arms the latch")


def test_failing_actuator_faults_the_machine_then_recovers(
    rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_module, "OUTPUT_RETRY_S", 0.1)
    r = rig({"pi-a": 1})
    agent = r.online(r.agent("pi-a"))
    act = actuator_of(agent, "m-01")
    act.fail()
    present(agent, "m-01", member_uid(1))
    wait_until(lambda: agent.view("m-01").availability is Availability.FAULT, 5, "fault")
    assert "machine_fault" in journal_types(agent)
    act.recover()
    wait_until(lambda: agent.view("m-01").availability is Availability.FREE, 5, "recovered")
    assert act.history[-1] is False


def test_printer_is_never_cut_while_its_job_runs(rig: Callable[..., Rig]) -> None:
    r = rig({"pi-a": 1})
    agent = r.online(r.agent("pi-a", [{"id": "m-01", "kind": "printer"}]))
    act = actuator_of(agent, "m-01")
    present(agent, "m-01", member_uid(1))
    wait_until(lambda: act.history[-1] is True, 5, "on")
    agent.signal("m-01", "job_running")
    advance(r.clock, [agent], 61)
    present(agent, "m-01", member_uid(1))  # badge-out while printing
    wait_until(lambda: state_of(agent, "m-01") == "ending", 5, "ending")
    assert act.history[-1] is True
    advance(r.clock, [agent], 120)
    assert act.history[-1] is True
    agent.signal("m-01", "job_done")
    wait_until(lambda: state_of(agent, "m-01") == "idle", 5, "ended")
    assert act.history[-1] is False
    ended = [e for e in agent.journal.replay_from(1) if isinstance(e, SessionEnded)]
    assert ended[0].body.reason is EndReason.BADGE_OUT
    assert ended[0].body.duration_s == pytest.approx(181.0)


def test_gaming_pc_is_locked_never_powered_off(rig: Callable[..., Rig]) -> None:
    r = rig({"pi-a": 1})
    pc = {
        "id": "m-01",
        "kind": "gaming_pc",
        "actuator": None,
        "pc": {"kind": "pc.sim", "options": {}},
    }
    agent = r.online(r.agent("pi-a", [pc]))
    lock = agent.unit("m-01").lock
    assert isinstance(lock, SimulatedSessionLock)
    assert lock.history == ["lock"]
    present(agent, "m-01", member_uid(1))
    wait_until(lambda: lock.history[-1] == "unlock", 5, "unlocked")
    advance(r.clock, [agent], 60)
    present(agent, "m-01", member_uid(1))
    wait_until(lambda: lock.history[-1] == "lock", 5, "locked again")
    assert agent.unit("m-01").actuator is None


def test_generic_machine_idle_by_power_ends_the_session(rig: Callable[..., Rig]) -> None:
    r = rig({"pi-a": 1})
    machine = {
        "id": "m-01",
        "actuator": {"kind": "actuator.sim", "options": {"load_w": 5.0}},
        "busy_above_w": 50.0,
        "idle_timeout_min": 2,
    }
    agent = r.online(r.agent("pi-a", [machine], tele_interval_s=0.5))
    present(agent, "m-01", member_uid(1))
    wait_until(lambda: state_of(agent, "m-01") == "active", 5, "active")
    advance(r.clock, [agent], 121)
    wait_until(lambda: state_of(agent, "m-01") == "idle", 5, "idle timeout")
    ended = [e for e in agent.journal.replay_from(1) if isinstance(e, SessionEnded)]
    assert ended[0].body.reason is EndReason.IDLE


# --------------------------------------------------------------------------- start and stop


def test_start_closes_open_sessions_before_touching_any_actuator(
    rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    r = rig({"pi-a": 1})
    from edge.journal import Journal

    journal = Journal(tmp_path / "pi-a" / "journal.db", "pi-a", r.clock)
    with journal:
        journal.append(
            SessionStartedBody(
                session_id="left-open",
                machine="m-01",
                badge=bh(member_uid(1)),
                started_at=T0,
            )
        )
        journal.append(
            UsageTickBody(session_id="left-open", machine="m-01", minute=1, elapsed_s=60.0)
        )
    seen_open: list[int] = []
    original = SimulatedActuator.open

    def spying_open(self: SimulatedActuator) -> None:
        seen_open.append(len(Journal.open_sessions(agent.journal)))
        original(self)

    monkeypatch.setattr(SimulatedActuator, "open", spying_open)
    settings = edge_settings(tmp_path, r.site.site, "pi-a", r.hub.settings.mqtt_port, ["m-01"])
    agent = Agent(settings, clock=r.clock)
    agent.start()
    r.agents.append(agent)
    assert seen_open == [0]
    ended = [e for e in agent.journal.replay_from(1) if isinstance(e, SessionEnded)]
    assert [(e.body.reason, e.body.duration_s) for e in ended] == [(EndReason.EDGE_RESTART, 60.0)]
    r.online(agent)
    wait_until(lambda: agent.acked_through == 3, 10, "delivered")
    row = r.hub.sessions()["left-open"]
    assert row.end_reason == EndReason.EDGE_RESTART
    assert row.used_s == 60.0


def test_stop_ends_sessions_exactly_switches_off_and_drains(rig: Callable[..., Rig]) -> None:
    r = rig({"pi-a": 1})
    agent = r.online(r.agent("pi-a"))
    act = actuator_of(agent, "m-01")
    present(agent, "m-01", member_uid(1))
    wait_until(lambda: state_of(agent, "m-01") == "active", 5, "active")
    session_id = agent.view("m-01").session.session_id
    assert session_id is not None
    advance(r.clock, [agent], 42.5)
    agent.stop()
    r.agents.remove(agent)
    assert act.history[-1] is False
    assert not act.is_open
    row = r.hub.sessions()[session_id]  # drained before the goodbye
    assert row.end_reason == EndReason.EDGE_RESTART
    assert row.used_s == pytest.approx(42.5)
    hub = r.hub.hub
    assert hub is not None
    wait_until(lambda: hub.edges_online().get("pi-a") is False, 5, "edge offline")


def test_a_corrupt_journal_stops_the_start(tmp_path: Path) -> None:
    settings = edge_settings(tmp_path, "s-x", "pi-a", free_port(), ["m-01"])
    settings.journal.path.parent.mkdir(parents=True)
    settings.journal.path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(AgentError, match="journal"):
        Agent(settings).start()


# --------------------------------------------------------------------------- journal sender


def test_replay_from_resends_acknowledged_events(
    rig: Callable[..., Rig], mosquitto: Broker
) -> None:
    r = rig({"pi-a": 1})
    agent = r.online(r.agent("pi-a"))
    present(agent, "m-01", member_uid(1))
    wait_until(lambda: state_of(agent, "m-01") == "active", 5, "active")
    advance(r.clock, [agent], 120)
    wait_until(lambda: agent.acked_through == 3, 10, "acknowledged")
    topics = Topics(r.site.site)
    probe = Probe(mosquitto.host, mosquitto.port, [topics.evt("pi-a")]).start()
    try:
        before = agent.resends
        replay = JournalCommand(replay_from=2, not_after=r.clock.now() + timedelta(minutes=5))
        probe.publish(topics.cmd_journal("pi-a"), encode(sign(replay, KEY_A)))
        probe.wait_for(lambda m: b'"seq":3' in m.payload, 5)
        seqs = sorted({int(m.json()["seq"]) for m in probe.messages})
        assert seqs == [2, 3]
        assert agent.resends == before + 1
    finally:
        probe.stop()


def test_late_decision_is_ignored(rig: Callable[..., Rig], mosquitto: Broker) -> None:
    r = rig({"pi-a": 1})
    agent = r.online(r.agent("pi-a", drain_timeout_s=0))
    r.hub.stop()
    wait_until(lambda: not agent.hub_online, 10, "hub offline")
    topics = Topics(r.site.site)
    probe = Probe(mosquitto.host, mosquitto.port, [topics.req_access("pi-a")]).start()
    try:
        # A "hub" that answers, but only after the decision's not_after.
        probe.publish(topics.hub_status(), encode(HubStatus(online=True, ts=T0)), retain=True)
        wait_until(lambda: agent.hub_online, 5, "online again")
        present(agent, "m-01", member_uid(1))
        request = probe.wait_for(lambda m: m.topic == topics.req_access("pi-a"), 5).json()
        stale = AccessDecision(
            req_id=request["req_id"],
            machine="m-01",
            granted=True,
            code="ok",
            message="ok",
            session_id="s-stale",
            ends_at=T0 + timedelta(hours=2),
            not_after=T0 - timedelta(seconds=1),
        )
        probe.publish(topics.cmd_access("pi-a"), encode(sign(stale, KEY_A)))
        # The stale grant is not used: after the timeout the edge decides alone.
        advance(r.clock, [agent], 1)
        wait_until(lambda: state_of(agent, "m-01") == "active", 5, "granted offline")
        view = agent.view("m-01").session
        assert view.offline
        assert view.session_id != "s-stale"
    finally:
        probe.publish(topics.hub_status(), b"", retain=True)
        probe.stop()


def test_warnings_at_ten_and_two_minutes_then_time_up(rig: Callable[..., Rig]) -> None:
    r = rig({"pi-a": 1})
    agent = r.online(r.agent("pi-a"))
    act = actuator_of(agent, "m-01")
    present(agent, "m-01", member_uid(1))
    wait_until(lambda: state_of(agent, "m-01") == "active", 5, "active")
    remaining = agent.view("m-01").session.remaining_s
    assert remaining is not None
    assert remaining > 15 * 60
    advance(r.clock, [agent], remaining - 10.5 * 60, step=3600)
    assert not r.feedback("m-01", FeedbackKind.WARN)
    advance(r.clock, [agent], 60)
    warned = wait_until(lambda: r.feedback("m-01", FeedbackKind.WARN), 5, "10 min warning")
    assert "Plus que 10 minutes" in warned[0].message
    advance(r.clock, [agent], 8 * 60)
    wait_until(lambda: len(r.feedback("m-01", FeedbackKind.WARN)) == 2, 5, "2 min warning")
    assert "Plus que 2 minutes" in r.feedback("m-01", FeedbackKind.WARN)[1].message
    assert act.history[-1] is True
    advance(r.clock, [agent], 90)  # exactly the granted end
    wait_until(lambda: state_of(agent, "m-01") == "idle", 5, "time up")
    assert act.history[-1] is False
    ended = [e for e in agent.journal.replay_from(1, 10_000) if isinstance(e, SessionEnded)]
    assert ended[0].body.reason is EndReason.TIME_UP
    assert ended[0].body.duration_s == pytest.approx(remaining, abs=1e-6)


def test_a_forged_snapshot_is_never_used(rig: Callable[..., Rig], mosquitto: Broker) -> None:
    r = rig({"pi-a": 1})
    agent = r.online(r.agent("pi-a", drain_timeout_s=0))
    version = agent.policy_version
    assert version is not None
    hub = r.hub.hub
    assert hub is not None
    genuine = hub.snapshot_of("pi-a")
    assert genuine is not None
    key = demo_edge_key(SECRET.encode(), "pi-a")

    def signed(v: int) -> bytes:
        return encode(sign_snapshot(genuine.model_copy(update={"version": v}), key))

    forged = genuine.model_copy(update={"version": version + 300})  # signature no longer fits
    topics = Topics(r.site.site)
    probe = Probe(mosquitto.host, mosquitto.port, []).start()
    try:
        probe.publish(topics.policy("pi-a"), signed(version + 200))
        wait_until(lambda: agent.policy_version == version + 200, 5, "signed one taken")
        probe.publish(topics.policy("pi-a"), encode(forged))
        # Had the forged v+300 been taken, this older v+250 would be ignored.
        probe.publish(topics.policy("pi-a"), signed(version + 250))
        wait_until(lambda: agent.policy_version == version + 250, 5, "forged one refused")
    finally:
        probe.stop()


def test_an_unusable_tls_setting_stops_the_start_with_everything_off(tmp_path: Path) -> None:
    settings = edge_settings(
        tmp_path,
        "s-x",
        "pi-a",
        free_port(),
        ["m-01"],
        mqtt={"port": free_port(), "tls": True, "ca_file": str(tmp_path / "missing-ca.pem")},
    )
    agent = Agent(settings)
    with pytest.raises(AgentError, match="MQTT link"):
        agent.start()
    act = actuator_of(agent, "m-01")
    assert act.history[-1] is False
    assert not act.is_open


def test_an_actuator_missing_at_start_is_retried(
    rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    from devices.errors import DeviceUnavailable

    monkeypatch.setattr(agent_module, "OUTPUT_RETRY_S", 0.2)
    original = SimulatedActuator.open
    failures = [1]

    def flaky_open(self: SimulatedActuator) -> None:
        if failures:
            failures.pop()
            raise DeviceUnavailable("plug unreachable")
        original(self)

    monkeypatch.setattr(SimulatedActuator, "open", flaky_open)
    r = rig({"pi-a": 1})
    agent = r.agent("pi-a")
    view = agent.view("m-01")
    assert view.availability is Availability.OFFLINE
    assert view.faults == ("actuator",)
    assert journal_types(agent) == ["machine_fault"]
    r.online(agent)
    wait_until(lambda: agent.view("m-01").availability is Availability.FREE, 5, "reopened")
    act = actuator_of(agent, "m-01")
    assert act.is_open
    assert act.history == [False]  # opened (off) once it answered; never on by itself


def test_a_failed_journal_write_never_switches_the_machine_on(
    rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.journal import Journal, JournalError

    r = rig({"pi-a": 1})
    agent = r.online(r.agent("pi-a"))

    def full_disk(self: Journal, bodies: object) -> None:
        raise JournalError("database or disk is full")

    monkeypatch.setattr(Journal, "append_many", full_disk)
    present(agent, "m-01", member_uid(1))
    wait_until(lambda: agent.view("m-01").availability is Availability.FAULT, 5, "fault")
    assert agent.view("m-01").faults == ("journal",)
    assert not any(actuator_of(agent, "m-01").history)  # switched off again, never on
