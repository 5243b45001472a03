"""The memory of answered requests is bounded in size and in time."""

from __future__ import annotations

from hub.answered import AnsweredRequests
from protocol.messages import AccessDecision
from tests.hub.hubkit import NOW


def answer(req_id: str) -> AccessDecision:
    return AccessDecision(
        req_id=req_id, machine="m", granted=False, code="x", message="", not_after=NOW
    )


def test_answers_expire_and_the_oldest_are_forgotten_first() -> None:
    now = [0.0]
    answered = AnsweredRequests(ttl_s=10.0, max_entries=3, clock=lambda: now[0])
    for n in range(4):
        answered.remember("pi-fab", f"r{n}", answer(f"r{n}"))
    assert len(answered) == 3
    assert answered.get("pi-fab", "r0") is None  # evicted
    assert answered.get("pi-game", "r1") is None  # another edge's request id
    hit = answered.get("pi-fab", "r1")
    assert hit is not None
    assert hit.req_id == "r1"
    now[0] = 10.5
    assert answered.get("pi-fab", "r3") is None
    assert len(answered) == 0
