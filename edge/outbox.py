"""The journal sender: publishes journaled events until the hub acknowledges them.

:class:`Outbox` owns what the agent knows of the hub's progress through this
edge's journal (DESIGN §3): the hub's ``ack_through`` (:attr:`Outbox.acked`), the
last seq published (:attr:`Outbox.sent_through`), how many times events were sent
again (:attr:`Outbox.resends`), and whether the hub can hear them now. It runs on
the agent thread only; the journal itself (:mod:`edge.journal`) stays the truth.

* while the hub is online, events are published in ``seq`` order, at most
  ``window`` beyond ``ack_through`` (:meth:`Outbox.pump`);
* without progress for ``resend_s`` they are resent from the first unacknowledged
  one (:meth:`Outbox.check_resend`; duplicates are expected, the hub inserts each
  event once), and the hub coming back online resends them too;
* ``replay_from`` resends from the seq asked, even acknowledged events still kept;
* at shutdown :meth:`Outbox.drain` waits a bounded time for the acknowledgements;
* acknowledged events are pruned after the retention period, and a backlog near
  ``alarm_events`` is logged as an alarm (:meth:`Outbox.housekeeping`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Final, Protocol

from edge.journal import Event, Journal, JournalError
from edge.settings import JournalSettings
from protocol.messages import JournalCommand, Message

__all__ = ["EventSender", "Outbox"]

logger = logging.getLogger(__name__)

#: Events read from the journal per batch.
BATCH: Final = 100
PRUNE_EVERY_S: Final = 3600.0
#: Shortest time between two backlog alarms (real seconds).
ALARM_EVERY_S: Final = 600.0
#: Resend timer period while draining at shutdown (real seconds).
DRAIN_CHECK_S: Final = 1.0


class EventSender(Protocol):
    """What the outbox needs from the link: publish one event (False: link down)."""

    def send_event(self, event: Message) -> bool: ...


class Outbox:
    """The journal sender of one edge (see the module docstring).

    Args:
        journal: the edge's open journal.
        edge_id: for log lines.
        settings: window, resend delay, retention and alarm bound.
        monotonic: real monotonic seconds (resend timer; tests may inject).
    """

    def __init__(
        self,
        journal: Journal,
        edge_id: str,
        settings: JournalSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.edge_id = edge_id
        self.settings = settings
        self._monotonic = monotonic
        self._acked = 0
        self._sent_through = 0
        #: The highest seq ever handed to the link (what the hub may acknowledge).
        self._sent_max = 0
        self._resends = 0
        self._online = False
        self._last_progress = 0.0
        self._next_prune = 0.0
        self._last_alarm = -ALARM_EVERY_S

    # ------------------------------------------------------------------ reading

    @property
    def acked(self) -> int:
        """The hub's latest ``ack_through`` for this edge."""
        return self._acked

    @property
    def sent_through(self) -> int:
        """The last seq published since the last resend."""
        return self._sent_through

    @property
    def resends(self) -> int:
        """How many times events were sent again (resend timer, hub back, replay)."""
        return self._resends

    def pending(self) -> int:
        """Journal events the hub has not acknowledged yet."""
        return max(0, self.journal.last_seq() - self._acked)

    # ------------------------------------------------------------------ inputs

    def restore(self) -> None:
        """After the journal opened: nothing beyond the first unacknowledged event is sent."""
        first = self.journal.unacked(1)
        self._acked = first[0].seq - 1 if first else self.journal.last_seq()
        self._sent_through = self._acked
        # Whatever was journaled before this start may have been sent by the last run.
        self._sent_max = self.journal.last_seq()

    def online(self, online: bool) -> None:
        """The hub can (or cannot) hear this edge now; back online, resend what is pending."""
        if online and not self._online:
            self._sent_through = min(self._sent_through, self._acked)
        self._online = online

    def on_command(self, command: JournalCommand) -> bool:
        """The hub's ``ack_through`` or ``replay_from``; False when refused.

        An ``ack_through`` beyond the last event this edge ever sent is refused (logged):
        believed, it would make the edge stop sending its journal until restarted.
        """
        if command.ack_through is not None:
            through = command.ack_through
            if through > self._sent_max:
                logger.warning(
                    "edge %s: refused ack_through %d beyond the last seq sent (%d)",
                    self.edge_id,
                    through,
                    self._sent_max,
                )
                return False
            if through > self._acked:
                try:
                    self.journal.ack_through(through)
                except JournalError as err:
                    logger.error("cannot record the acknowledgement: %s", err)
                    return True
                self._acked = through
                self._sent_through = max(self._sent_through, through)
                self._last_progress = self._monotonic()
        elif command.replay_from is not None:
            logger.info("edge %s: hub asks a replay from seq %d", self.edge_id, command.replay_from)
            self._sent_through = min(self._sent_through, command.replay_from - 1)
            self._resends += 1
            self._last_progress = self._monotonic()
        return True

    # ------------------------------------------------------------------ sending

    def pump(self, link: EventSender | None) -> None:
        """Publish journal events in order while the hub can hear them."""
        if link is None or not self._online:
            return
        window = self.settings.window
        while True:
            room = window - max(0, self._sent_through - self._acked)
            if room <= 0:
                return
            try:
                events: list[Event] = self.journal.replay_from(
                    self._sent_through + 1, limit=min(room, BATCH)
                )
            except JournalError as err:
                logger.error("cannot read the journal: %s", err)
                return
            if not events:
                return
            for event in events:
                if not link.send_event(event):
                    return
                self._sent_through = event.seq
                self._sent_max = max(self._sent_max, event.seq)
            if len(events) < BATCH:
                return

    def check_resend(self) -> None:
        """Resend from the first unacknowledged event after ``resend_s`` without progress."""
        now = self._monotonic()
        if not self._online or self._sent_through <= self._acked:
            self._last_progress = now
            return
        if now - self._last_progress >= self.settings.resend_s:
            logger.info(
                "edge %s: no acknowledgement beyond seq %d for %.0f s: resending",
                self.edge_id,
                self._acked,
                self.settings.resend_s,
            )
            self._sent_through = self._acked
            self._resends += 1
            self._last_progress = now

    def housekeeping(self) -> None:
        """The resend timer, pruning (hourly) and the backlog alarm; once a second."""
        self.check_resend()
        now = self._monotonic()
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY_S
            try:
                self.journal.prune(timedelta(days=self.settings.retention_days))
            except JournalError as err:
                logger.error("journal prune failed: %s", err)
        pending = self.pending()
        bound = self.settings.alarm_events
        if pending > 0.8 * bound and now - self._last_alarm >= ALARM_EVERY_S:
            self._last_alarm = now
            logger.error(
                "edge %s: %d journal events wait for the hub (alarm at 80%% of %d)",
                self.edge_id,
                pending,
                bound,
            )

    def drain(
        self, link: EventSender | None, timeout_s: float, poll: Callable[[float], None]
    ) -> int:
        """At shutdown: send until acknowledged, the hub is gone or ``timeout_s`` passed.

        ``poll(wait_s)`` lets the agent take the hub's answers meanwhile (it feeds
        acknowledgements back through :meth:`on_command` and :meth:`online`).
        Returns how many events are left unacknowledged (they stay journaled).
        """
        deadline = self._monotonic() + timeout_s
        next_check = self._monotonic() + DRAIN_CHECK_S
        while self._monotonic() < deadline and self.pending() > 0 and self._online:
            poll(0.05)
            if self._monotonic() >= next_check:
                next_check = self._monotonic() + DRAIN_CHECK_S
                self.check_resend()
            self.pump(link)
        left = self.pending()
        if left > 0:
            logger.warning(
                "edge %s: %d journal events not acknowledged at exit (kept)", self.edge_id, left
            )
        return left
