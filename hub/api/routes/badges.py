"""Badges (tag ``badges``): enrol, relabel, revoke, delete.

A raw UID sent to the API is hashed at once with the site secret
(:func:`protocol.ids.badge_hash`) and never stored or logged; edges send the same
keyed hash, so a badge tapped on any reader can be enrolled by its hash too.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import select

from hub.api.auth import Capability
from hub.api.common import conflict, field_error, get_or_404, invalid
from hub.api.deps import CurrentAccount, SessionDep, SettingsDep, allow
from hub.api.schemas import BadgeCreate, BadgePublic, BadgeUpdate, DbId
from hub.api.views import badge_public
from hub.api.writes import ReferenceWriteDep, apply_changes
from hub.db.models import Badge, Member
from protocol.ids import badge_hash
from protocol.messages import utcnow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/badges", tags=["badges"])

DUPLICATE = "Ce badge est déjà enregistré"


@router.get(
    "",
    response_model=list[BadgePublic],
    summary="List badges",
    dependencies=[allow(Capability.BADGES_READ)],
)
def list_badges(
    db: SessionDep,
    member_id: Annotated[DbId | None, Query()] = None,
    active: bool | None = None,
) -> list[BadgePublic]:
    query = select(Badge).order_by(Badge.id)
    if member_id is not None:
        query = query.where(Badge.member_id == member_id)
    if active is not None:
        query = query.where(Badge.revoked_at.is_(None) if active else Badge.revoked_at.is_not(None))
    return [badge_public(b) for b in db.scalars(query)]


@router.post(
    "",
    response_model=BadgePublic,
    status_code=status.HTTP_201_CREATED,
    summary="Enrol a badge for a member (raw UID or keyed hash)",
    responses={409: {"description": "the badge is already enrolled"}},
    dependencies=[allow(Capability.BADGES_WRITE)],
)
def enrol_badge(
    body: BadgeCreate,
    write: ReferenceWriteDep,
    settings: SettingsDep,
    principal: CurrentAccount,
) -> BadgePublic:
    db = write.db
    if db.get(Member, body.member_id) is None:
        field_error(
            ("body", "member_id"), f"Membre {body.member_id} introuvable", "unknown_reference"
        )
    if body.uid is not None:
        try:
            digest = badge_hash(settings.site_secret_bytes, body.uid)
        except ValueError as err:  # separators only, after normalisation
            raise invalid(
                ("body", "uid"), "Identifiant de badge invalide (chiffres hexadécimaux attendus)"
            ) from err
    else:
        assert body.hash is not None  # the model guarantees one of the two
        digest = body.hash
    if db.scalar(select(Badge.id).where(Badge.hash == digest)) is not None:
        conflict(DUPLICATE)
    badge = write.create(Badge(hash=digest, member_id=body.member_id, label=body.label), DUPLICATE)
    log.info(
        "badge %d enrolled for member %d by account %d",
        badge.id,
        badge.member_id,
        principal.account_id,
    )
    return badge_public(badge)


@router.get(
    "/{badge_id}",
    response_model=BadgePublic,
    summary="One badge",
    dependencies=[allow(Capability.BADGES_READ)],
)
def get_badge(badge_id: DbId, db: SessionDep) -> BadgePublic:
    return badge_public(get_or_404(db, Badge, badge_id, "Badge"))


@router.patch(
    "/{badge_id}",
    response_model=BadgePublic,
    summary="Relabel a badge",
    dependencies=[allow(Capability.BADGES_WRITE)],
)
def update_badge(badge_id: DbId, body: BadgeUpdate, db: SessionDep) -> BadgePublic:
    """Labels are for staff only: the policy does not read them, the hub is not told."""
    return badge_public(apply_changes(db, get_or_404(db, Badge, badge_id, "Badge"), body.changes()))


@router.post(
    "/{badge_id}/revoke",
    response_model=BadgePublic,
    summary="Revoke a badge (lost, stolen, returned); edges learn it from the next snapshot",
    dependencies=[allow(Capability.BADGES_WRITE)],
)
def revoke_badge(
    badge_id: DbId, write: ReferenceWriteDep, principal: CurrentAccount
) -> BadgePublic:
    badge = write.get(Badge, badge_id, "Badge")
    if badge.revoked_at is not None:
        conflict("Ce badge est déjà révoqué")
    write.update(badge, {"revoked_at": utcnow()})
    log.info("badge %d revoked by account %d", badge_id, principal.account_id)
    return badge_public(badge)


@router.delete(
    "/{badge_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a badge row, e.g. to enrol the card for someone else",
    dependencies=[allow(Capability.BADGES_DELETE)],
)
def delete_badge(badge_id: DbId, write: ReferenceWriteDep) -> None:
    write.delete(write.get(Badge, badge_id, "Badge"))
