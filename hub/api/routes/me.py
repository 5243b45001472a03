"""The caller's own data (tag ``me``): what a member may see of themselves.

Their trainings and their expiry, the time they used today and this week in each zone
against their age group's quota (counted the way the policy engine counts it), and
their recent sessions. Nothing about anyone else.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.api.auth import Capability
from hub.api.common import day_start, local_today, member_age
from hub.api.deps import CurrentAccount, PolicyDep, SessionDep, allow
from hub.api.schemas import AccountPublic, MePublic, MySession, MyUsage
from hub.api.views import member_trainings, training_names
from hub.db.models import Account, Member, Quota, UsageSession
from hub.policy.engine import zone_usage
from hub.policy.model import PolicyConfig, UsageView

router = APIRouter(prefix="/api/me", tags=["me"])

RECENT_SESSIONS = 20


def member_usage(
    db: Session, member: Member, group: str, cfg: PolicyConfig
) -> tuple[list[MyUsage], list[UsageView]]:
    """Time used today and this week per zone against the age group's quota, counted
    the way the policy engine counts it; and the sessions it counted (this week's and
    any still open), for callers that say more (the "mon temps" page)."""
    today = local_today(cfg.tz)
    week_start = day_start(today - timedelta(days=today.weekday()), cfg.tz)
    rows = list(
        db.scalars(
            select(UsageSession)
            .where(UsageSession.member_id == member.id)
            .where(
                (UsageSession.started_at >= week_start - timedelta(days=1))
                | UsageSession.ended_at.is_(None)
            )
        )
    )
    views = [
        UsageView(
            session_id=r.id,
            member_id=r.member_id,
            machine_id=r.machine_id,
            zone_id=r.zone_id or "",
            started_at=r.started_at,
            ended_at=r.ended_at,
            used_s=r.used_s,
        )
        for r in rows
    ]
    quotas = {q.zone_id: q for q in db.scalars(select(Quota).where(Quota.age_group == group))}
    usage = []
    for zone_id in sorted({v.zone_id for v in views} | set(quotas)):
        used = zone_usage(views, zone_id, today, cfg)
        quota = quotas.get(zone_id)
        usage.append(
            MyUsage(
                zone_id=zone_id,
                today_s=round(used.today_s, 1),
                week_s=round(used.week_s, 1),
                daily_min=quota.daily_min if quota else None,
                weekly_min=quota.weekly_min if quota else None,
            )
        )
    return usage, views


@router.get(
    "",
    response_model=MePublic,
    summary="My account, trainings, time used and recent sessions",
    dependencies=[allow(Capability.SELF)],
)
def me(principal: CurrentAccount, db: SessionDep, cfg: PolicyDep) -> MePublic:
    account = db.get(Account, principal.account_id)
    if account is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Compte supprimé")
    member = db.get(Member, account.member_id) if account.member_id is not None else None
    if member is None:
        return MePublic(
            account=AccountPublic.model_validate(account),
            first_name=None,
            age_group=None,
            trainings=[],
            usage=[],
            recent_sessions=[],
        )
    _, group = member_age(member.birth_year, member.birth_month, cfg)
    usage, _views = member_usage(db, member, group, cfg)
    recent = db.scalars(
        select(UsageSession)
        .where(UsageSession.member_id == member.id)
        .order_by(UsageSession.started_at.desc())
        .limit(RECENT_SESSIONS)
    )
    return MePublic(
        account=AccountPublic.model_validate(account),
        first_name=member.first_name,
        age_group=group,
        trainings=member_trainings(member.trainings, training_names(db), cfg),
        usage=usage,
        recent_sessions=[
            MySession(
                machine_id=r.machine_id,
                started_at=r.started_at,
                ended_at=r.ended_at,
                used_s=r.used_s,
            )
            for r in recent
        ],
    )
