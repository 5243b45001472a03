"""The audit trail, for admins (tag ``audit``): see :mod:`hub.audit` for what is recorded."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import func, select

from hub.api.auth import Capability
from hub.api.deps import SessionDep, allow
from hub.api.schemas import MAX_INT, AuditEventPublic, Page
from hub.audit import AuditTrail
from hub.db.models import AuditEvent

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get(
    "",
    response_model=Page[AuditEventPublic],
    summary="Audit events, newest first",
    dependencies=[allow(Capability.AUDIT_READ)],
)
def list_audit(
    request: Request,
    db: SessionDep,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> Page[AuditEventPublic]:
    """Events within the retention (``audit_retention_days``), filtered by action or actor."""
    trail: AuditTrail = request.app.state.audit
    trail.purge_due()
    query = select(AuditEvent).where(AuditEvent.at >= trail.cutoff())
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.scalars(
        query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit).offset(offset)
    )
    return Page[AuditEventPublic](
        items=[AuditEventPublic.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )
