"""The gaming time rules end to end: a pc-agent, the real hub and a real Mosquitto.

The agent is built the way ``fabrique pc-agent`` builds it (a short ``pc.toml``
completed with the PC defaults, every message shown as a desktop notification)
with a ``pc.command`` session lock whose commands record their argv (real
processes, no shell) and a simulated badge reader. The hub runs in this process
on the same fake clock as the agent, so its daily usage and its break chains see
the time the agent sees; nothing of the policy is mocked.

The site: a gaming room open all day, one PC, and the healthy-gaming quotas of
the research notes: 9-15 play 90 minutes a day with a 10-minute break after 50
minutes; 16-25 play 180 minutes with a 10-minute break after 120.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from edge.agent import Agent
from edge.clock import FakeClock
from edge.feedback import FeedbackEvent
from edge.session import FeedbackKind
from edge.settings import load_edge_settings
from fabrique.demo.runner import to_toml
from fabrique.pcagent import build_pc_agent, load_pc_settings
from hub.db.engine import make_engine, make_sessionmaker, transaction
from hub.db.models import Badge, EdgeEvent, Machine, MachineKind, Member, Quota, Slot, Zone
from protocol.messages import EndReason, OfflineRule, SessionEnded
from protocol.signing import demo_edge_key
from tests.conftest import Broker
from tests.edge._pc_recorder import LockRecorder
from tests.edge.conftest import (
    SECRET,
    HubRunner,
    Proxy,
    Site,
    advance,
    bh,
    present,
    state_of,
    wait_until,
)

pytestmark = pytest.mark.broker

#: Wednesday 11 March 2026, 15:00 in Paris.
T0 = datetime(2026, 3, 11, 14, 0, tzinfo=UTC)
PC = "pc-07"
LINA = "0A0000000000C012"  # 12 years old: 9-15
YANIS = "0A0000000000C017"  # 17 years old: 16-25
MIN = 60.0


def seed_gaming_room(db_url: str) -> None:
    """The gaming zone, its PC, its quotas and two players (added to a seeded site)."""
    engine = make_engine(db_url)
    try:
        with transaction(make_sessionmaker(engine)) as s:
            s.add(Zone(id="gaming", name="Salle de jeux"))
            s.flush()
            for weekday in range(7):
                s.add(Slot(zone_id="gaming", weekday=weekday, start=dtime(0), end=dtime(0)))
            s.add(
                Machine(
                    id=PC,
                    name="PC gaming 7",
                    kind=MachineKind.GAMING_PC,
                    zone_id="gaming",
                    edge_id=PC,
                    offline_rule=OfflineRule.ALLOW,
                )
            )
            s.add(
                Quota(
                    zone_id="gaming",
                    age_group="9-15",
                    daily_min=90,
                    break_after_min=50,
                    break_min=10,
                )
            )
            s.add(
                Quota(
                    zone_id="gaming",
                    age_group="16-25",
                    daily_min=180,
                    break_after_min=120,
                    break_min=10,
                )
            )
            for name, year, uid in (("Lina Test", 2013, LINA), ("Yanis Test", 2008, YANIS)):
                member = Member(
                    display_name=name, birth_year=year, birth_month=6, consent_at=date(2025, 9, 1)
                )
                member.badges.append(Badge(hash=bh(uid)))
                s.add(member)
    finally:
        engine.dispose()


class AgentClock:
    """The PC's clocks: the shared fake clock, plus a wall offset the player may set."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.wall_offset = timedelta()

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def now(self) -> datetime:
        return self.clock.now() + self.wall_offset


@dataclass
class PcRig:
    site: Site
    hub: HubRunner
    clock: FakeClock
    agent: Agent
    lock: LockRecorder
    proxy: Proxy | None
    agent_clock: AgentClock
    events: list[FeedbackEvent] = field(default_factory=list)

    # ------------------------------------------------------------------ acting

    def badge(self, uid: str) -> None:
        present(self.agent, PC, uid)

    def advance(self, seconds: float) -> None:
        advance(self.clock, [self.agent], seconds, step=600)

    def start_session(self, uid: str) -> float:
        """Badge ``uid`` in and wait for the unlock; the seconds granted."""
        unlocks = self.lock.actions().count("unlock")
        self.badge(uid)
        wait_until(lambda: self.lock.actions().count("unlock") == unlocks + 1, 10, "unlocked")
        wait_until(lambda: state_of(self.agent, PC) == "active", 5, "active")
        remaining = self.agent.view(PC).session.remaining_s
        assert remaining is not None
        return remaining

    def refused(self, uid: str) -> str:
        """Badge ``uid``, expect a refusal; its message."""
        before = len(self.feedback(FeedbackKind.DENY))
        self.badge(uid)
        wait_until(lambda: self.feedback(FeedbackKind.DENY)[before:], 10, "refusal shown")
        return self.feedback(FeedbackKind.DENY)[before].message

    # ------------------------------------------------------------------ reading

    def feedback(self, kind: FeedbackKind) -> list[FeedbackEvent]:
        return [e for e in self.events if e.kind is kind]

    def wait_notified(self, count: int) -> list[str]:
        wait_until(lambda: len(self.lock.notifications()) >= count, 10, "notified")
        return self.lock.notifications()

    def ended(self) -> list[SessionEnded]:
        return [
            e for e in self.agent.journal.replay_from(1, 100_000) if isinstance(e, SessionEnded)
        ]

    def drained(self) -> None:
        wait_until(
            lambda: self.agent.acked_through == self.agent.journal.last_seq(), 15, "acknowledged"
        )


@pytest.fixture
def pc_rig(
    hub_runner_factory: Callable[..., tuple[Site, HubRunner]],
    proxy_factory: Callable[[int], Proxy],
    mosquitto: Broker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., PcRig]]:
    made: list[Agent] = []

    def make(*, via_proxy: bool = False, runner: str = "pc-agent") -> PcRig:
        """``runner``: ``pc-agent`` (a short pc.toml), or ``edge run`` (an ordinary
        edge.toml naming the kind and the journal, the agent built as the CLI does)."""
        clock = FakeClock(wall=T0)
        site, hub = hub_runner_factory({PC: 0}, members=0, clock=clock.now, start=False)
        seed_gaming_room(site.db_url)
        hub.start()
        proxy = proxy_factory(mosquitto.port) if via_proxy else None
        lock = LockRecorder.create(tmp_path / "lock")
        # The pc.toml an animator writes: no kind, no journal; the PC defaults fill them.
        config = tmp_path / "pc.toml"
        config.write_text(
            to_toml(
                {
                    "site": site.site,
                    "edge_id": PC,
                    "site_secret": SECRET,
                    "edge_key": demo_edge_key(SECRET.encode(), PC).hex(),
                    "drain_timeout_s": 3.0,
                    "mqtt": {
                        "port": proxy.port if proxy else mosquitto.port,
                        "reconnect_max_s": 1,
                    },
                    "journal": {"resend_s": 2.0},
                    "machines": [
                        {
                            "id": PC,
                            "reader": {"kind": "reader.sim", "options": {"debounce_s": 0}},
                            "pc": {"kind": "pc.command", "options": lock.options()},
                        }
                    ],
                }
            ),
            encoding="utf-8",
        )
        monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
        agent_clock = AgentClock(clock)
        if runner == "edge run":
            data = tomllib.loads(config.read_text(encoding="utf-8"))
            data["machines"][0]["kind"] = "gaming_pc"
            data["journal"]["path"] = str(tmp_path / "edge-journal.db")
            config.write_text(to_toml(data), encoding="utf-8")
            agent = Agent(load_edge_settings(config), clock=agent_clock)  # as edge_run does
        else:
            settings = load_pc_settings(config)
            assert settings.journal.path == tmp_path / "state" / "journal.db"
            agent = build_pc_agent(settings, clock=agent_clock)
        rig = PcRig(site, hub, clock, agent, lock, proxy, agent_clock)
        agent.stream.subscribe(rig.events.append)
        agent.start()
        made.append(agent)
        wait_until(lambda: agent.hub_online and agent.policy_version, 15, "online, snapshot")
        assert lock.actions() == ["lock"]  # locked before anything else
        return rig

    yield make
    for agent in made:
        agent.stop()


def used_by(hub: HubRunner) -> list[tuple[float, EndReason | None]]:
    rows = sorted(hub.sessions().values(), key=lambda r: r.started_at)
    return [(r.used_s, r.end_reason) for r in rows]


# --------------------------------------------------------------------------- 9-15


@pytest.mark.parametrize("runner", ["pc-agent", "edge run"])
def test_a_twelve_year_old_plays_50_breaks_10_then_finishes_the_daily_90(
    pc_rig: Callable[..., PcRig], runner: str
) -> None:
    """The same notifications whatever serves the PC (its kind's, not the runner's)."""
    r = pc_rig(runner=runner)
    # Badge: unlocked for 50 minutes (the break comes before the 90-minute cap).
    granted = r.start_session(LINA)
    assert granted == 50 * MIN
    grant = r.wait_notified(1)[0]
    assert grant == "C'est parti, Lina ! Jusqu'à 15h50."
    assert r.lock.titles() == {"fabrique"}

    # Warnings at 40 and 48 minutes, as notifications the player sees over the game.
    r.advance(40 * MIN)
    warning = r.wait_notified(2)[1]
    assert "10 minutes" in warning
    assert "pense à sauvegarder" in warning
    r.advance(8 * MIN)
    assert "2 minutes" in r.wait_notified(3)[2]
    assert not r.lock.locked()

    # At 50 minutes exactly: locked; the session ends with the exact play time.
    r.advance(2 * MIN)
    wait_until(r.lock.locked, 10, "locked at the break")
    (first,) = r.ended()
    assert first.body.duration_s == 50 * MIN
    assert first.body.reason is EndReason.BREAK
    r.drained()
    assert used_by(r.hub) == [(50 * MIN, first.body.reason)]  # the break is not counted

    # During the break: refused in French, still locked.
    r.advance(5 * MIN)
    refusal = r.refused(LINA)  # by the PC itself: it holds the break
    assert refusal == "Pause obligatoire : reviens dans 5 minutes."
    assert r.lock.notifications()[-1] == refusal
    assert r.lock.locked()

    # After the break: the remaining 40 minutes of the daily 90.
    r.advance(5 * MIN)
    assert r.start_session(LINA) == 40 * MIN
    session_id = r.agent.view(PC).session.session_id
    assert session_id is not None
    wait_until(lambda: session_id in r.hub.sessions(), 10, "hub knows the session")
    assert r.hub.sessions()[session_id].granted_until == T0 + timedelta(minutes=100)
    notified = len(r.lock.notifications())
    r.advance(30 * MIN)
    assert r.wait_notified(notified + 1)[-1] == "Plus que 10 minutes : pense à sauvegarder !"
    r.advance(8 * MIN)
    assert r.wait_notified(notified + 2)[-1] == "Plus que 2 minutes : pense à sauvegarder !"
    r.advance(2 * MIN)
    wait_until(r.lock.locked, 10, "locked at the end of the daily cap")
    second = r.ended()[1]
    assert (second.body.reason, second.body.duration_s) == (EndReason.TIME_UP, 40 * MIN)

    # The daily cap is used up: refused with the hub's French message, still locked.
    r.drained()
    assert r.refused(LINA) == "Tu as utilisé tes 90 minutes d'aujourd'hui. Reviens demain !"
    assert r.lock.locked()
    assert [used for used, _ in used_by(r.hub)] == [50 * MIN, 40 * MIN]
    assert r.lock.actions() == ["lock", "unlock", "lock", "unlock", "lock"]


# --------------------------------------------------------------------------- 16-25


def test_a_seventeen_year_old_gets_the_16_25_rules(pc_rig: Callable[..., PcRig]) -> None:
    r = pc_rig()
    assert r.start_session(YANIS) == 120 * MIN  # break after 120 of his 180 minutes
    r.advance(110 * MIN)
    assert "10 minutes" in r.wait_notified(2)[1]
    r.advance(8 * MIN)
    assert "2 minutes" in r.wait_notified(3)[2]
    r.advance(2 * MIN)
    wait_until(r.lock.locked, 10, "locked at the break")
    assert r.ended()[0].body.duration_s == 120 * MIN
    r.drained()
    r.advance(5 * MIN)
    assert r.refused(YANIS) in (
        "Pause obligatoire : reviens à 17h10.",
        "Pause obligatoire : reviens dans 5 minutes.",
    )
    r.advance(5 * MIN)
    assert r.start_session(YANIS) == 60 * MIN  # what is left of his 180


# --------------------------------------------------------------------------- offline


def last_45_minutes(r: PcRig) -> str:
    """Lina plays 45 minutes, pauses 10, and badges for the 45 left of her 90; the id."""
    r.start_session(LINA)
    r.advance(45 * MIN)
    r.badge(LINA)  # badge-out
    wait_until(r.lock.locked, 10, "locked on badge-out")
    r.drained()
    r.advance(10 * MIN)
    assert r.start_session(LINA) == 45 * MIN  # the quota ends it, before any break
    session_id = r.agent.view(PC).session.session_id
    assert session_id is not None
    return session_id


def test_pulling_the_network_cable_never_extends_play(pc_rig: Callable[..., PcRig]) -> None:
    r = pc_rig(via_proxy=True)
    assert r.proxy is not None
    session_id = last_45_minutes(r)

    # The cable is pulled, and the player sets the PC's clock back one hour.
    r.advance(5 * MIN)
    r.proxy.cut()
    wait_until(lambda: not r.agent.hub_online, 10, "offline")
    r.agent_clock.wall_offset = timedelta(hours=-1)
    notified = len(r.lock.notifications())
    r.advance(30 * MIN)
    assert r.wait_notified(notified + 1)[-1] == "Plus que 10 minutes : pense à sauvegarder !"
    r.advance(8 * MIN)
    assert r.wait_notified(notified + 2)[-1] == "Plus que 2 minutes : pense à sauvegarder !"
    r.advance(2 * MIN - 1)
    assert not r.lock.locked()
    r.advance(1)  # the granted end, on the monotonic clock
    wait_until(r.lock.locked, 10, "locked offline at the granted end")
    ended = r.ended()[-1]
    assert ended.body.session_id == session_id
    assert (ended.body.reason, ended.body.duration_s) == (EndReason.TIME_UP, 45 * MIN)
    assert r.agent.journal.last_seq() > r.agent.acked_through  # still waiting for the hub

    # Cable back: the ledger holds the session once, with the edge's exact duration.
    r.agent_clock.wall_offset = timedelta()
    r.proxy.heal()
    wait_until(lambda: r.agent.hub_online, 15, "online again")
    r.drained()
    assert [used for used, _ in used_by(r.hub)] == [45 * MIN, 45 * MIN]
    row = r.hub.sessions()[session_id]
    assert row.end_reason == EndReason.TIME_UP
    with r.hub.factory() as s:
        ends = s.scalar(
            select(func.count())
            .select_from(EdgeEvent)
            .where(EdgeEvent.edge_id == PC, EdgeEvent.type == "session_ended")
        )
    assert ends == 2
    assert r.refused(LINA) == "Tu as utilisé tes 90 minutes d'aujourd'hui. Reviens demain !"


def test_badging_again_offline_after_time_up_grants_no_more_than_the_cap(
    pc_rig: Callable[..., PcRig],
) -> None:
    r = pc_rig(via_proxy=True)
    assert r.proxy is not None
    last_45_minutes(r)
    r.proxy.cut()
    wait_until(lambda: not r.agent.hub_online, 10, "offline")
    r.advance(45 * MIN)
    wait_until(r.lock.locked, 10, "time up")
    r.advance(MIN)
    r.badge(LINA)  # her 90 minutes are played: nothing more, hub or no hub
    wait_until(lambda: r.feedback(FeedbackKind.DENY) or r.lock.actions()[-1] == "unlock", 10)
    assert r.lock.locked()


def test_the_break_ends_the_session_as_a_break_when_the_hub_caps_the_grant_there(
    pc_rig: Callable[..., PcRig],
) -> None:
    """The hub ends a 9-15 grant at the break (ends_at = break time): the edge must still
    call it a break (reason ``break``, warnings "Pause obligatoire dans…", the player
    held back locally for the break's 10 minutes)."""
    r = pc_rig()
    r.start_session(LINA)
    r.advance(40 * MIN)
    warning = r.wait_notified(2)[1]
    r.advance(10 * MIN)
    wait_until(r.lock.locked, 10, "locked at the break")
    assert r.ended()[0].body.reason is EndReason.BREAK
    assert warning == "Pause obligatoire dans 10 minutes : pense à sauvegarder !"
