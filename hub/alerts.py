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
  or one event id under two seqs, is a cloned or restored edge (``journal_conflict``);
* **the ledger's defences** (:mod:`hub.ledger`, :mod:`hub.ledger_worker`): a poison
  event quarantined (``journal_poison``), a gap that does not close (``journal_gap``),
  used time clamped (``usage_clamped``), an epoch that went back (``epoch_reset``).

And the alerts about machines, one open per machine and kind:

* **faults** (:meth:`EdgeAlerts.machine_fault`, from the edge's ``machine_fault``
  journal events): ``printer_unreachable`` (OctoPrint gone), ``fault_hold_expired``
  (a fault held a printer's power for its limit, then the edge cut it) or
  ``machine_fault`` (anything else). ``machine_fault`` and ``printer_unreachable``
  resolve themselves when the edge reports the machine healthy again
  (:meth:`EdgeAlerts.machine_state`: a retained state with no fault); the row stays,
  ``resolved_at`` set. ``fault_hold_expired`` says the power was cut: staff resolve it.
* **running without a session** (:meth:`EdgeAlerts.machine_state`): the edge reports a
  job nobody badged for (``MachineDetail.foreign_job``); resolved when it stops.

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
from protocol.messages import Availability, EdgeStatus, MachineFault, MachineState, utcnow

logger = logging.getLogger(__name__)
_limited = RateLimitedLog(logger)

#: Alert kinds raised about edges, one open alert per edge each.
FOREIGN_MACHINE = "foreign_machine"
EDGE_OFFLINE = "edge_offline"
JOURNAL_CONFLICT = "journal_conflict"
JOURNAL_POISON = "journal_poison"
JOURNAL_GAP = "journal_gap"
USAGE_CLAMPED = "usage_clamped"
EPOCH_RESET = "epoch_reset"
#: Alert kinds raised about machines, one open alert per machine each.
MACHINE_FAULT = "machine_fault"
PRINTER_UNREACHABLE = "printer_unreachable"
FAULT_HOLD_EXPIRED = "fault_hold_expired"
RUNNING_WITHOUT_SESSION = "running_without_session"
#: Fault alerts that resolve themselves when the machine reports healthy again.
SELF_RESOLVING = (MACHINE_FAULT, PRINTER_UNREACHABLE)
#: The edge reports hub→edge messages it dropped (bad MAC, stale, ack beyond its journal):
#: someone publishes on its cmd/* topics, or hub and edge disagree on its key.
FORGED_MESSAGES = "forged_messages"
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
        #: Edge time of each machine's latest healthy state (no fault): a fault event
        #: older than it (it came late, through a replay) is recorded resolved.
        self._healthy_at: dict[str, datetime] = {}

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

    def alert(self, kind: str, edge: str, detail: str, *, machine: str | None = None) -> bool:
        """:meth:`open_alert` in a transaction of its own."""
        with transaction(self._factory) as s:
            return self.open_alert(s, kind, edge, detail, machine=machine)

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

    # ------------------------------------------------------------------ machines

    def machine_fault(self, s: Session, event: MachineFault) -> None:
        """A machine's ``machine_fault`` journal event: one alert row per episode.

        An episode the machine already recovered from (its healthy state arrived
        before this late event) is recorded resolved at that time.
        """
        fault = event.body
        kind = fault.code if fault.code in (PRINTER_UNREACHABLE, FAULT_HOLD_EXPIRED) else None
        kind = kind or MACHINE_FAULT
        healthy_at = self._healthy_at.get(fault.machine)
        resolved = (
            healthy_at if kind in SELF_RESOLVING and healthy_at and healthy_at > event.ts else None
        )
        s.add(
            Alert(
                ts=event.ts,
                kind=kind,
                edge_id=event.edge,
                machine_id=fault.machine,
                detail=f"{fault.code}: {fault.detail}" if fault.detail else fault.code,
                resolved_at=resolved,
            )
        )
        self._metrics.inc("alerts", kind)

    def machine_state(self, edge: str, machine: str, state: MachineState) -> None:
        """A machine's retained state: running without a session opens (or resolves)
        its alert; a healthy machine resolves its open fault alerts."""
        detail = state.detail
        if detail is None or detail.state is None or state.availability is Availability.OFFLINE:
            return  # the edge is going offline: it says nothing about the machine
        healthy = not detail.faults and state.availability is not Availability.FAULT
        if healthy:
            self._healthy_at[machine] = state.ts
        else:
            self._healthy_at.pop(machine, None)
        with transaction(self._factory) as s:
            open_rows = s.scalars(
                select(Alert).where(
                    Alert.machine_id == machine,
                    Alert.resolved_at.is_(None),
                    Alert.kind.in_((*SELF_RESOLVING, RUNNING_WITHOUT_SESSION)),
                )
            ).all()
            foreign_open = [a for a in open_rows if a.kind == RUNNING_WITHOUT_SESSION]
            if detail.foreign_job and not foreign_open:
                logger.warning("%s: a job runs with no session", machine)
                s.add(
                    Alert(
                        ts=state.ts,
                        kind=RUNNING_WITHOUT_SESSION,
                        edge_id=edge,
                        machine_id=machine,
                        detail=f"{machine}: a job runs with nobody badged (started at the machine)",
                    )
                )
                self._metrics.inc("alerts", RUNNING_WITHOUT_SESSION)
            elif not detail.foreign_job:
                for alert in foreign_open:
                    alert.resolved_at = state.ts
            if healthy:
                for alert in open_rows:
                    if alert.kind in SELF_RESOLVING and alert.ts <= state.ts:
                        alert.resolved_at = state.ts
                        logger.info("%s: healthy again: %s alert resolved", machine, alert.kind)

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
            if status.rejected:
                self.open_alert(
                    s,
                    FORGED_MESSAGES,
                    edge,
                    f"edge {edge} dropped {status.rejected} message(s) on its cmd/* or policy "
                    "topics (bad MAC, stale, beyond its journal): forged, replayed, or signed "
                    "with another key than its own",
                    at=at,
                )
            if status.online:
                if previous is None or status.epoch > previous[1]:
                    self._edge_back(s, edge, at)
            elif previous != (False, status.epoch):
                self._edge_offline(s, edge, status, at)
        return True

    def reset_epoch(self, edge: str, status: EdgeStatus, now: datetime | None = None) -> int | None:
        """Store ``status`` although its epoch is below the stored one (the journal
        proved the edge, see :mod:`hub.ledger_worker`); the epoch it replaces."""
        with transaction(self._factory) as s:
            c = s.get(EdgeCursor, edge)
            previous = c.epoch if c is not None else None
            if c is not None:
                c.epoch = status.epoch
                c.last_seen = None  # then recorded as the edge's first status
        self.record_status(edge, status, now)
        return previous

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
