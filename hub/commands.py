"""Commands sent to edges, and the outcome each edge answers (``outcome`` topic).

The hub registers a :class:`PendingCommand` *before* publishing a ``cmd/session`` or
``cmd/machine`` command (the answer may come back at once), and the edge's
:class:`~protocol.messages.CommandOutcome` resolves it. Whoever sent the command (an
API route) waits a bounded time (``command_outcome_wait_s``) for it: applied,
refused (stable code, French reason), expired, or no answer at all (``None``: the
edge did not answer in time; the command may still be carried out before its
``not_after``).

Only the edge the command was sent to can answer it: an outcome from another edge,
for an unknown or already answered ``cmd_id``, is dropped (and counted). At most
:data:`MAX_PENDING` commands wait at once; the oldest is dropped beyond that.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Final

from protocol.messages import CommandOutcome

__all__ = ["MAX_PENDING", "CommandWaiters", "PendingCommand"]

logger = logging.getLogger(__name__)

#: Commands waiting for their outcome at once (far above a floor's staff).
MAX_PENDING: Final = 1024


class PendingCommand:
    """One command sent to ``edge``; :meth:`wait` for the edge's answer."""

    def __init__(self, waiters: CommandWaiters, cmd_id: str, edge: str, wait_s: float) -> None:
        self.cmd_id = cmd_id
        self.edge = edge
        self.wait_s = wait_s
        self._waiters = waiters
        self._done = threading.Event()
        self._outcome: CommandOutcome | None = None

    def __repr__(self) -> str:
        return f"PendingCommand({self.cmd_id!r} on {self.edge!r})"

    def wait(self, timeout: float | None = None) -> CommandOutcome | None:
        """The edge's outcome, or ``None`` if it did not answer within ``timeout``
        (default: the hub's ``command_outcome_wait_s``). Waiting ends the wait: a
        later answer is dropped."""
        try:
            self._done.wait(self.wait_s if timeout is None else timeout)
            return self._outcome
        finally:
            self._waiters.forget(self.cmd_id)

    def _resolve(self, outcome: CommandOutcome) -> None:
        self._outcome = outcome
        self._done.set()


class CommandWaiters:
    """The commands waiting for their outcome, by ``cmd_id`` (thread-safe)."""

    def __init__(self, wait_s: float = 5.0) -> None:
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, PendingCommand] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def expect(self, cmd_id: str, edge: str) -> PendingCommand:
        """Register ``cmd_id``, about to be sent to ``edge``."""
        pending = PendingCommand(self, cmd_id, edge, self.wait_s)
        with self._lock:
            self._pending[cmd_id] = pending
            while len(self._pending) > MAX_PENDING:
                dropped, _ = self._pending.popitem(last=False)
                logger.warning("command %s: dropped while waiting (too many pending)", dropped)
        return pending

    def resolve(self, edge: str, outcome: CommandOutcome) -> bool:
        """An edge answered; False when nobody waits for that answer from that edge."""
        with self._lock:
            pending = self._pending.get(outcome.cmd_id)
            if pending is None or pending.edge != edge:
                return False
            del self._pending[outcome.cmd_id]
        pending._resolve(outcome)
        return True

    def forget(self, cmd_id: str) -> None:
        """Stop waiting for ``cmd_id`` (sent nowhere, or waited for)."""
        with self._lock:
            self._pending.pop(cmd_id, None)
