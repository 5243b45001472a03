"""The usage ledger on SQLite and PostgreSQL: exactly-once over at-least-once delivery."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hub.db.models import (
    AccessLog,
    Alert,
    EdgeCursor,
    EdgeEvent,
    Machine,
    MachineJob,
    UsageSession,
)
from hub.ledger import Applied, Ledger
from hub.ledger_worker import LedgerWorker
from hub.live import LiveState
from hub.metrics import Metrics
from hub.policy.model import PolicyConfig
from hub.reports import usage_seconds
from protocol.messages import EdgeStatus, JournalCommand, decode_event
from tests.hub.hubkit import NOW, Journal, Seed, dumps, migrated, seed, wait_until


@pytest.fixture
def store(db_url: str) -> Iterator[tuple[sessionmaker[Session], Seed]]:
    factory = migrated(db_url)
    ids = seed(factory)
    yield factory, ids
    factory.kw["bind"].dispose()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def ledger(store: tuple[sessionmaker[Session], Seed], metrics: Metrics) -> Ledger:
    return Ledger(store[0], PolicyConfig(), metrics)


def ev(raw: dict[str, Any]) -> Any:
    """Decode a journal event exactly as the hub does when it comes off the wire."""
    return decode_event(dumps(raw))


def state(factory: sessionmaker[Session]) -> dict[str, Any]:
    """Everything the ledger writes, in a comparable form."""
    with factory() as s:
        sessions = sorted(
            (
                r.id,
                r.member_id,
                r.badge_hash,
                r.machine_id,
                r.zone_id,
                r.age_group,
                r.machine_kind,
                r.offline,
                r.started_at,
                r.ended_at,
                r.end_reason,
                r.used_s,
                r.last_minute,
                r.run_s,
            )
            for r in s.scalars(select(UsageSession))
        )
        jobs = sorted(
            (
                j.edge_id,
                j.seq,
                j.machine_id,
                j.zone_id,
                j.session_id,
                j.member_id,
                j.age_group,
                j.job,
                j.result,
                j.duration_s,
                j.filament_mm,
                j.ended_at,
            )
            for j in s.scalars(select(MachineJob))
        )
        cursors = sorted(
            (c.edge_id, c.contiguous_through, c.max_seen) for c in s.scalars(select(EdgeCursor))
        )
        events = s.scalar(select(func.count()).select_from(EdgeEvent))
        logs = s.scalar(select(func.count()).select_from(AccessLog))
        alerts = s.scalar(select(func.count()).select_from(Alert))
    return {
        "sessions": sessions,
        "jobs": jobs,
        "cursors": cursors,
        "events": events,
        "logs": logs,
        "alerts": alerts,
    }


def test_session_is_recorded_with_frozen_dimensions(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, ids = store
    journal = Journal("pi-fab")
    events = journal.session("s-1", "laser-1", ids.badge_alice, NOW, 185.5)
    results = [ledger.apply(ev(e)) for e in events]

    assert [r.duplicate for r in results] == [False] * len(events)
    assert results[-1].ack_through == len(events) == journal.seq
    with factory() as s:
        row = s.get(UsageSession, "s-1")
        assert row is not None
        assert row.member_id == ids.alice
        assert row.age_group == "16-25"
        assert row.machine_kind == "laser"
        assert row.zone_id == "fablab"
        assert row.started_at == NOW
        assert row.ended_at == NOW + timedelta(seconds=185.5)
        assert row.end_reason == "badge_out"
        assert row.used_s == 185.5
        assert row.last_minute == 3
        assert row.staff is False


def test_every_event_twice_changes_nothing(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, ids = store
    journal = Journal("pi-fab")
    events = journal.session("s-1", "printer-1", ids.badge_alice, NOW, 130)
    events.append(journal.job("s-1", "printer-1", NOW + timedelta(seconds=90), 80, filament_mm=9))
    events += journal.session(
        "s-2", "laser-1", ids.badge_sam, NOW + timedelta(hours=1), 61, run_s=42.0
    )
    events.append(journal.job(None, "printer-1", NOW + timedelta(hours=2), 600))
    first = [ledger.apply(ev(e)) for e in events]
    after_once = state(factory)
    again = [ledger.apply(ev(e)) for e in events]

    assert not any(r.duplicate for r in first)
    assert all(r.duplicate for r in again)
    assert {r.ack_through for r in again} == {len(events)}
    assert state(factory) == after_once
    assert after_once["events"] == len(events)
    assert len(after_once["jobs"]) == 2
    with factory() as s:
        assert s.scalar(select(func.sum(MachineJob.filament_mm))) == 9


def test_out_of_order_with_duplicates_matches_ground_truth(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    """Sessions of two members on three machines, delivered shuffled with repeats."""
    factory, ids = store
    rng = random.Random(20260311)
    truth_member: dict[int, float] = {}
    truth_machine: dict[str, float] = {}
    truth_filament: dict[int, float] = {}
    journals = {"pi-fab": Journal("pi-fab"), "pi-game": Journal("pi-game")}
    events: list[dict[str, Any]] = []
    start = NOW
    for n in range(12):
        member, badge = rng.choice([(ids.alice, ids.badge_alice), (ids.bob, ids.badge_bob)])
        machine, edge = rng.choice(
            [("laser-1", "pi-fab"), ("printer-1", "pi-fab"), ("pc-1", "pi-game")]
        )
        duration = round(rng.uniform(5, 400), 3)
        events += journals[edge].session(f"s-{n}", machine, badge, start, duration)
        truth_member[member] = truth_member.get(member, 0.0) + duration
        truth_machine[machine] = truth_machine.get(machine, 0.0) + duration
        if machine == "printer-1":
            # The print outlives the session it started in; its event comes after the end.
            filament = round(rng.uniform(100, 5000), 1)
            events.append(
                journals[edge].job(
                    f"s-{n}", machine, start + timedelta(hours=1), 3000, filament_mm=filament
                )
            )
            truth_filament[member] = truth_filament.get(member, 0.0) + filament
        start += timedelta(minutes=10)
    delivered = events + rng.sample(events, len(events) // 2)
    rng.shuffle(delivered)

    for e in delivered:
        ledger.apply(ev(e))

    window = {"since": NOW, "until": NOW + timedelta(days=1)}
    with factory() as s:
        by_member = usage_seconds(s, by="member", **window)
        by_machine = usage_seconds(s, by="machine", **window)
    assert by_member == pytest.approx(truth_member, abs=1e-6)
    assert by_machine == pytest.approx(truth_machine, abs=1e-6)
    assert set(by_member) == set(truth_member)
    cursors = dict((e, (c, m)) for e, c, m in state(factory)["cursors"])
    for edge, journal in journals.items():
        if journal.seq:
            assert cursors[edge] == (journal.seq, journal.seq)
    # Every session is complete: no placeholder is left behind.
    with factory() as s:
        assert s.scalar(select(func.count()).where(UsageSession.badge_hash.is_(None))) == 0
        assert s.scalar(select(func.count()).where(UsageSession.ended_at.is_(None))) == 0
        # Each job is counted once and attributed to its session's member, whichever
        # of the job and the session's start arrived first.
        filament = s.execute(
            select(MachineJob.member_id, func.sum(MachineJob.filament_mm)).group_by(
                MachineJob.member_id
            )
        ).all()
        mismatched = s.scalar(
            select(func.count())
            .select_from(MachineJob)
            .join(UsageSession, UsageSession.id == MachineJob.session_id)
            .where(
                (MachineJob.member_id != UsageSession.member_id)
                | (MachineJob.age_group != UsageSession.age_group)
            )
        )
    assert dict(filament) == pytest.approx(truth_filament, abs=1e-6)
    assert mismatched == 0


def test_batches_give_the_same_ledger_as_one_by_one(db_url: str, tmp_path: Any) -> None:
    """apply_many (one transaction per batch) must equal applying events one by one,
    with duplicates inside a batch, shuffled order, and a conflicting event."""
    rng = random.Random(7)
    results = []
    for mode in ("single", "batched"):
        url = db_url if mode == "batched" else f"sqlite:///{tmp_path / 'single.db'}"
        if mode == "batched" and db_url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path / 'batched.db'}"
        factory = migrated(url)
        ids = seed(factory)
        journal = Journal("pi-fab")
        events: list[dict[str, Any]] = []
        start = NOW
        for n in range(15):
            events += journal.session(f"b-{n}", "laser-1", ids.badge_alice, start, 61.5 + n)
            if n % 3 == 0:  # some jobs, shuffled with the rest (some before their start)
                events.append(journal.job(f"b-{n}", "printer-1", start, 30.0, filament_mm=n))
            start += timedelta(minutes=5)
        delivered = events + rng.sample(events, len(events) // 3)
        random.Random(11).shuffle(delivered)
        led = Ledger(factory, PolicyConfig())
        decoded = [ev(e) for e in delivered]
        if mode == "single":
            for e in decoded:
                led.apply(e)
        else:
            for i in range(0, len(decoded), 16):
                applied = led.apply_many(decoded[i : i + 16])
                assert [a.seq for a in applied] == [e.seq for e in decoded[i : i + 16]]
            # A batch holding an event that reuses another event's id: that one is
            # refused (and raises an alert), the rest of the batch is applied.
            clash = dict(events[0], seq=journal.seq + 1)  # reuses event 0's event_id
            extra = journal.session("b-extra", "laser-1", ids.badge_alice, start, 30.0)
            applied = led.apply_many([ev(clash), *(ev(e) for e in extra)])
            assert applied[0].duplicate
        snapshot = state(factory)
        with factory() as s:
            totals = usage_seconds(s, by="machine", since=NOW, until=NOW + timedelta(days=1))
        results.append((snapshot["sessions"], totals, snapshot["jobs"]))
        factory.kw["bind"].dispose()
    single, batched = results
    assert batched[1]["laser-1"] == pytest.approx(single[1]["laser-1"] + 30.0)
    assert [r for r in batched[0] if r[0] != "b-extra"] == single[0]
    assert batched[2] == single[2]
    assert [(j[4], j[5], j[6]) for j in single[2]] == [
        (f"b-{n}", ids.alice, "16-25") for n in (0, 3, 6, 9, 12)
    ]


def test_end_and_tick_before_start_complete_a_placeholder(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, ids = store
    start, tick, end = Journal("pi-game").session("s-9", "pc-1", ids.badge_bob, NOW, 75.0)

    r_end = ledger.apply(ev(end))
    assert r_end.gap
    assert r_end.ack_through == 0
    assert r_end.max_seen == 3
    with factory() as s:
        row = s.get(UsageSession, "s-9")
        assert row is not None
        assert row.badge_hash is None
        assert row.member_id is None
        assert row.ended_at == NOW + timedelta(seconds=75)
        assert row.used_s == 75.0
    ledger.apply(ev(tick))
    r_start = ledger.apply(ev(start))

    assert r_start.ack_through == 3
    assert not r_start.gap
    with factory() as s:
        row = s.get(UsageSession, "s-9")
        assert row is not None
        assert row.member_id == ids.bob
        assert row.badge_hash == ids.badge_bob
        assert row.age_group == "9-15"
        assert row.zone_id == "gaming"
        assert row.started_at == NOW
        assert row.ended_at == NOW + timedelta(seconds=75)
        assert row.end_reason == "badge_out"
        assert row.used_s == 75.0
        assert row.last_minute == 1


def test_run_time_is_kept_from_the_session_end(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, ids = store
    j = Journal("pi-fab")
    *start, end = j.session("s-1", "laser-1", ids.badge_alice, NOW, 300.0, run_s=125.5)
    for e in [*start, end]:
        ledger.apply(ev(e))
    # A second end with a smaller measure (a restart re-reporting) never lowers it.
    again = j.event("session_ended", {**end["body"], "run_s": 60.0})
    ledger.apply(ev(again))
    for e in j.session("s-2", "printer-1", ids.badge_alice, NOW, 90.0):
        ledger.apply(ev(e))

    with factory() as s:
        laser = s.get(UsageSession, "s-1")
        printer = s.get(UsageSession, "s-2")
        assert laser is not None
        assert printer is not None
        assert laser.run_s == 125.5
        assert laser.used_s == 300.0
        assert printer.run_s is None  # nothing measured it


def test_job_is_attributed_to_the_session_it_started_in(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, ids = store
    j = Journal("pi-fab")
    for e in j.session("s-1", "printer-1", ids.badge_alice, NOW, 120.0):
        ledger.apply(ev(e))
    done = j.job(
        "s-1",
        "printer-1",
        NOW + timedelta(hours=3),
        10800.0,
        name="support-casque.gcode",
        filament_mm=12345.6,
    )
    orphan = j.job(None, "printer-1", NOW + timedelta(hours=4), 60.0, result="cancelled")
    for e in (done, orphan, done):
        ledger.apply(ev(e))

    with factory() as s:
        jobs = s.scalars(select(MachineJob).order_by(MachineJob.seq)).all()
        assert [
            (
                j.edge_id,
                j.seq,
                j.session_id,
                j.member_id,
                j.age_group,
                j.zone_id,
                j.job,
                j.result,
                j.duration_s,
                j.filament_mm,
                j.ended_at,
            )
            for j in jobs
        ] == [
            (
                "pi-fab",
                done["seq"],
                "s-1",
                ids.alice,
                "16-25",
                "fablab",
                "support-casque.gcode",
                "done",
                10800.0,
                12345.6,
                NOW + timedelta(hours=3),
            ),
            (
                "pi-fab",
                orphan["seq"],
                None,
                None,
                "",
                "fablab",
                "piece.gcode",
                "cancelled",
                60.0,
                None,
                NOW + timedelta(hours=4),
            ),
        ]
        # A job makes no session of its own.
        assert s.scalar(select(func.count()).select_from(UsageSession)) == 1


@pytest.mark.parametrize("order", ["job-first", "job-after-placeholder"])
def test_job_before_its_session_start_is_attributed_when_the_start_arrives(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger, order: str
) -> None:
    factory, ids = store
    j = Journal("pi-game")
    start, tick, end = j.session("s-9", "pc-1", ids.badge_bob, NOW, 75.0)
    job = j.job("s-9", "pc-1", NOW + timedelta(minutes=30), 1500.0, filament_mm=80.0)
    delivered = [job, end, tick, start] if order == "job-first" else [end, job, tick, start]

    ledger.apply(ev(delivered[0]))
    ledger.apply(ev(delivered[1]))
    with factory() as s:
        early = s.scalars(select(MachineJob)).one()
        assert (early.member_id, early.age_group) == (None, "")
        assert early.zone_id == "gaming"
    for e in delivered[2:]:
        ledger.apply(ev(e))

    with factory() as s:
        row = s.scalars(select(MachineJob)).one()
        assert (row.session_id, row.member_id, row.age_group) == ("s-9", ids.bob, "9-15")
        assert row.zone_id == "gaming"
        assert s.scalar(select(func.count()).select_from(UsageSession)) == 1
    assert ledger.cursor("pi-game") == (4, 4)


def test_cursor_advances_only_over_contiguous_seqs(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    _factory, ids = store
    events = Journal("pi-fab").session("s-1", "printer-1", ids.badge_alice, NOW, 250)
    assert len(events) == 6
    applied: list[Applied] = [ledger.apply(ev(events[i])) for i in (0, 2, 3, 5)]
    assert [(a.ack_through, a.max_seen) for a in applied] == [(1, 1), (1, 3), (1, 4), (1, 6)]
    assert ledger.apply(ev(events[1])).ack_through == 4
    final = ledger.apply(ev(events[4]))
    assert (final.ack_through, final.max_seen, final.gap) == (6, 6, False)
    assert ledger.cursor("pi-fab") == (6, 6)
    assert ledger.open_gaps() == {}


def test_offline_decision_and_fault_are_recorded_once(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, ids = store
    j = Journal("pi-fab")
    decision = j.event(
        "offline_decision",
        {
            "req_id": "r-1",
            "machine": "laser-1",
            "badge": ids.badge_sam,
            "granted": True,
            "code": "granted_staff",
            "session_id": "s-off",
            "snapshot_version": 7,
        },
    )
    fault = j.event("machine_fault", {"machine": "laser-1", "code": "alarm", "detail": "ALARM:1"})
    for raw in (decision, fault, decision, fault):
        ledger.apply(ev(raw))

    with factory() as s:
        logs = s.scalars(select(AccessLog)).all()
        alerts = s.scalars(select(Alert)).all()
    assert [(log.member_id, log.offline, log.granted, log.session_id) for log in logs] == [
        (ids.sam, True, True, "s-off")
    ]
    assert [(a.kind, a.machine_id, a.detail) for a in alerts] == [
        ("machine_fault", "laser-1", "alarm: ALARM:1")
    ]


def test_conflicting_event_ids_raise_one_alert_and_apply_nothing(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, ids = store
    j = Journal("pi-fab")
    original = j.session("s-1", "printer-1", ids.badge_alice, NOW, 30)[0]
    ledger.apply(ev(original))
    before = state(factory)
    clone = {**original, "event_id": "another-id"}  # same seq, other event: cloned SD card
    moved = {**original, "seq": 2}  # same event id under another seq

    assert ledger.apply(ev(clone)).duplicate
    assert ledger.apply(ev(moved)).duplicate
    after = state(factory)
    assert after["alerts"] == 1
    assert {k: v for k, v in after.items() if k != "alerts"} == {
        k: v for k, v in before.items() if k != "alerts"
    }


def test_totals_count_sessions_started_in_the_window(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, ids = store
    j = Journal("pi-fab")
    day = timedelta(days=1)
    for n, (when, duration) in enumerate([(NOW - day, 100.0), (NOW, 42.5), (NOW + day, 7.0)]):
        for e in j.session(f"s-{n}", "printer-1", ids.badge_alice, when, duration):
            ledger.apply(ev(e))

    with factory() as s:
        today = usage_seconds(s, since=NOW, until=NOW + day, by="member")
        all_days = usage_seconds(s, since=NOW - day, until=NOW + 2 * day, by="machine")
        nothing = usage_seconds(s, since=NOW + 5 * day, until=NOW + 6 * day, by="member")
    assert today == {ids.alice: 42.5}
    assert all_days == {"printer-1": 149.5}
    assert nothing == {}


def test_edge_status_follows_the_epoch_rule(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, _ids = store
    assert ledger.alerts.record_status("pi-fab", EdgeStatus(online=True, epoch=5, version="1.2"))
    assert not ledger.alerts.record_status("pi-fab", EdgeStatus(online=False, epoch=4))
    with factory() as s:
        c = s.get(EdgeCursor, "pi-fab")
        assert c is not None
        assert (c.online, c.epoch, c.version) == (True, 5, "1.2")
    assert ledger.alerts.record_status("pi-fab", EdgeStatus(online=False, epoch=5))
    with factory() as s:
        c = s.get(EdgeCursor, "pi-fab")
        assert c is not None
        assert (c.online, c.epoch) == (False, 5)


# --------------------------------------------------------------------------- the worker


class Recorder:
    """Collects the worker's journal commands, checking each ack against the store."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self.commands: list[tuple[float, str, JournalCommand]] = []
        self.violations: list[str] = []
        self.cond = threading.Condition()

    def __call__(self, edge: str, command: JournalCommand) -> None:
        if command.ack_through:
            # The ack must only ever cover committed events: look from another session.
            with self.factory() as s:
                stored = s.scalar(
                    select(func.count()).where(
                        EdgeEvent.edge_id == edge, EdgeEvent.seq <= command.ack_through
                    )
                )
            if stored != command.ack_through:
                self.violations.append(f"ack {command.ack_through} with {stored} stored")
        with self.cond:
            self.commands.append((time.monotonic(), edge, command))
            self.cond.notify_all()

    def wait(self, pred: Any, timeout: float = 5.0) -> tuple[float, str, JournalCommand]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for c in self.commands:
                    if pred(c[2]):
                        return c
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such command; got {self.commands}")
                self.cond.wait(left)


def test_worker_acks_after_commit_and_requests_replay_of_old_gaps(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, ids = store
    recorder = Recorder(factory)
    live = LiveState()
    delay = 0.4
    worker = LedgerWorker(
        ledger, recorder, live=live, ack_interval_s=0.05, gap_replay_after_s=delay
    )
    worker.start()
    try:
        events = [
            ev(e) for e in Journal("pi-fab").session("s-1", "laser-1", ids.badge_alice, NOW, 125)
        ]
        worker.submit(events[0])
        recorder.wait(lambda c: c.ack_through == 1)
        assert live.open_sessions()["laser-1"].session_id == "s-1"

        gap_opened = time.monotonic()
        worker.submit(events[2])  # seq 3: seq 2 is missing
        t_replay, _, replay = recorder.wait(lambda c: c.replay_from is not None, timeout=5)
        assert replay.replay_from == 2
        assert t_replay - gap_opened >= delay * 0.9
        # Re-armed, not spammed: the next request comes a whole delay later.
        t_again, _, _ = recorder.wait(
            lambda c: c.replay_from is not None and c is not replay, timeout=5
        )
        assert t_again - t_replay >= delay * 0.9

        for e in (events[1], events[3], events[1]):  # the replay, the rest, a duplicate
            worker.submit(e)
        recorder.wait(lambda c: c.ack_through == 4)
        assert worker.drain()
        wait_until(lambda: "laser-1" not in live.open_sessions(), what="session closed in live")
        replays = sum(1 for _, _, c in recorder.commands if c.replay_from is not None)
        time.sleep(delay * 2)  # proving an absence: no replay once the gap is closed
        assert sum(1 for _, _, c in recorder.commands if c.replay_from is not None) == replays
        assert recorder.violations == []
        sessions = live.member_sessions()[ids.alice]
        assert [(v.session_id, v.used_s) for v in sessions] == [("s-1", 125.0)]
    finally:
        worker.stop()


def test_worker_reacks_duplicates_and_persists_status(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, ids = store
    recorder = Recorder(factory)
    worker = LedgerWorker(ledger, recorder, ack_interval_s=0.05, gap_replay_after_s=5)
    worker.start()
    try:
        first = ev(Journal("pi-fab").session("s-1", "printer-1", ids.badge_alice, NOW, 10)[0])
        worker.submit(first)
        recorder.wait(lambda c: c.ack_through == 1)
        count = len(recorder.commands)
        worker.submit(first)  # the edge missed our ack and resent: ack again
        deadline = time.monotonic() + 5
        while len(recorder.commands) == count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert recorder.commands[-1][2].ack_through == 1

        worker.submit_status("pi-fab", EdgeStatus(online=True, epoch=3), NOW)
        assert worker.drain()
        with factory() as s:
            c = s.get(EdgeCursor, "pi-fab")
            assert c is not None
            assert (c.online, c.epoch) == (True, 3)
    finally:
        worker.stop()


# --------------------------------------------------------------------------- foreign machines


def open_alerts(factory: sessionmaker[Session], kind: str) -> list[Alert]:
    with factory() as s:
        return list(
            s.scalars(
                select(Alert)
                .where(Alert.kind == kind, Alert.resolved_at.is_(None))
                .order_by(Alert.id)
            )
        )


def test_events_about_machines_not_the_edges_are_stored_acked_and_not_applied(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger, metrics: Metrics
) -> None:
    factory, ids = store
    j = Journal("pi-fab")
    foreign = [  # pc-1 belongs to pi-game; ghost-1 is in no machine table
        *j.session("s-pc", "pc-1", ids.badge_bob, NOW, 125),
        j.job(None, "pc-1", NOW, 60),
        j.event("machine_fault", {"machine": "pc-1", "code": "alarm"}),
        j.event(
            "offline_decision",
            {
                "req_id": "r-1",
                "machine": "pc-1",
                "badge": ids.badge_bob,
                "granted": True,
                "code": "granted",
                "session_id": "s-off",
            },
        ),
        *j.session("s-ghost", "ghost-1", ids.badge_alice, NOW, 61),
    ]
    own = j.session("s-own", "printer-1", ids.badge_alice, NOW, 30)
    results = [ledger.apply(ev(e)) for e in foreign + own]

    assert [r.foreign for r in results] == [True] * len(foreign) + [False] * len(own)
    assert results[-1].ack_through == j.seq  # never a stuck journal
    assert all(r.session is None for r in results[: len(foreign)])
    after = state(factory)
    assert [row[0] for row in after["sessions"]] == ["s-own"]
    assert (after["events"], after["jobs"], after["logs"]) == (j.seq, [], 0)
    alerts = open_alerts(factory, "foreign_machine")
    assert [(a.edge_id, a.machine_id) for a in alerts] == [("pi-fab", "pc-1")]  # one per edge
    assert "belongs to edge pi-game" in alerts[0].detail
    assert "stored but not applied" in alerts[0].detail
    assert open_alerts(factory, "machine_fault") == []
    assert metrics.get("foreign_machine", "event") == len(foreign)
    assert metrics.get("alerts", "foreign_machine") == 1

    again = [ledger.apply(ev(e)) for e in foreign]  # replays: duplicates, nothing more
    assert all(r.duplicate and not r.foreign for r in again)
    assert metrics.get("foreign_machine", "event") == len(foreign)

    with factory() as s:  # staff handled it; the edge is still misconfigured
        s.get(Alert, alerts[0].id).resolved_at = NOW  # type: ignore[union-attr]
        s.commit()
    ledger.apply(ev(j.session("s-ghost-2", "ghost-1", ids.badge_alice, NOW, 5)[0]))
    (reopened,) = open_alerts(factory, "foreign_machine")
    assert reopened.machine_id == "ghost-1"
    assert "machine ghost-1, which this site does not know" in reopened.detail


def test_an_edge_cannot_touch_another_edges_session(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, ids = store
    start, tick, _end = Journal("pi-game").session("s-g", "pc-1", ids.badge_bob, NOW, 70)
    ledger.apply(ev(start))
    rogue = Journal("pi-fab")
    forged = rogue.event(  # names its own laser, but another edge's session
        "session_ended",
        {
            "session_id": "s-g",
            "machine": "laser-1",
            "reason": "badge_out",
            "duration_s": 1.0,
            "ended_at": NOW.isoformat(),
        },
    )
    assert ledger.apply(ev(forged)).foreign
    with factory() as s:
        row = s.get(UsageSession, "s-g")
        assert row is not None
        assert (row.ended_at, row.edge_id) == (None, "pi-game")
    (alert,) = open_alerts(factory, "foreign_machine")
    assert "session s-g of edge pi-game" in alert.detail
    assert not ledger.apply(ev(tick)).foreign  # the owner's own events still apply


def test_a_session_continues_when_its_machine_moves_to_another_edge(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, ids = store
    start, tick, end = Journal("pi-fab").session("s-1", "printer-1", ids.badge_alice, NOW, 90)
    ledger.apply(ev(start))
    with factory() as s:  # an admin moves the printer to a new edge mid-session
        s.get(Machine, "printer-1").edge_id = "pi-new"  # type: ignore[union-attr]
        s.commit()
    assert not any(ledger.apply(ev(e)).foreign for e in (tick, end))
    with factory() as s:
        row = s.get(UsageSession, "s-1")
        assert row is not None
        assert (row.used_s, row.end_reason) == (90.0, "badge_out")
    assert open_alerts(factory, "foreign_machine") == []


def test_worker_raises_the_alert_of_a_foreign_access_request(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger
) -> None:
    factory, _ids = store
    worker = LedgerWorker(ledger, Recorder(factory), ack_interval_s=0.05)
    worker.start()
    try:
        for _ in range(3):
            worker.submit_foreign_request(
                "pi-fab", "pc-1", "machine pc-1, which belongs to pi-game"
            )
        assert worker.drain()
    finally:
        worker.stop()
    (alert,) = open_alerts(factory, "foreign_machine")
    assert (alert.edge_id, alert.machine_id) == ("pi-fab", "pc-1")
    assert alert.detail.startswith("edge pi-fab: access request for machine pc-1")


# --------------------------------------------------------------------------- edge offline


def status(online: bool, epoch: int, at_s: float, *, goodbye: bool = False) -> EdgeStatus:
    """A status as an edge sends it, stamped ``at_s`` seconds after NOW by its own clock."""
    return EdgeStatus(online=online, epoch=epoch, ts=NOW + timedelta(seconds=at_s), goodbye=goodbye)


def test_edge_offline_opens_one_alert_resolved_by_a_newer_connection(
    store: tuple[sessionmaker[Session], Seed], ledger: Ledger, metrics: Metrics
) -> None:
    factory, _ids = store
    at = NOW + timedelta(hours=1)

    assert ledger.alerts.record_status("pi-fab", status(True, 5, 10), NOW)
    assert open_alerts(factory, "edge_offline") == []
    # The last will (no goodbye).
    assert ledger.alerts.record_status("pi-fab", status(False, 5, 9), at)
    (alert,) = open_alerts(factory, "edge_offline")
    assert (alert.edge_id, alert.ts, alert.machine_id) == ("pi-fab", at, None)
    assert "connection lost (last will)" in alert.detail
    assert "epoch 5" in alert.detail
    assert "machines: laser-1, printer-1" in alert.detail
    # The same retained status again (hub restart), a late will of an older connection.
    assert ledger.alerts.record_status("pi-fab", status(False, 5, 9), at)
    assert not ledger.alerts.record_status("pi-fab", status(False, 4, 0), at)
    assert len(open_alerts(factory, "edge_offline")) == 1

    back = at + timedelta(minutes=3)
    assert ledger.alerts.record_status("pi-fab", status(True, 6, 400), back)
    assert open_alerts(factory, "edge_offline") == []
    with factory() as s:
        resolved = s.get(Alert, alert.id)
        assert resolved is not None
        assert resolved.resolved_at == back

    # A clean stop: the edge says goodbye itself.
    assert ledger.alerts.record_status("pi-fab", status(False, 6, 500, goodbye=True), back)
    (planned,) = open_alerts(factory, "edge_offline")
    assert "planned stop (the edge said goodbye)" in planned.detail
    assert metrics.get("edges_offline", "last_will") == 1
    assert metrics.get("edges_offline", "goodbye") == 1
    assert metrics.get("alerts", "edge_offline") == 2


def test_edge_offline_alert_respects_staff_and_restarts(
    store: tuple[sessionmaker[Session], Seed],
) -> None:
    factory, _ids = store
    ledger = Ledger(factory, PolicyConfig())
    assert ledger.alerts.record_status("pi-game", status(True, 2, 10))
    restarted = Ledger(factory, PolicyConfig())  # the hub restarted meanwhile
    assert restarted.alerts.record_status("pi-game", status(False, 2, 20))
    (alert,) = open_alerts(factory, "edge_offline")
    assert "connection lost (last will)" in alert.detail
    with factory() as s:  # staff: "that PC is off for the holidays"
        s.get(Alert, alert.id).resolved_at = NOW  # type: ignore[union-attr]
        s.commit()
    again = Ledger(factory, PolicyConfig())  # restarted again, the retained will re-read
    assert again.alerts.record_status("pi-game", status(False, 2, 20))
    assert open_alerts(factory, "edge_offline") == []

    # An edge with no machine on the floor raises nothing.
    assert ledger.alerts.record_status("pi-spare", status(True, 1, 0))
    assert ledger.alerts.record_status("pi-spare", status(False, 1, 1))
    assert open_alerts(factory, "edge_offline") == []
