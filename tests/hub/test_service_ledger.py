"""Journal events through a real broker into SQLite and PostgreSQL, and hub restarts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.db.models import MachineJob, UsageSession
from hub.reports import usage_seconds
from hub.service import Hub
from protocol.messages import JournalCommand, decode
from tests.conftest import Broker
from tests.hub.hubkit import NOW, Journal, Probe, Seed, dumps, migrated, seed, settings_for

pytestmark = pytest.mark.broker


@pytest.fixture
def store(db_url: str) -> Iterator[tuple[str, sessionmaker[Session], Seed]]:
    factory = migrated(db_url)
    ids = seed(factory)
    yield db_url, factory, ids
    factory.kw["bind"].dispose()


def journal_commands(probe: Probe, topic: str) -> list[JournalCommand]:
    return [decode(JournalCommand, m.payload) for m in probe.on(topic)]


def test_journal_is_applied_once_acked_after_commit_and_gaps_replayed(
    mosquitto: Broker, store: tuple[str, sessionmaker[Session], Seed]
) -> None:
    db_url, factory, ids = store
    settings = settings_for(db_url, mosquitto, gap_replay_after_s=0.5)
    hub = Hub(settings, factory, clock=lambda: NOW, snapshot_workers=0)
    t = hub.topics
    j = Journal("pi-fab")
    events = j.session("s-1", "printer-1", ids.badge_alice, NOW, 300.25)
    events.append(j.job("s-1", "printer-1", NOW + timedelta(hours=1), 3500.0, filament_mm=812.5))
    events += j.session(
        "s-2", "laser-1", ids.badge_alice, NOW + timedelta(minutes=10), 125.5, run_s=61.0
    )
    n = len(events)
    hub.start()
    edge = Probe(mosquitto.host, mosquitto.port, [t.cmd_journal("pi-fab")]).start()
    try:
        assert hub.mqtt.wait_connected(10)
        edge.publish(t.edge_status("pi-fab"), dumps({"v": 1, "online": True, "epoch": 1}))
        edge.wait_for(lambda m: decode(JournalCommand, m.payload).ack_through == 0)

        held_back = events[2]  # seq 3 is lost on the way
        rest = [e for e in events if e is not held_back]
        gap_opened = time.monotonic()
        for e in rest + list(reversed(rest)):  # everything twice, the repeats backwards
            edge.publish(t.evt("pi-fab"), dumps(e))
        replay = edge.wait_for(
            lambda m: decode(JournalCommand, m.payload).replay_from is not None, timeout=10
        )
        assert time.monotonic() - gap_opened >= 0.45
        assert decode(JournalCommand, replay.payload).replay_from == 3
        acks = [c.ack_through for c in journal_commands(edge, t.cmd_journal("pi-fab"))]
        assert max(a for a in acks if a is not None) == 2  # never past the gap

        edge.publish(t.evt("pi-fab"), dumps(held_back))
        edge.wait_for(lambda m: decode(JournalCommand, m.payload).ack_through == n, timeout=10)
        assert hub.worker.drain()
        assert hub.live.open_sessions() == {}
        assert hub.metrics.get("events", "duplicate") == n - 1
    finally:
        edge.stop()
        hub.stop()

    with factory() as s:
        totals = usage_seconds(s, since=NOW, until=NOW + timedelta(days=1), by="member")
        per_machine = usage_seconds(s, since=NOW, until=NOW + timedelta(days=1), by="machine")
    assert totals == {ids.alice: 300.25 + 125.5}
    assert per_machine == {"printer-1": 300.25, "laser-1": 125.5}
    with factory() as s:
        job = s.scalars(select(MachineJob)).one()
        laser = s.get(UsageSession, "s-2")
    assert (job.session_id, job.member_id, job.filament_mm) == ("s-1", ids.alice, 812.5)
    assert laser is not None
    assert laser.run_s == 61.0


def test_restart_restores_open_sessions_and_pending_gaps(
    mosquitto: Broker, store: tuple[str, sessionmaker[Session], Seed]
) -> None:
    db_url, factory, ids = store
    patient = settings_for(db_url, mosquitto, gap_replay_after_s=60)
    eager = patient.model_copy(update={"gap_replay_after_s": 0.3})
    j = Journal("pi-game")
    start, tick, *_ = j.session("s-open", "pc-1", ids.badge_bob, NOW, 200)
    j.seq += 5  # seqs 3 to 7 never arrive: a gap left open across the restart
    # Dated two minutes after the start: used time never exceeds the wall span.
    late = j.event(
        "usage_tick",
        {**tick["body"], "minute": 2, "elapsed_s": 120.0},
        NOW + timedelta(minutes=2),
    )
    first = Hub(patient, factory, clock=lambda: NOW, snapshot_workers=0)
    first.start()
    t = first.topics
    edge = Probe(mosquitto.host, mosquitto.port, [t.cmd_journal("pi-game")]).start()
    try:
        assert first.mqtt.wait_connected(10)
        for e in (start, late):
            edge.publish(t.evt("pi-game"), dumps(e))
        assert first.worker.drain()
        edge.wait_for(lambda m: decode(JournalCommand, m.payload).ack_through == 1)
        first.stop()
        assert not any(c.replay_from for c in journal_commands(edge, t.cmd_journal("pi-game")))

        second = Hub(eager, factory, clock=lambda: NOW, snapshot_workers=0)
        second.start()
        try:
            assert second.live.open_sessions()["pc-1"].session_id == "s-open"
            # Nothing new arrives: the gap found in the store at start is enough.
            replay = edge.wait_for(
                lambda m: decode(JournalCommand, m.payload).replay_from is not None, timeout=10
            )
            assert decode(JournalCommand, replay.payload).replay_from == 2
            with factory() as s:
                totals = usage_seconds(s, since=NOW, until=NOW + timedelta(hours=1), by="machine")
            assert totals == {"pc-1": 120.0}
        finally:
            second.stop()
    finally:
        edge.stop()
