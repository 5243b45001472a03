"""The edge's intake of hub→edge messages: nothing forged, nothing stale gets in.

Anyone who can publish on this edge's ``cmd/*`` topics (a leaked broker password, a
too-wide ACL) could answer a badge request before the hub, end sessions, put machines
in maintenance or stop the journal. So every command is checked here, on paho's
thread, before it reaches the agent's queue (:class:`Intake`, the link's handler):

* its MAC must be valid under **this edge's own key**
  (:func:`protocol.signing.verify`): a message signed for another edge, by the site
  secret or by nobody is dropped;
* its ``not_after`` must not have passed on this edge's wall clock (a replay of a
  captured genuine message is dropped once stale; within its lifetime the session
  machine ignores a command id it already executed, and a decision whose request is
  no longer pending);
* a policy snapshot must carry a valid signature under the same key, for this edge;
* a message the link could not decode on a hub→edge topic (too large: a snapshot over
  1 MiB is refused before any parsing) is dropped by the link and counted here too.

Each drop is counted by reason (:attr:`Intake.rejections`), logged at most every
:data:`LOG_EVERY_S` per reason, and the total travels on the edge's retained status
(``EdgeStatus.rejected``, republished by the link when it changed). The agent adds the
``ack_through`` it refuses (:meth:`Intake.reject`, reason ``ack_beyond``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from edge.link import LinkHandler
from protocol.errors import ProtocolError
from protocol.messages import (
    AccessDecision,
    HubStatus,
    JournalCommand,
    MachineCommand,
    PolicySnapshot,
    SessionCommand,
    Signed,
)
from protocol.signing import verify, verify_snapshot
from protocol.topics import Kind

__all__ = ["Intake", "LinkChange"]

logger = logging.getLogger(__name__)

#: Shortest time between two log lines for the same rejection reason (seconds).
LOG_EVERY_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class LinkChange:
    """The link went up or down (an item of the agent's queue)."""

    up: bool


class Intake(LinkHandler):
    """Checks what the link hears and hands the rest to the agent (runs on paho's thread).

    Args:
        edge_id: for log lines.
        key: this edge's own key.
        now: the edge's wall clock.
        post: puts an item on the agent's queue.
    """

    def __init__(
        self,
        edge_id: str,
        key: bytes,
        now: Callable[[], datetime],
        post: Callable[[object], None],
    ) -> None:
        self.edge_id = edge_id
        self._key = key
        self._now = now
        self._post = post
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._logged: dict[str, float] = {}

    # ------------------------------------------------------------------ counts

    @property
    def rejections(self) -> dict[str, int]:
        """Messages dropped so far, by reason (``mac``, ``stale``, ``malformed``…)."""
        with self._lock:
            return dict(self._counts)

    def rejected_count(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reject(self, reason: str, what: str) -> None:
        """Count (and log, rate-limited) one dropped message."""
        now = time.monotonic()
        with self._lock:
            n = self._counts[reason] = self._counts.get(reason, 0) + 1
            quiet = now - self._logged.get(reason, -LOG_EVERY_S) < LOG_EVERY_S
            if not quiet:
                self._logged[reason] = now
        if not quiet:
            logger.warning(
                "edge %s: dropped %s from the hub's topics (%s; %d so far)",
                self.edge_id,
                what,
                reason,
                n,
            )

    # ------------------------------------------------------------------ checks

    def _admit(self, message: Signed) -> bool:
        what = type(message).__name__
        if not verify(message, self._key):
            self.reject("mac", what)
            return False
        if self._now() > message.not_after:
            self.reject("stale", what)
            return False
        return True

    # ------------------------------------------------------------------ LinkHandler

    def on_link_up(self) -> None:
        self._post(LinkChange(True))

    def on_link_down(self) -> None:
        self._post(LinkChange(False))

    def on_decision(self, decision: AccessDecision) -> None:
        if self._admit(decision):
            self._post(decision)

    def on_journal(self, command: JournalCommand) -> None:
        if self._admit(command):
            self._post(command)

    def on_session_command(self, command: SessionCommand) -> None:
        if self._admit(command):
            self._post(command)

    def on_machine_command(self, command: MachineCommand) -> None:
        if self._admit(command):
            self._post(command)

    def on_policy(self, snapshot: PolicySnapshot) -> None:
        # Counted here; the policy store verifies again before it keeps one (cheap
        # beside the decoding, and snapshots are rare).
        if snapshot.edge != self.edge_id or not verify_snapshot(snapshot, self._key):
            self.reject("signature", "a policy snapshot")
            return
        self._post(snapshot)

    def on_hub_status(self, status: HubStatus) -> None:
        self._post(status)

    def on_bad_message(self, kind: Kind, error: ProtocolError) -> None:
        if kind is not Kind.HUB_STATUS:
            reason = "oversized" if "exceeds" in str(error) else "malformed"
            self.reject(reason, f"a {kind.value} message")
