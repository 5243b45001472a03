"""Answers already given to access requests, so that a repeated request is answered once.

The edge publishes ``req/access`` at QoS 1: the broker may deliver one request twice
(a lost PUBACK, a reconnection). Deciding it twice would grant twice, with two
session ids and two access-log rows. :class:`AnsweredRequests` remembers the answer
to each ``(edge, req_id)`` for a while (longer than the decision's ``not_after``,
after which the edge ignores any answer anyway); a duplicate gets the same answer
again and nothing else happens. Bounded in size: the oldest answers are forgotten
first, so a flood of made-up request ids costs at most ``max_entries`` answers.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from protocol.messages import AccessDecision


class AnsweredRequests:
    """A bounded, expiring map ``(edge, req_id) -> answer``; thread-safe."""

    def __init__(
        self,
        ttl_s: float,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._max = max(1, max_entries)
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: OrderedDict[tuple[str, str], tuple[float, AccessDecision]] = OrderedDict()

    def get(self, edge: str, req_id: str) -> AccessDecision | None:
        """The answer already given to this request, if still remembered."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            found = self._answers.get((edge, req_id))
            return None if found is None else found[1]

    def remember(self, edge: str, req_id: str, answer: AccessDecision) -> None:
        now = self._clock()
        with self._lock:
            self._answers[(edge, req_id)] = (now + self._ttl, answer)
            self._answers.move_to_end((edge, req_id))
            while len(self._answers) > self._max:
                self._answers.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._answers)

    def _expire(self, now: float) -> None:
        while self._answers:
            key, (expires, _answer) = next(iter(self._answers.items()))
            if expires > now:
                return
            del self._answers[key]
