"""The ledger against hostile journals, through a real broker, on SQLite and PostgreSQL.

Issue 12, "the ledger: no poison, no stall, no absurd usage": a bad event never drops
other events nor stalls its edge's journal, a gap that cannot close is not asked for
every few seconds forever, used time stays within the session's wall span, a forged
epoch does not take an edge's machines offline for good, a QoS 1 duplicate of a
request is answered once, and no log line carries a badge hash.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from hub.db.engine import make_engine, transaction
from hub.db.models import AccessLog, Alert, EdgeCursor, EdgeEvent, QuarantinedEvent, UsageSession
from hub.ledger import Ledger
from hub.service import Hub
from protocol.errors import SchemaError
from protocol.messages import MAX_EPOCH, MAX_SEQ, EdgeStatus, JournalCommand, decode, decode_event
from tests.conftest import Broker
from tests.hub.hubkit import (
    NOW,
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

Store = tuple[str, sessionmaker[Session], Seed]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    factory = migrated(db_url)
    ids = seed(factory)
    yield db_url, factory, ids
    factory.kw["bind"].dispose()


def start_hub(db_url: str, factory: sessionmaker[Session], broker: Broker, **settings: Any) -> Hub:
    hub = Hub(
        settings_for(db_url, broker, **settings), factory, clock=lambda: NOW, snapshot_workers=0
    )
    hub.start()
    assert hub.mqtt.wait_connected(10)
    return hub


def commands(probe: Probe, topic: str) -> list[JournalCommand]:
    return [decode(JournalCommand, m.payload) for m in probe.on(topic)]


def acked(probe: Probe, topic: str, through: int, timeout: float = 10.0) -> None:
    probe.wait_for(
        lambda m: m.topic == topic and decode(JournalCommand, m.payload).ack_through == through,
        timeout=timeout,
    )


def alerts(factory: sessionmaker[Session], kind: str) -> list[Alert]:
    with factory() as s:
        return list(s.scalars(select(Alert).where(Alert.kind == kind)))


def poison_sessions_named(factory: sessionmaker[Session], session_id: str) -> None:
    """Make the store refuse one session's insert, as a value the store cannot hold
    would: the event passes validation and fails in the ledger. On PostgreSQL the
    error quotes the row's badge hash, as a constraint's DETAIL line does."""
    with transaction(factory) as s:
        if s.get_bind().dialect.name == "sqlite":
            s.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON usage_session "
                    f"WHEN NEW.id = '{session_id}' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
                )
            )
        else:
            s.execute(
                text(
                    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.id = '{session_id}' THEN "
                    "RAISE EXCEPTION 'poisoned %', NEW.badge_hash; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            s.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON usage_session "
                    "FOR EACH ROW EXECUTE FUNCTION poison()"
                )
            )


# --------------------------------------------------------------------------- 1. bounds


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 2**63),
        ("seq", 2**64),
        ("epoch", 2**62),
        ("ts", "0001-01-01T00:00:00+05:00"),
        ("ts", "9999-12-31T23:00:00-05:00"),
        ("ts", "1969-12-31T23:59:59+00:00"),
        ("ts", "2100-01-01T00:00:00+00:00"),
    ],
)
def test_numbers_and_dates_are_bounded_at_the_contract(field: str, value: Any) -> None:
    raw = Journal("pi-fab").event("machine_fault", {"machine": "laser-1", "code": "alarm"})
    raw[field] = value
    with pytest.raises(SchemaError):
        decode_event(dumps(raw))
    raw[field] = {"seq": MAX_SEQ, "epoch": MAX_EPOCH, "ts": "1970-01-01T05:00:00+05:00"}[field]
    assert decode_event(dumps(raw)).ts.utcoffset() == timedelta(0)  # the edge of the window
    with pytest.raises(SchemaError):
        decode(EdgeStatus, dumps({"v": 1, "online": True, "epoch": 2**62}))


def test_one_poison_event_loses_nothing_else_and_is_quarantined(
    mosquitto: Broker, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch mixing two edges' events and one event the store refuses: every other
    event is applied, the poison is kept aside, acknowledged and alerted, no replay is
    asked, and no log line carries the badge hash (item 6)."""
    db_url, factory, ids = store
    poison_sessions_named(factory, "s-poison")
    hub = start_hub(db_url, factory, mosquitto, gap_replay_after_s=0.3)
    t = hub.topics
    fab, game = Journal("pi-fab"), Journal("pi-game")
    events = fab.session("s-1", "printer-1", ids.badge_alice, NOW, 125.0)  # seqs 1..4
    poison = fab.session("s-poison", "laser-1", ids.badge_alice, NOW, 61.0)  # 5..7
    events += poison
    events += fab.session("s-3", "laser-1", ids.badge_alice, NOW + timedelta(hours=1), 10.0)
    others = game.session("s-game", "pc-1", ids.badge_bob, NOW, 120.0)
    mixed = [e for pair in zip(events, others + [None] * len(events), strict=False) for e in pair]
    edge = Probe(
        mosquitto.host, mosquitto.port, [t.cmd_journal("pi-fab"), t.cmd_journal("pi-game")]
    )
    edge.start()
    caplog.set_level(logging.INFO)
    try:
        hub.worker.drain()
        for e in mixed:
            if e is not None:
                edge.publish(t.evt(e["edge"]), dumps(e))
        acked(edge, t.cmd_journal("pi-fab"), fab.seq)
        acked(edge, t.cmd_journal("pi-game"), game.seq)
        assert hub.worker.drain()
        wait_until(lambda: hub.metrics.get("quarantined") >= 1, what="quarantined")
        assert not any(c.replay_from for c in commands(edge, t.cmd_journal("pi-fab")))
        assert hub.ledger.open_gaps() == {}
        # The same poison again (a replay) is a duplicate, not a second quarantine.
        edge.publish(t.evt("pi-fab"), dumps(poison[0]))
        assert hub.worker.drain()
        wait_until(lambda: hub.metrics.get("events", "duplicate") >= 1, what="duplicate")
    finally:
        edge.stop()
        hub.stop()

    with factory() as s:
        sessions = {r.id: r.used_s for r in s.scalars(select(UsageSession))}
        quarantined = s.scalars(select(QuarantinedEvent)).all()
        cursor = s.get(EdgeCursor, "pi-fab")
    assert sessions == {"s-1": 125.0, "s-3": 10.0, "s-game": 120.0}
    # Its tick and end fail the same way (the store refuses their placeholder).
    assert sorted((q.edge_id, q.seq, q.type, q.reason) for q in quarantined) == [
        ("pi-fab", 5, "session_started", "apply_failed"),
        ("pi-fab", 6, "usage_tick", "apply_failed"),
        ("pi-fab", 7, "session_ended", "apply_failed"),
    ]
    assert all(q.body.get("badge", "") == "" for q in quarantined)  # kept without hashes
    assert cursor is not None
    assert (cursor.contiguous_through, cursor.max_seen) == (fab.seq, fab.seq)
    (alert,) = alerts(factory, "journal_poison")
    assert alert.edge_id == "pi-fab"
    assert "seq 5" in alert.detail
    assert ids.badge_alice not in caplog.text
    assert "parameters:" not in caplog.text


def test_any_exception_in_a_projection_fails_alone(
    mosquitto: Broker, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only store errors: whatever a projection raises (here the OverflowError a
    date computation used to raise), the event is quarantined and the rest applied."""
    db_url, factory, ids = store
    real_tick = Ledger._tick

    def overflowing(self: Ledger, s: Session, event: Any) -> Any:
        if event.body.session_id == "s-boom":
            raise OverflowError("date value out of range")
        return real_tick(self, s, event)

    monkeypatch.setattr(Ledger, "_tick", overflowing)
    hub = start_hub(db_url, factory, mosquitto)
    t = hub.topics
    j = Journal("pi-fab")
    events = j.session("s-boom", "printer-1", ids.badge_alice, NOW, 130.0)
    events += j.session("s-fine", "laser-1", ids.badge_alice, NOW, 70.0)
    edge = Probe(mosquitto.host, mosquitto.port, [t.cmd_journal("pi-fab")]).start()
    try:
        for e in events:
            edge.publish(t.evt("pi-fab"), dumps(e))
        acked(edge, t.cmd_journal("pi-fab"), j.seq)
        assert hub.worker.drain()
    finally:
        edge.stop()
        hub.stop()
    with factory() as s:
        quarantined = s.scalars(select(QuarantinedEvent.seq).order_by(QuarantinedEvent.seq))
        assert list(quarantined) == [2, 3]  # the two ticks of s-boom
        assert s.get(UsageSession, "s-fine") is not None
        boom = s.get(UsageSession, "s-boom")
    assert boom is not None
    assert boom.used_s == 130.0  # its start and end were applied
    assert hub.metrics.get("quarantined", "apply_failed") == 2


def test_a_failed_sql_write_hides_its_parameters(store: Store) -> None:
    db_url, _factory, ids = store
    engine = make_engine(db_url)
    try:
        with pytest.raises(DBAPIError) as err, engine.begin() as conn:
            conn.execute(
                text("INSERT INTO badge (hash, member_id) VALUES (:h, :m)"),
                {"h": ids.badge_alice, "m": ids.alice},  # already there: unique violation
            )
    finally:
        engine.dispose()
    assert ids.badge_alice not in str(err.value).split("DETAIL")[0]
    assert "hidden" in str(err.value)


# --------------------------------------------------------------------------- 2. stalls


def test_a_gap_that_can_never_close_is_quarantined_not_replayed(
    mosquitto: Broker, store: Store
) -> None:
    db_url, factory, ids = store
    hub = start_hub(db_url, factory, mosquitto, gap_replay_after_s=0.2)
    t = hub.topics
    j = Journal("pi-fab")
    start, *rest = j.session("s-1", "printer-1", ids.badge_alice, NOW, 60.0)
    far = dict(start, seq=MAX_SEQ, event_id=uuid.uuid4().hex)
    edge = Probe(mosquitto.host, mosquitto.port, [t.cmd_journal("pi-fab")]).start()
    try:
        for e in (start, far, *rest):
            edge.publish(t.evt("pi-fab"), dumps(e))
        acked(edge, t.cmd_journal("pi-fab"), j.seq)
        assert hub.worker.drain()
        assert hub.ledger.open_gaps() == {}
        assert hub.ledger.cursor("pi-fab") == (j.seq, j.seq)
        assert hub.metrics.get("quarantined", "out_of_window") == 1
    finally:
        edge.stop()
        hub.stop()
    assert not any(c.replay_from for c in commands(edge, t.cmd_journal("pi-fab")))
    with factory() as s:
        assert s.get(QuarantinedEvent, ("pi-fab", MAX_SEQ)) is not None
        assert s.get(EdgeEvent, ("pi-fab", MAX_SEQ)) is None
    (alert,) = alerts(factory, "journal_poison")
    assert str(MAX_SEQ) in alert.detail


def test_replays_of_a_real_gap_back_off_and_alert(mosquitto: Broker, store: Store) -> None:
    db_url, factory, ids = store
    after = 0.2
    hub = start_hub(db_url, factory, mosquitto, gap_replay_after_s=after, gap_alert_after=3)
    t = hub.topics
    j = Journal("pi-fab")
    start, _lost, *rest = j.session("s-1", "printer-1", ids.badge_alice, NOW, 180.0)
    edge = Probe(mosquitto.host, mosquitto.port, [t.cmd_journal("pi-fab")]).start()
    replays: list[tuple[float, int | None]] = []  # (received, replay_from), in paho's thread

    def on_journal(_client: Any, _userdata: Any, msg: Any) -> None:
        command = decode(JournalCommand, msg.payload)
        if command.replay_from is not None:
            replays.append((time.monotonic(), command.replay_from))

    edge.client.message_callback_add(t.cmd_journal("pi-fab"), on_journal)
    try:
        for e in (start, *rest):
            edge.publish(t.evt("pi-fab"), dumps(e))
        wait_until(lambda: len(alerts(factory, "journal_gap")) == 1, 15, "journal_gap alert")
        wait_until(lambda: len(replays) >= 3, 15, "three replay requests")
    finally:
        edge.stop()
        hub.stop()
    # Each wait doubles: 2x, then 4x the first delay (lower bounds, with some slack for
    # delivery jitter).
    seen = [at for at, _ in replays]
    assert seen[1] - seen[0] >= 0.75 * 2 * after
    assert seen[2] - seen[1] >= 0.75 * 4 * after
    assert {first for _, first in replays} == {2}
    (alert,) = alerts(factory, "journal_gap")
    assert "seq 2" in alert.detail


# --------------------------------------------------------------------------- 3. usage


def test_used_time_never_exceeds_the_wall_span_nor_the_longest_session(
    mosquitto: Broker, store: Store
) -> None:
    db_url, factory, ids = store
    hub = start_hub(db_url, factory, mosquitto)
    t = hub.topics
    j = Journal("pi-fab")
    events = j.session("s-short", "printer-1", ids.badge_alice, NOW, 600.0, run_s=500.0)
    week = j.event(
        "usage_tick",
        {"session_id": "s-short", "machine": "printer-1", "minute": 10080, "elapsed_s": 604800.0},
    )
    # An open session started three days ago whose tick claims five days.
    three_days_ago = NOW - timedelta(days=3)
    opened = [
        j.event(
            "session_started",
            {
                "session_id": "s-open",
                "machine": "laser-1",
                "badge": ids.badge_alice,
                "started_at": three_days_ago.isoformat(),
            },
            three_days_ago,
        )
    ]
    days = j.event(
        "usage_tick",
        {"session_id": "s-open", "machine": "laser-1", "minute": 7200, "elapsed_s": 432000.0},
    )
    # A tick that overtakes its start: the start's real time re-bounds it.
    late = NOW + timedelta(hours=3)
    late_start = j.event(
        "session_started",
        {
            "session_id": "s-late",
            "machine": "printer-1",
            "badge": ids.badge_alice,
            "started_at": late.isoformat(),
        },
        late,
    )
    early_tick = j.event(
        "usage_tick",
        {"session_id": "s-late", "machine": "printer-1", "minute": 600, "elapsed_s": 36000.0},
        NOW + timedelta(hours=3, minutes=10),
    )
    edge = Probe(mosquitto.host, mosquitto.port, [t.cmd_journal("pi-fab")]).start()
    try:
        for e in (*events, week, *opened, days, early_tick, late_start):
            edge.publish(t.evt("pi-fab"), dumps(e))
        acked(edge, t.cmd_journal("pi-fab"), j.seq)
        assert hub.worker.drain()
    finally:
        edge.stop()
        hub.stop()
    with factory() as s:
        short = s.get(UsageSession, "s-short")
        still = s.get(UsageSession, "s-open")
        late_row = s.get(UsageSession, "s-late")
    assert short is not None
    assert still is not None
    assert late_row is not None
    assert (short.used_s, short.run_s) == (600.0, 500.0)
    assert still.used_s == 24 * 3600.0  # session_max_h
    # Started at 17:00 UTC, ticked at 17:10: ten minutes, not ten hours.
    assert late_row.used_s == 600.0
    assert hub.metrics.get("usage_clamped") == 3
    (alert,) = alerts(factory, "usage_clamped")  # one open alert per edge
    assert alert.edge_id == "pi-fab"
    assert "s-short" in alert.detail


# --------------------------------------------------------------------------- 4. epochs


def test_a_forged_epoch_is_recovered_from_the_journal_and_across_a_restart(
    mosquitto: Broker, store: Store
) -> None:
    db_url, factory, ids = store
    hub = start_hub(db_url, factory, mosquitto, gap_replay_after_s=0.2)
    t = hub.topics
    j = Journal("pi-fab", epoch=3)
    events = j.session("s-1", "printer-1", ids.badge_alice, NOW, 60.0)
    real = {"v": 1, "online": True, "epoch": 3, "machines": ["laser-1", "printer-1"]}
    edge = Probe(mosquitto.host, mosquitto.port, [t.cmd_journal("pi-fab")]).start()
    try:
        edge.publish(t.edge_status("pi-fab"), dumps(real))
        for e in events:
            edge.publish(t.evt("pi-fab"), dumps(e))
        acked(edge, t.cmd_journal("pi-fab"), j.seq)
        # 2**62 is refused by the contract; the largest epoch it allows is stored...
        edge.publish(t.edge_status("pi-fab"), dumps({**real, "epoch": 2**62}))
        edge.publish(t.edge_status("pi-fab"), dumps({**real, "epoch": MAX_EPOCH}))
        wait_until(lambda: hub.live.edge_epoch("pi-fab") == MAX_EPOCH, what="forged epoch")
        assert hub.worker.drain()
    finally:
        hub.stop()

    # ...and survives the restart; the edge's real (retained) status is then stale.
    site = hub.settings.site
    second = start_hub(db_url, factory, mosquitto, site=site, gap_replay_after_s=0.2)
    try:
        assert second.live.edge_epoch("pi-fab") == MAX_EPOCH
        edge.publish(t.edge_status("pi-fab"), dumps(real), retain=True)
        # The hub asks the edge to prove its journal from its last acknowledged seq.
        edge.wait_for(lambda m: decode(JournalCommand, m.payload).replay_from == j.seq, timeout=10)
        assert second.live.edge_epoch("pi-fab") == MAX_EPOCH  # not before the proof
        edge.publish(t.evt("pi-fab"), dumps(events[-1]))  # what a real edge replays
        wait_until(lambda: second.live.edge_epoch("pi-fab") == 3, what="epoch reset")
        assert second.live.edges_online()["pi-fab"] is True
        assert not second.live.machines_offline() & {"laser-1", "printer-1"}
        assert second.worker.drain()
    finally:
        second.stop()
        edge.client.publish(t.edge_status("pi-fab"), b"", qos=1, retain=True).wait_for_publish(5)
        edge.stop()
    with factory() as s:
        cursor = s.get(EdgeCursor, "pi-fab")
    assert cursor is not None
    assert cursor.epoch == 3
    (alert,) = alerts(factory, "epoch_reset")
    assert str(MAX_EPOCH) in alert.detail

    third = start_hub(db_url, factory, mosquitto, site=site)
    try:
        assert third.live.edge_epoch("pi-fab") == 3  # the reset was persisted
    finally:
        third.stop()


# --------------------------------------------------------------------------- 5. duplicates


def test_a_qos1_duplicate_request_is_answered_once(mosquitto: Broker, store: Store) -> None:
    db_url, factory, ids = store
    hub = start_hub(db_url, factory, mosquitto)
    t = hub.topics
    edge = Probe(mosquitto.host, mosquitto.port, [t.cmd_access("pi-fab")]).start()
    req_id = uuid.uuid4().hex
    request = {
        "v": 1,
        "req_id": req_id,
        "edge": "pi-fab",
        "machine": "printer-1",
        "badge": ids.badge_alice,
        "ts": NOW.isoformat(),
    }
    try:
        edge.publish(t.req_access("pi-fab"), dumps(request))
        edge.publish(t.req_access("pi-fab"), dumps(request))
        wait_until(lambda: len(edge.on(t.cmd_access("pi-fab"))) == 2, what="two answers")
        assert hub.accesslog.flush()
    finally:
        edge.stop()
        hub.stop()
    first, second = edge.on(t.cmd_access("pi-fab"))
    assert first.payload == second.payload  # the same answer, one session id
    assert first.json()["granted"] is True
    assert hub.metrics.get("decisions") == 1
    assert hub.metrics.get("duplicate_requests") == 1
    with factory() as s:
        assert s.scalar(select(func.count()).where(AccessLog.req_id == req_id)) == 1
