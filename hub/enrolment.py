"""Enrolment by tapping: the next badge seen at a chosen reader is bound to a member.

An admin arms an enrolment for one member on one machine's reader
(:meth:`Enrolments.arm`); for :data:`ENROL_WINDOW_S` seconds the hub captures the next
access request from that machine (:meth:`Enrolments.capture`, called on the decision
path before the policy runs) instead of deciding it. Only the badge's keyed hash ever
arrives (the edge hashes the UID), so the raw UID reaches neither the browser nor
the store.

The captured request is answered with a *refusal* (``badge_enrolled``: "Badge associé
à Inès") so the machine never switches on during an enrolment; the next tap is
decided normally. A badge already bound to someone is refused with its owner's first
name (``badge_already_enrolled``) and the enrolment ends without binding. Binding
(the SQL insert) runs off the MQTT thread, in :meth:`hub.service.Hub` ; the outcome
is stored here for the admin's page to read (:meth:`Enrolments.get`).

State is in memory: one hub per site, and an enrolment lives one minute.
"""

from __future__ import annotations

import enum
import logging
import secrets
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.db.models import Badge, Member

log = logging.getLogger(__name__)

#: How long an armed enrolment waits for a badge.
ENROL_WINDOW_S = 60.0
#: How long a finished enrolment's outcome stays readable.
KEEP_OUTCOME_S = 600.0

CODE_ENROLLED = "badge_enrolled"
CODE_ALREADY_ENROLLED = "badge_already_enrolled"


class EnrolState(enum.StrEnum):
    WAITING = "waiting"
    BINDING = "binding"
    BOUND = "bound"
    DUPLICATE = "duplicate"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Enrolment:
    """One armed enrolment and, once a badge was seen, its outcome."""

    token: str
    machine_id: str
    #: The edge that owns the machine: only its requests are captured.
    edge_id: str
    member_id: int
    first_name: str
    account_id: int
    armed_at: datetime
    expires_at: datetime
    state: EnrolState = EnrolState.WAITING
    #: The captured badge's keyed hash (never shown; kept until bound).
    badge_hash: str | None = None
    #: First name of the member who already holds the captured badge.
    owner_first_name: str | None = None
    badge_id: int | None = None

    @property
    def finished(self) -> bool:
        return self.state not in (EnrolState.WAITING, EnrolState.BINDING)

    def seconds_left(self, now: datetime) -> int:
        return max(0, int((self.expires_at - now).total_seconds() + 0.999))


def enrolled_message(first_name: str) -> str:
    """What the reader shows when a badge was just bound."""
    return f"Badge associé à {first_name[:40]} ! Repasse-le pour utiliser la machine."


def already_enrolled_message(owner: str) -> str:
    """What the reader (and the admin's page) show for a badge someone already holds."""
    return f"Ce badge est déjà associé à {owner[:40]} : il n'a pas été associé."


class Enrolments:
    """The armed enrolments of a hub, thread-safe (MQTT thread and API threads)."""

    def __init__(self, window_s: float = ENROL_WINDOW_S) -> None:
        self.window = timedelta(seconds=window_s)
        self._lock = threading.Lock()
        self._by_token: dict[str, Enrolment] = {}
        #: machine id -> token of the enrolment waiting there.
        self._armed: dict[str, str] = {}

    def arm(
        self,
        machine_id: str,
        edge_id: str,
        member_id: int,
        first_name: str,
        account_id: int,
        now: datetime,
    ) -> Enrolment:
        """Wait for the next badge on ``machine_id``; replaces an enrolment armed there."""
        enrolment = Enrolment(
            token=secrets.token_urlsafe(16),
            machine_id=machine_id,
            edge_id=edge_id,
            member_id=member_id,
            first_name=first_name,
            account_id=account_id,
            armed_at=now,
            expires_at=now + self.window,
        )
        with self._lock:
            self._sweep(now)
            previous = self._armed.get(machine_id)
            if previous is not None:
                self._finish(previous, EnrolState.CANCELLED)
            self._by_token[enrolment.token] = enrolment
            self._armed[machine_id] = enrolment.token
        return enrolment

    def capture(
        self, machine_id: str, edge_id: str, badge_hash: str, now: datetime
    ) -> Enrolment | None:
        """The enrolment waiting on ``machine_id``, now holding ``badge_hash``; else None.

        Only a request from the machine's own edge is captured. Cheap when nothing is
        armed (one truth test): it is on the decision path.
        """
        if not self._armed:
            return None
        with self._lock:
            token = self._armed.get(machine_id)
            if token is None or self._by_token[token].edge_id != edge_id:
                return None
            del self._armed[machine_id]
            enrolment = self._by_token[token]
            if now >= enrolment.expires_at:
                self._by_token[token] = replace(enrolment, state=EnrolState.EXPIRED)
                return None
            enrolment = replace(enrolment, state=EnrolState.BINDING, badge_hash=badge_hash)
            self._by_token[token] = enrolment
            return enrolment

    def resolve(
        self,
        token: str,
        state: EnrolState,
        *,
        owner_first_name: str | None = None,
        badge_id: int | None = None,
    ) -> None:
        """Record the outcome of a captured enrolment (the hash is forgotten)."""
        with self._lock:
            enrolment = self._by_token.get(token)
            if enrolment is not None:
                self._by_token[token] = replace(
                    enrolment,
                    state=state,
                    badge_hash=None,
                    owner_first_name=owner_first_name,
                    badge_id=badge_id,
                )

    def get(self, token: str, now: datetime) -> Enrolment | None:
        """The enrolment ``token`` (expired if its minute passed without a badge)."""
        with self._lock:
            self._sweep(now)
            return self._by_token.get(token)

    def cancel(self, token: str) -> None:
        with self._lock:
            self._finish(token, EnrolState.CANCELLED)

    def armed_machines(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._armed)

    def _finish(self, token: str, state: EnrolState) -> None:
        enrolment = self._by_token.get(token)
        if enrolment is None:
            return
        if self._armed.get(enrolment.machine_id) == token:
            del self._armed[enrolment.machine_id]
        if not enrolment.finished:
            self._by_token[token] = replace(enrolment, state=state, badge_hash=None)

    def _sweep(self, now: datetime) -> None:
        for token in list(self._armed.values()):
            if now >= self._by_token[token].expires_at:
                self._finish(token, EnrolState.EXPIRED)
        keep = timedelta(seconds=KEEP_OUTCOME_S)
        for token, enrolment in list(self._by_token.items()):
            if enrolment.finished and now >= enrolment.expires_at + keep:
                del self._by_token[token]


@dataclass(frozen=True, slots=True)
class BindResult:
    state: EnrolState
    owner_first_name: str | None = None
    badge_id: int | None = None


def bind_badge(session: Session, enrolment: Enrolment) -> BindResult:
    """Insert the captured badge for the enrolment's member (in the caller's transaction).

    A hash already in the store (bound between the directory load and now) is a
    duplicate, answered with its owner's first name.
    """
    assert enrolment.badge_hash is not None
    owner = session.execute(
        select(Member.display_name)
        .join(Badge, Badge.member_id == Member.id)
        .where(Badge.hash == enrolment.badge_hash)
    ).scalar_one_or_none()
    if owner is not None:
        return BindResult(EnrolState.DUPLICATE, owner_first_name=(owner.split() or [""])[0])
    if session.get(Member, enrolment.member_id) is None:
        return BindResult(EnrolState.FAILED)
    badge = Badge(
        hash=enrolment.badge_hash,
        member_id=enrolment.member_id,
        label=f"associé sur {enrolment.machine_id}",
    )
    session.add(badge)
    session.flush()
    log.info(
        "badge %d enrolled by tapping on %s for member %d by account %d",
        badge.id,
        enrolment.machine_id,
        enrolment.member_id,
        enrolment.account_id,
    )
    return BindResult(EnrolState.BOUND, badge_id=badge.id)
