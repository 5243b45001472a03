"""The hub's wait for command outcomes: only the addressed edge answers, once, bounded."""

from __future__ import annotations

import threading

from hub.commands import MAX_PENDING, CommandWaiters
from protocol.messages import CommandOutcome, Outcome, utcnow


def outcome(cmd_id: str, kind: Outcome = Outcome.APPLIED) -> CommandOutcome:
    return CommandOutcome(cmd_id=cmd_id, outcome=kind, ts=utcnow())


def test_the_addressed_edge_answers_and_the_waiter_wakes() -> None:
    waiters = CommandWaiters(wait_s=30)
    pending = waiters.expect("c1", "pi-a")
    got: list[CommandOutcome | None] = []
    thread = threading.Thread(target=lambda: got.append(pending.wait()))
    thread.start()
    assert not waiters.resolve("pi-b", outcome("c1"))  # another edge cannot answer it
    assert waiters.resolve("pi-a", outcome("c1", Outcome.REFUSED))
    thread.join(10)
    assert [o.outcome for o in got if o is not None] == [Outcome.REFUSED]
    assert not waiters.resolve("pi-a", outcome("c1"))  # answered once
    assert len(waiters) == 0


def test_an_answer_before_the_wait_is_kept_and_a_silent_edge_gives_none() -> None:
    waiters = CommandWaiters(wait_s=0.05)
    early = waiters.expect("c1", "pi-a")
    assert waiters.resolve("pi-a", outcome("c1"))
    result = early.wait()
    assert result is not None
    assert result.outcome is Outcome.APPLIED
    silent = waiters.expect("c2", "pi-a")
    assert silent.wait() is None
    assert not waiters.resolve("pi-a", outcome("c2"))  # too late: nobody waits
    assert len(waiters) == 0


def test_pending_commands_are_bounded() -> None:
    waiters = CommandWaiters()
    for n in range(MAX_PENDING + 10):
        waiters.expect(f"c{n}", "pi-a")
    assert len(waiters) == MAX_PENDING
    assert not waiters.resolve("pi-a", outcome("c0"))  # the oldest were dropped
    assert waiters.resolve("pi-a", outcome(f"c{MAX_PENDING + 9}"))
