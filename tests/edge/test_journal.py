"""The edge journal: durable, ordered, acknowledged, pruned, honest about damage."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from edge.clock import FakeClock
from edge.journal import Journal, JournalCorrupt, JournalError
from protocol.messages import (
    EndReason,
    MachineFaultBody,
    SessionEnded,
    SessionEndedBody,
    SessionStarted,
    SessionStartedBody,
    UsageTickBody,
    decode_event,
    encode,
)

BADGE = "ab" * 32
EDGE = "pi-laser-1"


def fault(n: int) -> MachineFaultBody:
    return MachineFaultBody(machine="laser-1", code=f"alarm-{n}")


def started(clock: FakeClock, session: str = "s1") -> SessionStartedBody:
    return SessionStartedBody(
        session_id=session, machine="laser-1", badge=BADGE, started_at=clock.now()
    )


def tick(session: str, minute: int) -> UsageTickBody:
    return UsageTickBody(
        session_id=session, machine="laser-1", minute=minute, elapsed_s=60.0 * minute
    )


def ended(clock: FakeClock, session: str, duration: float) -> SessionEndedBody:
    return SessionEndedBody(
        session_id=session,
        machine="laser-1",
        reason=EndReason.BADGE_OUT,
        duration_s=duration,
        ended_at=clock.now(),
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


def test_events_carry_the_envelope_and_decode_back(db: Path, clock: FakeClock) -> None:
    with Journal(db, EDGE, clock) as journal:
        event = journal.append(started(clock))
        assert isinstance(event, SessionStarted)
        assert (event.edge, event.seq, event.ts) == (EDGE, 1, clock.now())
        assert len(event.event_id) == 32
        assert journal.unacked() == [event]
        assert decode_event(encode(event)) == event


def test_sequence_survives_reopen_and_event_ids_are_unique(db: Path, clock: FakeClock) -> None:
    with Journal(db, EDGE, clock) as journal:
        first = [journal.append(fault(i)) for i in range(3)]
    with Journal(db, EDGE, clock) as journal:
        later = journal.append(fault(3))
        assert journal.last_seq() == 4
    seqs = [e.seq for e in [*first, later]]
    assert seqs == [1, 2, 3, 4]
    assert len({e.event_id for e in [*first, later]}) == 4


def test_journal_files_are_private(db: Path, clock: FakeClock) -> None:
    old = os.umask(0o022)
    try:
        with Journal(db, EDGE, clock) as journal:
            journal.append(fault(1))
            files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
            assert [stat.S_IMODE(f.stat().st_mode) for f in files] == [0o600] * 3
    finally:
        os.umask(old)


def test_append_is_committed_before_it_returns(db: Path, clock: FakeClock) -> None:
    with Journal(db, EDGE, clock) as journal:
        event = journal.append(fault(1))
        # A second, independent connection (another process would see the same).
        other = sqlite3.connect(db)
        try:
            rows = other.execute("SELECT seq, event_id, type, payload FROM journal").fetchall()
            mode = other.execute("PRAGMA journal_mode").fetchone()[0]
        finally:
            other.close()
    assert rows == [(1, event.event_id, "machine_fault", encode(event).decode())]
    assert mode == "wal"


def test_append_many_is_one_ordered_all_or_nothing_commit(db: Path, clock: FakeClock) -> None:
    with Journal(db, EDGE, clock) as journal:
        events = journal.append_many([fault(1), started(clock), fault(2)])
        assert [e.seq for e in events] == [1, 2, 3]
        assert [e.type for e in events] == ["machine_fault", "session_started", "machine_fault"]
        other = sqlite3.connect(db)
        try:
            seqs = [r[0] for r in other.execute("SELECT seq FROM journal ORDER BY seq")]
        finally:
            other.close()
        assert seqs == [1, 2, 3]
        # A body the journal cannot take aborts the whole batch: nothing half-written.
        with pytest.raises(KeyError):
            journal.append_many([fault(3), object()])  # type: ignore[list-item]
        assert journal.last_seq() == 3
        assert [e.seq for e in journal.unacked()] == [1, 2, 3]


def test_ack_through_leaves_only_later_events_unacked(db: Path, clock: FakeClock) -> None:
    with Journal(db, EDGE, clock) as journal:
        events = [journal.append(fault(i)) for i in range(5)]
        assert [e.seq for e in journal.unacked(limit=3)] == [1, 2, 3]
        assert journal.ack_through(3) == 3
        assert journal.unacked() == events[3:]
        assert journal.pending() == 2
        assert journal.ack_through(3) == 0  # a duplicate ack changes nothing
    with Journal(db, EDGE, clock) as journal:  # acknowledgements are durable too
        assert [e.seq for e in journal.unacked()] == [4, 5]


def test_ack_beyond_the_last_seq_is_reported(
    db: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with Journal(db, EDGE, clock) as journal:
        journal.append(fault(1))
        assert journal.ack_through(40) == 1
    assert "never went beyond 1" in caplog.text


def test_replay_from_includes_acknowledged_events(db: Path, clock: FakeClock) -> None:
    with Journal(db, EDGE, clock) as journal:
        events = [journal.append(fault(i)) for i in range(5)]
        journal.ack_through(4)
        assert journal.replay_from(2) == events[1:]
        assert journal.replay_from(2, limit=2) == events[1:3]
        assert journal.replay_from(6) == []


def test_mark_sent_counts_publications(db: Path, clock: FakeClock) -> None:
    with Journal(db, EDGE, clock) as journal:
        journal.append(fault(1))
        journal.append(fault(2))
        journal.mark_sent([1, 2])
        journal.mark_sent([1])
    other = sqlite3.connect(db)
    try:
        counts = other.execute("SELECT seq, send_count FROM journal ORDER BY seq").fetchall()
    finally:
        other.close()
    assert counts == [(1, 2), (2, 1)]


def test_prune_deletes_old_acknowledged_events_only(db: Path, clock: FakeClock) -> None:
    with Journal(db, EDGE, clock) as journal:
        for i in range(3):
            journal.append(fault(i))
        clock.advance(timedelta(days=10).total_seconds())
        journal.append(fault(3))
        journal.append(fault(4))
        journal.ack_through(4)
        assert journal.prune(timedelta(days=7)) == 3
        assert [e.seq for e in journal.replay_from(1)] == [4, 5]
        assert journal.unacked()[0].seq == 5
        # Everything acknowledged and old: all rows go, the sequence does not restart.
        journal.ack_through(5)
        clock.advance(timedelta(days=8).total_seconds())
        assert journal.prune(timedelta(days=7)) == 2
        assert journal.replay_from(1) == []
    with Journal(db, EDGE, clock) as journal:
        assert journal.append(fault(5)).seq == 6


def test_prune_keeps_everything_when_the_wall_clock_is_in_the_past(
    db: Path, clock: FakeClock
) -> None:
    with Journal(db, EDGE, clock) as journal:
        journal.append(fault(1))
        journal.ack_through(1)
        clock.jump_wall(-timedelta(days=400).total_seconds())
        assert journal.prune(timedelta(days=7)) == 0
        assert len(journal.replay_from(1)) == 1


def test_prune_keeps_sessions_that_have_not_ended(db: Path, clock: FakeClock) -> None:
    with Journal(db, EDGE, clock) as journal:
        journal.append(started(clock, "open"))
        journal.append(tick("open", 1))
        journal.append(started(clock, "done"))
        journal.append(ended(clock, "done", 30.0))
        journal.ack_through(4)
        clock.advance(timedelta(days=31).total_seconds())
        assert journal.prune(timedelta(days=30)) == 2
        assert [s.session_id for s in journal.open_sessions()] == ["open"]
        journal.append(ended(clock, "open", 90.0))
        journal.ack_through(5)
        clock.advance(timedelta(days=31).total_seconds())
        assert journal.prune(timedelta(days=30)) == 3
        assert journal.open_sessions() == []


def test_open_sessions_after_a_crash_are_closed_as_edge_restart(db: Path, clock: FakeClock) -> None:
    """A real process dies (``os._exit``) without closing; the next one recovers."""
    code = textwrap.dedent(
        f"""
        import os, sys
        from datetime import UTC, datetime
        from edge.journal import Journal
        from protocol.messages import SessionStartedBody, UsageTickBody
        j = Journal(sys.argv[1], "{EDGE}")
        j.open()
        j.append(SessionStartedBody(session_id="s9", machine="laser-1", badge="{BADGE}",
                 started_at=datetime(2026, 3, 11, 14, 0, tzinfo=UTC)))
        for minute in (1, 2, 3):
            j.append(UsageTickBody(session_id="s9", machine="laser-1", minute=minute,
                     elapsed_s=60.0 * minute))
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", code, str(db)], check=True, timeout=60)
    with Journal(db, EDGE, clock) as journal:
        (session,) = journal.open_sessions()
        assert (session.session_id, session.last_minute, session.elapsed_s) == ("s9", 3, 180.0)
        (closing,) = journal.close_open_sessions()
        assert isinstance(closing, SessionEnded)
        assert closing.seq == 5
        assert closing.body.reason is EndReason.EDGE_RESTART
        assert closing.body.duration_s == 180.0
        assert closing.body.ended_at == session.started_at + timedelta(seconds=180)
        assert journal.open_sessions() == []


def test_a_session_without_ticks_closes_with_zero_duration(db: Path, clock: FakeClock) -> None:
    with Journal(db, EDGE, clock) as journal:
        journal.append(started(clock, "short"))
        (closing,) = journal.close_open_sessions()
        assert isinstance(closing, SessionEnded)
        assert closing.body.duration_s == 0.0


def test_epoch_increments_and_persists(db: Path, clock: FakeClock) -> None:
    with Journal(db, EDGE, clock) as journal:
        assert journal.epoch == 0
        assert journal.next_epoch() == 1
        assert journal.next_epoch() == 2
        assert journal.append(fault(1)).epoch == 2
    with Journal(db, EDGE, clock) as journal:
        assert journal.epoch == 2
        assert journal.next_epoch() == 3


def test_concurrent_appends_keep_seq_unique_and_ordered(db: Path, clock: FakeClock) -> None:
    per_thread, threads = 40, 4
    results: list[list[int]] = [[] for _ in range(threads)]
    with Journal(db, EDGE, clock) as journal:

        def work(slot: int) -> None:
            for i in range(per_thread):
                results[slot].append(journal.append(fault(slot * 1000 + i)).seq)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
        stored = journal.unacked(limit=1000)
    all_seqs = sorted(s for r in results for s in r)
    assert all_seqs == list(range(1, per_thread * threads + 1))
    for r in results:  # each thread saw its own appends in increasing order
        assert r == sorted(r)
    assert [e.seq for e in stored] == all_seqs
    by_code = {e.body.code: e.seq for e in stored if isinstance(e.body, MachineFaultBody)}
    for slot, r in enumerate(results):
        assert [by_code[f"alarm-{slot * 1000 + i}"] for i in range(per_thread)] == r


def test_a_file_that_is_not_a_database_is_reported(db: Path, clock: FakeClock) -> None:
    db.write_bytes(b"this is not SQLite at all, just some garbage " * 200)
    with pytest.raises(JournalCorrupt, match="not a readable database"):
        Journal(db, EDGE, clock).open()


def test_a_corrupted_row_is_reported_not_dropped(db: Path, clock: FakeClock) -> None:
    with Journal(db, EDGE, clock) as journal:
        journal.append(fault(1))
        journal.append(fault(2))
        other = sqlite3.connect(db)
        try:
            other.execute('UPDATE journal SET payload = \'{"v": 1, "seq"\' WHERE seq = 2')
            other.commit()
        finally:
            other.close()
        assert journal.unacked(limit=1)[0].seq == 1
        with pytest.raises(JournalCorrupt, match="row 2") as info:
            journal.unacked()
        assert info.value.seq == 2
        with pytest.raises(JournalCorrupt):
            journal.replay_from(1)


def test_a_row_of_another_edge_is_reported(db: Path, clock: FakeClock) -> None:
    with Journal(db, "pi-other", clock) as journal:
        journal.append(fault(1))
    with Journal(db, EDGE, clock) as journal, pytest.raises(JournalCorrupt, match="pi-other"):
        journal.unacked()


def test_a_closed_journal_refuses_work(db: Path, clock: FakeClock) -> None:
    journal = Journal(db, EDGE, clock)
    with pytest.raises(JournalError, match="not open"):
        journal.append(fault(1))
    journal.open()
    journal.close()
    with pytest.raises(JournalError, match="not open"):
        journal.unacked()


def test_invalid_edge_id_is_refused(db: Path) -> None:
    with pytest.raises(ValueError, match="invalid edge id"):
        Journal(db, "Pi/1")


def test_badge_usage_after_the_policy_mark_counts_what_the_snapshot_cannot_know(
    db: Path, clock: FakeClock
) -> None:
    other = "cd" * 32
    with Journal(db, EDGE, clock) as journal:
        journal.append(started(clock, "before"))
        journal.append(ended(clock, "before", 600.0))
        assert journal.policy_mark() is None
        mark = journal.remember_policy()
        assert mark == 2
        journal.append(started(clock, "s1"))
        journal.append(ended(clock, "s1", 1200.0))
        journal.append(
            SessionStartedBody(
                session_id="s2", machine="laser-1", badge=other, started_at=clock.now()
            )
        )
        journal.append(ended(clock, "s2", 999.0))  # another badge
        journal.append(started(clock, "open"))
        journal.append(tick("open", 2))
        # only s1 (1200 s) and the open session to its last tick (120 s); not "before"
        assert journal.badge_usage_after(mark, BADGE, {"laser-1"}) == 1320.0
        assert journal.badge_usage_after(mark, BADGE, {"laser-2"}) == 0.0
        assert journal.badge_usage_after(mark, other, {"laser-1"}) == 999.0
    with Journal(db, EDGE, clock) as journal:
        assert journal.policy_mark() == mark  # survives a restart
