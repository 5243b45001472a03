"""Reliability 5: every journal event is delivered twice, and out of order.

The agent's link is wrapped so that the events it sends are held for a moment, then
published twice each in a shuffled order. The hub must apply each event once: its
ledger is identical to the one obtained by applying the edge's journal once, in
order, to a fresh store, and the usage totals equal the ground truth.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from edge.agent import Agent
from edge.clock import FakeClock
from edge.link import EdgeLink, LinkHandler, LinkSettings
from hub.db.engine import make_engine, make_sessionmaker
from hub.db.models import UsageSession
from hub.directory import policy_config
from hub.ledger import Ledger
from protocol.messages import Message
from tests.conftest import Broker
from tests.edge.conftest import (
    HubRunner,
    Site,
    advance,
    edge_settings,
    member_uid,
    present,
    seed_site,
    state_of,
    wait_until,
)

pytestmark = pytest.mark.broker


class TwiceShuffled(EdgeLink):
    """An :class:`EdgeLink` that publishes each journal event twice, out of order."""

    def __init__(self, settings: LinkSettings, handler: LinkHandler, epochs: Any) -> None:
        super().__init__(settings, handler, epoch_source=epochs)
        self.published: list[int] = []
        self.errors: list[Exception] = []
        self._held: list[Message] = []
        self._lock = threading.Lock()
        self._rng = random.Random(7)
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, daemon=True)

    def start(self) -> None:
        super().start()
        self._flusher.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._flusher.join(2)
        super().stop(timeout)

    def send_event(self, event: Message) -> bool:
        if not self.is_up:
            return False
        with self._lock:
            self._held.append(event)
        return True

    def _flush_loop(self) -> None:
        while not self._stop.wait(0.03):
            try:
                with self._lock:
                    batch, self._held = self._held * 2, []
                self._rng.shuffle(batch)
                for event in batch:
                    if EdgeLink.send_event(self, event):
                        self.published.append(int(getattr(event, "seq", 0)))
            except Exception as err:  # reported by the test, never a silent stall
                self.errors.append(err)


def test_every_event_twice_and_out_of_order(
    mosquitto: Broker,
    hub_runner_factory: Callable[..., tuple[Site, HubRunner]],
    tmp_path: Path,
) -> None:
    clock = FakeClock(wall=datetime(2026, 3, 11, 14, 0, tzinfo=UTC))
    site, hub = hub_runner_factory({"pi-a": 3}, clock=clock.now)
    links: list[TwiceShuffled] = []

    def factory(settings: LinkSettings, handler: LinkHandler, epochs: Any) -> TwiceShuffled:
        link = TwiceShuffled(settings, handler, epochs)
        links.append(link)
        return link

    settings = edge_settings(tmp_path, site.site, "pi-a", mosquitto.port, site.edges["pi-a"])
    agent = Agent(settings, clock=clock, link_factory=factory)
    agent.start()
    truth: dict[str, float] = {}
    try:
        wait_until(lambda: agent.hub_online, 15, "online")
        machines = ["m-01", "m-02", "m-03"]
        member = 0
        for round_ in range(3):
            # The hub holds a machine busy until it has applied the previous session's end.
            wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 10, "applied")
            starts: dict[str, tuple[float, int]] = {}
            for machine in machines:
                member += 1
                present(agent, machine, member_uid(member))
                wait_until(lambda m=machine: state_of(agent, m) == "active", 5, "grant")
                starts[machine] = (clock.monotonic(), member)
                advance(clock, [agent], 17.25)
            advance(clock, [agent], 60 * (round_ + 1) + 3.5)
            for machine in machines:
                start, who = starts[machine]
                session_id = agent.view(machine).session.session_id
                assert session_id is not None
                present(agent, machine, member_uid(who))
                wait_until(lambda m=machine: state_of(agent, m) == "idle", 5, "badge-out")
                truth[session_id] = clock.monotonic() - start
                advance(clock, [agent], 0.75)
        wait_until(lambda: agent.acked_through == agent.journal.last_seq(), 20, "acknowledged")
        events = agent.journal.replay_from(1, limit=10_000)
    finally:
        agent.stop()
    assert links[0].errors == []
    published = links[0].published
    assert len(published) >= 2 * len(events)
    assert published != sorted(published)  # really out of order

    rows = hub.sessions()
    assert {s: r.used_s for s, r in rows.items()} == pytest.approx(truth, abs=1e-3)

    # The same journal applied once, in order, to a fresh store gives the same ledger.
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    reference = seed_site(f"sqlite:///{reference_dir / 'hub.db'}", {"pi-a": 3})
    engine = make_engine(reference.db_url)
    try:
        factory_ = make_sessionmaker(engine)
        ledger = Ledger(factory_, policy_config(hub.settings))
        for event in events:
            ledger.apply(event)
        with factory_() as s:
            expected = {r.id: _row(r) for r in s.scalars(select(UsageSession))}
    finally:
        engine.dispose()
    assert {s: _row(r) for s, r in rows.items()} == expected


def _row(r: UsageSession) -> tuple[Any, ...]:
    return (
        r.machine_id,
        r.member_id,
        r.badge_hash,
        r.started_at,
        r.ended_at,
        r.end_reason,
        r.used_s,
        r.last_minute,
        r.offline,
        r.granted_until,
    )
