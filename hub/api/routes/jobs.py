"""Print jobs (tag ``jobs``): one row per job a machine reported ended.

Only admins and fabmanagers list jobs, with who started them (member id, first name);
coordinators see jobs only as totals in the usage reports, where small groups are
hidden. A job belongs to the period in which it ended.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from hub.api.auth import Capability
from hub.api.common import period, within
from hub.api.deps import CurrentAccount, PolicyDep, SessionDep, SettingsDep, allow
from hub.api.schemas import MAX_INT, DbId, Ident, JobPublic, Page
from hub.api.views import job_public
from hub.db.models import MachineJob, Member
from protocol.messages import JobResult

router = APIRouter(prefix="/api")


@router.get(
    "/jobs",
    response_model=Page[JobPublic],
    tags=["jobs"],
    summary="Print jobs, most recently ended first, with filters",
    dependencies=[allow(Capability.JOBS_READ)],
)
def list_jobs(
    db: SessionDep,
    principal: CurrentAccount,
    cfg: PolicyDep,
    settings: SettingsDep,
    machine_id: Ident | None = None,
    zone_id: Ident | None = None,
    member_id: Annotated[DbId | None, Query()] = None,
    result: JobResult | None = None,
    since: Annotated[datetime | None, Query(description="ended at or after")] = None,
    until: Annotated[datetime | None, Query(description="ended before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> Page[JobPublic]:
    query = select(MachineJob, Member.display_name).outerjoin(
        Member, Member.id == MachineJob.member_id
    )
    start, end = period(cfg, since, until)
    if machine_id is not None:
        query = query.where(MachineJob.machine_id == machine_id)
    if zone_id is not None:
        query = query.where(MachineJob.zone_id == zone_id)
    if member_id is not None:
        query = query.where(MachineJob.member_id == member_id)
    if result is not None:
        query = query.where(MachineJob.result == result)
    query = within(query, MachineJob.ended_at, start, end)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.execute(
        query.order_by(MachineJob.ended_at.desc(), MachineJob.id.desc()).limit(limit).offset(offset)
    )
    return Page[JobPublic](
        items=[job_public(row, name, principal.role, settings) for row, name in rows],
        total=total,
        limit=limit,
        offset=offset,
    )
