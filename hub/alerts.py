"""Edge liveness and the alerts raised about edges, one open alert per edge and kind.

:class:`EdgeAlerts` owns the ``alert`` rows about an edge (the ``machine_fault``
rows are the ledger's projection of the edge's own fault events):

* **edge liveness** (:meth:`EdgeAlerts.record_status`): each accepted ``edge/{e}/status``
  is persisted on the edge's cursor row under the epoch rule (a status of an older
  epoch is stale); an edge with machines whose status turns offline gets one open
  ``edge_offline`` alert, saying whether it was a planned stop (the edge's goodbye) or
  a lost connection (its last will); coming back online with a newer epoch resolves it;
* **foreign machines** (:meth:`EdgeAlerts.foreign_event`, :meth:`EdgeAlerts.foreign_request`):
  an edge speaking for a machine (or a session) that is not its own is misconfigured or
  compromised; it is counted, logged (rate-limited) and raises one open
  ``foreign_machine`` alert;
* **journal conflicts** (:meth:`EdgeAlerts.conflict`): one seq seen with two event ids,
  or one event id under two seqs, is a cloned or restored edge (``journal_conflict``).

Every edge alert is written from the ledger's single worker thread, so
check-then-insert keeps it to one open alert per edge and kind. Methods taking a
:class:`~sqlalchemy.orm.Session` write in the caller's transaction (the ledger's, with
the event that caused them); the others open their own.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.db.engine import transaction
from hub.db.models import Alert, EdgeCursor, Machine
from hub.metrics import Metrics, RateLimitedLog
from protocol.messages import EdgeStatus, utcnow

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)

#: Alert kinds raised about edges, one open alert per edge each.
FOREIGN_MACHINE = "foreign_machine"
EDGE_OFFLINE = "edge_offline"
JOURNAL_CONFLICT = "journal_conflict"
#: An edge sent more than its token buckets allow (:mod:`hub.throttle`).
EDGE_THROTTLED = "edge_throttled"
#: Many unknown badges on one reader in a few seconds (:class:`hub.throttle.ReaderGuard`).
BADGE_ENUMERATION = "badge_enumeration"


def describe_foreign_machine(machine_id: str, owner: str | None) -> str:
    """How an alert names a machine that is not the reporting edge's."""
    if owner is None:
        return f"machine {machine_id}, which this site does not know"
    return f"machine {machine_id}, which belongs to edge {owner}"


class EdgeAlerts:
    """Edge liveness and the one-open-alert-per-edge-and-kind rule."""

    def __init__(self, factory: sessionmaker[Session], metrics: Metrics | None = None) -> None:
        self._factory = factory
        self._metrics = metrics or Metrics()

    def open_alert(
        self,
        s: Session,
        kind: str,
        edge: str,
        detail: str,
        *,
        machine: str | None = None,
        at: datetime | None = None,
    ) -> bool:
        """Add an alert of ``kind`` for ``edge`` unless one is open already; True if added."""
        open_alert = s.scalar(
            select(Alert.id).where(
                Alert.kind == kind, Alert.edge_id == edge, Alert.resolved_at.is_(None)
            )
        )
        if open_alert is not None:
            return False
        s.add(
            Alert(
                ts=at or utcnow(),
                kind=kind,
                edge_id=edge,
                machine_id=machine,
                detail=detail[:1000],
            )
        )
        self._metrics.inc("alerts", kind)
        return True

    # ------------------------------------------------------------------ journal

    def conflict(self, s: Session, edge: str, detail: str) -> None:
        """Same seq with another event id, or one event id under two seqs: a cloned
        or restored edge. Nothing is applied; staff get one open alert per edge."""
        self._metrics.inc("journal_conflicts")
        _limited.warning(f"conflict:{edge}", "journal conflict on edge %s: %s", edge, detail)
        self.open_alert(s, JOURNAL_CONFLICT, edge, detail)

    # ------------------------------------------------------------------ foreign machines

    def foreign_event(self, s: Session, edge: str, machine: str, what: str) -> None:
        """Count, log (rate-limited) and alert once: ``edge`` reported ``what``."""
        self._metrics.inc("foreign_machine", "event")
        _limited.warning(f"foreign:{edge}", "edge %s: %s; stored, not applied", edge, what)
        self.open_alert(
            s,
            FOREIGN_MACHINE,
            edge,
            f"edge {edge}: {what}; the event is stored but not applied",
            machine=machine,
        )

    def foreign_request(self, edge: str, machine: str, what: str) -> None:
        """Alert (once per edge) that ``edge`` asked access to a machine not its own.

        The request itself was already denied (``unknown_machine``) and counted by the
        service; this only writes the alert, from the ledger's worker thread.
        """
        with transaction(self._factory) as s:
            self.open_alert(
                s,
                FOREIGN_MACHINE,
                edge,
                f"edge {edge}: access request for {what}; denied",
                machine=machine,
            )

    def flood(self, kind: str, edge: str, detail: str, machine: str | None = None) -> None:
        """Raise ``edge_throttled`` or ``badge_enumeration`` (once open per edge); the
        service decides how often this is called, from the ledger's worker thread."""
        with transaction(self._factory) as s:
            self.open_alert(s, kind, edge, detail, machine=machine)

    # ------------------------------------------------------------------ liveness

    def record_status(self, edge: str, status: EdgeStatus, now: datetime | None = None) -> bool:
        """Persist an edge's liveness under the epoch rule; False when stale.

        An edge with machines whose status turns offline gets one open
        ``edge_offline`` alert; coming back online with a newer epoch resolves it.
        A status repeated as it was (the retained one, re-read when the hub restarts)
        changes no alert, so an alert staff resolved by hand stays resolved.
        """
        at = now or utcnow()
        with transaction(self._factory) as s:
            c = s.get(EdgeCursor, edge)
            previous: tuple[bool, int] | None = None
            if c is None:
                c = EdgeCursor(edge_id=edge, contiguous_through=0, max_seen=0, epoch=status.epoch)
                s.add(c)
            elif status.epoch < c.epoch:
                return False
            elif c.last_seen is not None:  # a cursor made by events alone has no status yet
                previous = (c.online, c.epoch)
            c.epoch = status.epoch
            c.online = status.online
            if status.version:
                c.version = status.version[:64]
            c.last_seen = at
            if status.online:
                if previous is None or status.epoch > previous[1]:
                    self._edge_back(s, edge, at)
            elif previous != (False, status.epoch):
                self._edge_offline(s, edge, status, at)
        return True

    def _edge_offline(self, s: Session, edge: str, status: EdgeStatus, at: datetime) -> None:
        machines = s.scalars(
            select(Machine.id).where(Machine.edge_id == edge).order_by(Machine.id)
        ).all()
        if not machines:
            return  # a spare or decommissioned edge: nothing on the floor went dark
        how, label = self._how_offline(status)
        self._metrics.inc("edges_offline", label)
        _limited.warning(f"offline:{edge}", "edge %s offline (%s)", edge, how)
        shown = ", ".join(machines[:20]) + (", …" if len(machines) > 20 else "")
        self.open_alert(
            s,
            EDGE_OFFLINE,
            edge,
            f"edge {edge} offline, {how} (epoch {status.epoch}); machines: {shown}",
            at=at,
        )

    @staticmethod
    def _how_offline(status: EdgeStatus) -> tuple[str, str]:
        """A planned stop (the edge's own goodbye) or a lost edge (its last will),
        with a metrics label."""
        if status.goodbye:
            return "planned stop (the edge said goodbye)", "goodbye"
        return "connection lost (last will)", "last_will"

    @staticmethod
    def _edge_back(s: Session, edge: str, at: datetime) -> None:
        alerts = s.scalars(
            select(Alert).where(
                Alert.kind == EDGE_OFFLINE, Alert.edge_id == edge, Alert.resolved_at.is_(None)
            )
        ).all()
        for alert in alerts:
            alert.resolved_at = at
        if alerts:
            logger.info("edge %s back online: offline alert resolved", edge)
