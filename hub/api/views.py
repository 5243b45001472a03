"""Build response models from ORM rows, shaped for the caller's role.

Identity is the sensitive part: admins and fabmanagers see full members; animators see
first names, age groups and trainings; coordinators see no identity at all.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.api.auth import IDENTIFYING_ROLES
from hub.api.common import local_today, member_age
from hub.api.schemas import (
    BadgePublic,
    JobPublic,
    MemberBrief,
    MemberPublic,
    MemberTrainingPublic,
    SessionPublic,
)
from hub.db.models import (
    Badge,
    MachineJob,
    Member,
    MemberTraining,
    Role,
    Training,
    UsageSession,
)
from hub.policy.model import PolicyConfig
from hub.settings import HubSettings

STAFF_VIEW_ROLES = frozenset({Role.ADMIN, Role.FABMANAGER, Role.ANIMATOR})


def training_names(db: Session) -> dict[str, str]:
    return {k: v for k, v in db.execute(select(Training.id, Training.name))}


def member_trainings(
    rows: list[MemberTraining], names: dict[str, str], cfg: PolicyConfig
) -> list[MemberTrainingPublic]:
    today = local_today(cfg.tz)
    return [
        MemberTrainingPublic(
            training_id=t.training_id,
            name=names.get(t.training_id, t.training_id),
            granted_on=t.granted_on,
            expires_on=t.expires_on,
            valid=t.expires_on is None or t.expires_on >= today,
        )
        for t in sorted(rows, key=lambda t: t.training_id)
    ]


def badge_public(badge: Badge) -> BadgePublic:
    return BadgePublic(
        id=badge.id,
        member_id=badge.member_id,
        fingerprint=badge.hash[:12],
        label=badge.label,
        created_at=badge.created_at,
        revoked_at=badge.revoked_at,
        active=badge.revoked_at is None,
    )


def member_public(member: Member, names: dict[str, str], cfg: PolicyConfig) -> MemberPublic:
    age, group = member_age(member.birth_year, member.birth_month, cfg)
    return MemberPublic(
        id=member.id,
        display_name=member.display_name,
        first_name=member.first_name,
        birth_year=member.birth_year,
        birth_month=member.birth_month,
        age=age,
        age_group=group,
        programmes=member.programme_ids,
        role=member.role,
        status=member.status,
        gender=member.gender,
        consent_at=member.consent_at,
        consent_recorded_by=member.consent_recorded_by,
        consent_scope=list(member.consent_scope or []),
        consent_missing=age < cfg.consent_age and member.consent_at is None,
        created_at=member.created_at,
        trainings=member_trainings(member.trainings, names, cfg),
        badges=[badge_public(b) for b in sorted(member.badges, key=lambda b: b.id)],
    )


def member_brief(member: Member, names: dict[str, str], cfg: PolicyConfig) -> MemberBrief:
    _, group = member_age(member.birth_year, member.birth_month, cfg)
    return MemberBrief(
        id=member.id,
        first_name=member.first_name,
        age_group=group,
        status=member.status,
        role=member.role,
        trainings=member_trainings(member.trainings, names, cfg),
    )


def first_name(display_name: str | None) -> str | None:
    if display_name is None:
        return None
    return display_name.split()[0] if display_name.strip() else ""


def identity(
    member_id: int | None, display_name: str | None, role: Role
) -> tuple[int | None, str | None]:
    """``(member id, first name)`` as ``role`` may see them: the id for identifying roles,
    the first name for staff, nothing for the others."""
    return (
        member_id if role in IDENTIFYING_ROLES else None,
        first_name(display_name) if role in STAFF_VIEW_ROLES else None,
    )


def session_public(row: UsageSession, display_name: str | None, role: Role) -> SessionPublic:
    """A session as ``role`` may see it (see :func:`identity`)."""
    member_id, name = identity(row.member_id, display_name, role)
    return SessionPublic(
        id=row.id,
        machine_id=row.machine_id,
        zone_id=row.zone_id,
        edge_id=row.edge_id,
        member_id=member_id,
        first_name=name,
        age_group=row.age_group,
        programmes=list(row.programmes or []),
        machine_kind=row.machine_kind,
        offline=row.offline,
        staff=row.staff,
        started_at=row.started_at,
        granted_until=row.granted_until,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
        used_s=row.used_s,
        present_s=row.present_s,
        run_s=row.run_s,
        open=row.ended_at is None,
    )


def job_public(
    row: MachineJob, display_name: str | None, role: Role, settings: HubSettings
) -> JobPublic:
    """A job as ``role`` may see it (see :func:`identity`), with its filament's weight."""
    member_id, name = identity(row.member_id, display_name, role)
    return JobPublic(
        id=row.id,
        machine_id=row.machine_id,
        zone_id=row.zone_id,
        session_id=row.session_id,
        member_id=member_id,
        first_name=name,
        age_group=row.age_group,
        job=row.job,
        result=row.result,
        duration_s=row.duration_s,
        filament_mm=row.filament_mm,
        filament_g=(
            round(settings.filament_grams(row.filament_mm), 1)
            if row.filament_mm is not None
            else None
        ),
        filament_estimated=row.filament_estimated,
        ended_at=row.ended_at,
        controller_user=row.controller_user if role in STAFF_VIEW_ROLES else None,
    )
