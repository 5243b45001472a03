"""Token buckets and the badge enumeration guard, on a pinned clock (pure, no I/O)."""

from __future__ import annotations

from hub.live import LiveState
from hub.policy.model import Decision
from hub.throttle import EdgeThrottle, Rate, ReaderGuard
from tests.hub.hubkit import NOW


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    alerts: list[tuple[str, str]] = []
    throttle = EdgeThrottle(
        {"req": Rate(2.0, 5.0)},
        clock=clock,
        alert_interval_s=60.0,
        on_throttled=lambda e, k: alerts.append((e, k)),
    )
    assert [throttle.allow("e1", "req") for _ in range(7)] == [True] * 5 + [False] * 2
    assert throttle.allow("e2", "req")  # another edge has its own bucket
    assert throttle.allow("e1", "evt")  # a kind without a limit is never throttled
    clock.t += 1.0  # two tokens back
    assert [throttle.allow("e1", "req") for _ in range(3)] == [True, True, False]
    clock.t += 100.0  # refills up to the burst, never beyond
    assert sum(throttle.allow("e1", "req") for _ in range(20)) == 5
    # Alerted once per interval per edge, however often it overflows.
    assert alerts == [("e1", "req"), ("e1", "req")]
    assert throttle.throttled_edges() == 1


def test_made_up_edge_ids_share_one_overflow_bucket() -> None:
    throttle = EdgeThrottle({"tele": Rate(1.0, 3.0)}, max_edges=2, clock=Clock())
    assert throttle.allow("a", "tele")
    assert throttle.allow("b", "tele")
    results = [throttle.allow(f"ghost-{i}", "tele") for i in range(10)]
    assert results == [True] * 3 + [False] * 7
    assert throttle.tracked_edges() == 2


def test_a_reader_cools_down_after_too_many_unknown_badges() -> None:
    clock = Clock()
    guard = ReaderGuard(limit=3, window_s=10.0, cooldown_s=60.0, clock=clock)
    assert not guard.unknown_badge("laser-1")
    clock.t += 11.0  # outside the window: counting starts again
    assert [guard.unknown_badge("laser-1") for _ in range(3)] == [False, False, True]
    assert guard.cooling("laser-1")
    assert not guard.cooling("printer-1")
    assert guard.cooling_readers() == 1
    clock.t += 61.0
    assert not guard.cooling("laser-1")


def test_denials_are_remembered_for_a_bounded_number_of_badges() -> None:
    live = LiveState(max_denials=100)
    deny = Decision(granted=False, code="unknown_badge", message="non")
    for i in range(1000):
        live.record_decision(
            badge=f"{i:064x}",
            machine_id="laser-1",
            zone_id="",
            decision=deny,
            session_id=None,
            now=NOW,
        )
    assert len(live._denials) == 100
    assert live.view_for(f"{999:064x}", None, NOW).recent_denials == 1
    assert live.view_for(f"{0:064x}", None, NOW).recent_denials == 0  # forgotten first
