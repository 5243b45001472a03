"""The audit trail: who did what, when and from where, kept apart from the process log.

Written to the ``audit_event`` table (:class:`~hub.db.models.AuditEvent`) by
:class:`AuditMiddleware`, which records

* every state-changing call (``POST``, ``PUT``, ``PATCH``, ``DELETE``) under ``/api`` by an
  authenticated account: end a session, machine commands, erasures, role and account
  changes, badges, reference data… as the route's name and its path ids;
* the reads that take data away: the routes named in :data:`AUDITED_READS` (member
  export, CSV reports);
* what a route adds with :func:`record` (logins: succeeded or failed, with the username
  tried and the address).

An event holds the acting account (username and role), the client address, the action,
the target (the path's ids, e.g. ``member_id=12``), the outcome and the names of the
changed fields (with the value for :data:`_VALUE_FIELDS` such as ``role``): no other
personal data, never a password. Anonymous calls are not recorded (the API refuses them
before reading their body, and a flood must not become database writes).

Events older than ``audit_retention_days`` are never returned and are deleted while the
trail is written or read (:meth:`AuditTrail.purge`), at most once per ``purge_every_s``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.auth import PRINCIPAL_KEY
from hub.db.models import AuditEvent
from protocol.messages import utcnow

log = logging.getLogger(__name__)

#: Where route-added events wait in the ASGI scope for the middleware.
EVENTS_KEY = "fabrique.audit"
#: GET routes (by name) that are recorded too: they take members' data out of the hub.
AUDITED_READS = frozenset({"export_member", "usage_report_csv"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Body fields whose value (not only the name) is recorded: roles and statuses.
_VALUE_FIELDS = frozenset({"role", "active", "status", "action", "state"})
#: Paths recorded only by their route (the login records its own outcome).
_SELF_RECORDING = frozenset({"/api/auth/login"})


@dataclass(slots=True)
class Event:
    """One audit event before it is written."""

    action: str
    outcome: str
    actor: str | None = None
    actor_role: str | None = None
    address: str = ""
    target: str = ""
    status: int | None = None
    detail: str = ""
    at: datetime = field(default_factory=utcnow)


def record(
    request: Request,
    action: str,
    *,
    outcome: str,
    actor: str | None = None,
    role: str | None = None,
    target: str = "",
    detail: str = "",
) -> None:
    """Add an event to this request's trail (written when the response starts)."""
    address = request.client.host if request.client else ""
    events: list[Event] = request.scope.setdefault(EVENTS_KEY, [])
    events.append(
        Event(
            action=action,
            outcome=outcome,
            actor=actor[:64] if actor else actor,
            actor_role=str(role) if role else None,
            address=address[:64],
            target=target[:128],
            detail=detail[:256],
        )
    )


def outcome_of(status: int) -> str:
    """``ok``, ``refused`` (401/403/429) or ``failed`` from an HTTP status."""
    if status < 400:
        return "ok"
    return "refused" if status in (401, 403, 429) else "failed"


class AuditTrail:
    """Writes, purges and reads audit events on the hub's store."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        retention_days: int,
        purge_every_s: float = 3600.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.factory = factory
        self.retention = timedelta(days=retention_days)
        self.purge_every_s = purge_every_s
        self._clock = clock
        self._next_purge = 0.0
        self._lock = threading.Lock()

    def cutoff(self) -> datetime:
        """Events at or before this instant are past the retention."""
        return self._clock() - self.retention

    def write(self, events: Iterable[Event]) -> None:
        """Insert ``events``; a database failure is logged, never raised (the call is done)."""
        rows = [
            AuditEvent(
                at=e.at,
                actor=e.actor,
                actor_role=e.actor_role,
                address=e.address,
                action=e.action[:64],
                target=e.target,
                outcome=e.outcome,
                status=e.status,
                detail=e.detail,
            )
            for e in events
        ]
        if not rows:
            return
        try:
            with self.factory() as db:
                db.add_all(rows)
                db.commit()
        except SQLAlchemyError as err:
            log.error("audit events not written (%s): %s", [r.action for r in rows], err)
        self.purge_due()

    def purge_due(self) -> None:
        """:meth:`purge` if the last one is older than ``purge_every_s``."""
        now = time.monotonic()
        with self._lock:
            if now < self._next_purge:
                return
            self._next_purge = now + self.purge_every_s
        try:
            self.purge()
        except SQLAlchemyError as err:
            log.error("audit purge failed: %s", err)

    def purge(self) -> int:
        """Delete events past the retention; returns how many."""
        cutoff = self.cutoff()
        with self.factory() as db:
            result: Any = db.execute(delete(AuditEvent).where(AuditEvent.at < cutoff))
            db.commit()
        count = int(result.rowcount or 0)
        if count:
            log.info("purged %d audit events before %s", count, cutoff.isoformat())
        return count


def _fields(body: bytes) -> str:
    """``role=admin, display_name``: a JSON body's field names, with :data:`_VALUE_FIELDS`."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(data, dict):
        return ""
    parts = []
    for key in sorted(data)[:20]:
        value = data[key]
        if key in _VALUE_FIELDS and isinstance(value, str | bool | int):
            parts.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
        else:
            parts.append(str(key))
    return ", ".join(parts)[:256]


class AuditMiddleware:
    """ASGI middleware recording audited calls (see the module docstring).

    Events are written when the response starts, before the client sees it: once a
    staff action answered, its trace is in the table.
    """

    def __init__(self, app: ASGIApp, trail: AuditTrail, prefix: str = "/api/") -> None:
        self.app = app
        self.trail = trail
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        write = scope.get("method") in _WRITES

        async def peek() -> Message:
            message = await receive()
            if write and message["type"] == "http.request" and len(body) < 65536:
                body.extend(message.get("body", b"")[: 65536 - len(body)])
            return message

        async def audited(message: Message) -> None:
            if message["type"] == "http.response.start":
                events = self._events(scope, int(message["status"]), bytes(body))
                if events:
                    await run_in_threadpool(self.trail.write, events)
            await send(message)

        await self.app(scope, peek, audited)

    def _events(self, scope: Scope, status: int, body: bytes) -> list[Event]:
        events: list[Event] = list(scope.get(EVENTS_KEY, ()))
        route = scope.get("route")
        name = getattr(route, "name", None)
        principal = scope.get(PRINCIPAL_KEY)
        method = scope.get("method")
        if (
            principal is not None
            and name is not None
            and scope.get("path") not in _SELF_RECORDING
            and (method in _WRITES or name in AUDITED_READS)
        ):
            client = scope.get("client")
            params = scope.get("path_params") or {}
            events.append(
                Event(
                    action=str(name),
                    outcome=outcome_of(status),
                    actor=principal.username,
                    actor_role=str(principal.role),
                    address=str(client[0])[:64] if client else "",
                    target=", ".join(f"{k}={v}" for k, v in sorted(params.items()))[:128],
                    status=status,
                    detail=_fields(body) if method in _WRITES else "",
                )
            )
        for event in events:
            if event.status is None:
                event.status = status
        return events
