"""Weekly slots, dated exceptions and quotas (tags ``slots``, ``quotas``).

Audiences name age groups from the configured bands and known programmes; both are
checked here so that a typo never silently closes a slot to everyone. A zone's
recommended quotas (healthy-gaming defaults from the hub's settings) are created only
on request and never overwrite a quota that exists.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.api.auth import Capability
from hub.api.common import (
    conflict,
    get_or_404,
    invalid,
    require_age_groups,
    require_refs,
)
from hub.api.deps import CurrentAccount, PolicyDep, SessionDep, SettingsDep, allow
from hub.api.schemas import (
    DbId,
    ExceptionCreate,
    ExceptionPublic,
    ExceptionUpdate,
    Ident,
    QuotaCreate,
    QuotaPublic,
    QuotaUpdate,
    SlotCreate,
    SlotPublic,
    SlotUpdate,
    check_break,
    check_exception_hours,
)
from hub.api.writes import ReferenceWriteDep
from hub.db.models import ExceptionKind, Programme, Quota, Slot, SlotException, Zone
from hub.policy.model import PolicyConfig

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api")

READ = [allow(Capability.REFERENCE_READ)]
WRITE = [allow(Capability.REFERENCE_WRITE)]


def _check_refs(db: Session, values: dict[str, Any], cfg: PolicyConfig) -> None:
    if values.get("zone_id") is not None:
        require_refs(db, Zone, [values["zone_id"]], ("body", "zone_id"), "Zone")
    if "programmes" in values:
        require_refs(db, Programme, values["programmes"], ("body", "programmes"), "Programme")
    if "age_groups" in values:
        require_age_groups(values["age_groups"], ("body", "age_groups"), cfg)


def _rule(check: Any, *args: Any) -> None:
    """Run a cross-field check on merged values; its ValueError becomes a 422 on the body."""
    try:
        check(*args)
    except ValueError as err:
        raise invalid(("body",), str(err)) from err


# --------------------------------------------------------------------------- slots


@router.get(
    "/slots",
    response_model=list[SlotPublic],
    tags=["slots"],
    summary="List weekly slots",
    dependencies=READ,
)
def list_slots(db: SessionDep, zone_id: Ident | None = None) -> list[Slot]:
    query = select(Slot).order_by(Slot.zone_id, Slot.weekday, Slot.start, Slot.id)
    if zone_id is not None:
        query = query.where(Slot.zone_id == zone_id)
    return list(db.scalars(query))


@router.post(
    "/slots",
    response_model=SlotPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["slots"],
    summary="Add a weekly slot",
    dependencies=WRITE,
)
def create_slot(body: SlotCreate, write: ReferenceWriteDep, cfg: PolicyDep) -> Slot:
    values = body.model_dump()
    _check_refs(write.db, values, cfg)
    return write.create(Slot(**values), "Créneau refusé par la base de données")


@router.get(
    "/slots/{slot_id}",
    response_model=SlotPublic,
    tags=["slots"],
    summary="One slot",
    dependencies=READ,
)
def get_slot(slot_id: DbId, db: SessionDep) -> Slot:
    return get_or_404(db, Slot, slot_id, "Créneau")


@router.patch(
    "/slots/{slot_id}",
    response_model=SlotPublic,
    tags=["slots"],
    summary="Edit a slot",
    dependencies=WRITE,
)
def update_slot(slot_id: DbId, body: SlotUpdate, write: ReferenceWriteDep, cfg: PolicyDep) -> Slot:
    slot = write.get(Slot, slot_id, "Créneau")
    changes = body.changes()
    _check_refs(write.db, changes, cfg)
    if changes.get("start", slot.start) == changes.get("end", slot.end):
        raise invalid(("body",), "Le créneau doit avoir une durée (début et fin différents)")
    return write.update(slot, changes)


@router.delete(
    "/slots/{slot_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["slots"],
    summary="Delete a slot",
    dependencies=WRITE,
)
def delete_slot(slot_id: DbId, write: ReferenceWriteDep) -> None:
    write.delete(write.get(Slot, slot_id, "Créneau"))


# --------------------------------------------------------------------------- exceptions


@router.get(
    "/slot-exceptions",
    response_model=list[ExceptionPublic],
    tags=["slots"],
    summary="List dated closures and special openings",
    dependencies=READ,
)
def list_exceptions(db: SessionDep, zone_id: Ident | None = None) -> list[SlotException]:
    query = select(SlotException).order_by(SlotException.day, SlotException.id)
    if zone_id is not None:
        query = query.where(SlotException.zone_id == zone_id)
    return list(db.scalars(query))


@router.post(
    "/slot-exceptions",
    response_model=ExceptionPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["slots"],
    summary="Add a closure or a special opening",
    dependencies=WRITE,
)
def create_exception(
    body: ExceptionCreate, write: ReferenceWriteDep, cfg: PolicyDep
) -> SlotException:
    values = body.model_dump()
    _check_refs(write.db, values, cfg)
    return write.create(SlotException(**values), "Exception refusée par la base de données")


@router.get(
    "/slot-exceptions/{exception_id}",
    response_model=ExceptionPublic,
    tags=["slots"],
    summary="One exception",
    dependencies=READ,
)
def get_exception(exception_id: DbId, db: SessionDep) -> SlotException:
    return get_or_404(db, SlotException, exception_id, "Exception")


@router.patch(
    "/slot-exceptions/{exception_id}",
    response_model=ExceptionPublic,
    tags=["slots"],
    summary="Edit an exception",
    dependencies=WRITE,
)
def update_exception(
    exception_id: DbId, body: ExceptionUpdate, write: ReferenceWriteDep, cfg: PolicyDep
) -> SlotException:
    row = write.get(SlotException, exception_id, "Exception")
    changes = body.changes()
    _check_refs(write.db, changes, cfg)
    merged = {k: changes.get(k, getattr(row, k)) for k in ("kind", "start", "end")}
    _rule(check_exception_hours, merged["kind"], merged["start"], merged["end"])
    return write.update(row, changes)


@router.delete(
    "/slot-exceptions/{exception_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["slots"],
    summary="Delete an exception",
    dependencies=WRITE,
)
def delete_exception(exception_id: DbId, write: ReferenceWriteDep) -> None:
    write.delete(write.get(SlotException, exception_id, "Exception"))


# --------------------------------------------------------------------------- quotas


@router.get(
    "/quotas",
    response_model=list[QuotaPublic],
    tags=["quotas"],
    summary="List time quotas and forced breaks",
    dependencies=READ,
)
def list_quotas(db: SessionDep, zone_id: Ident | None = None) -> list[Quota]:
    query = select(Quota).order_by(Quota.zone_id, Quota.age_group)
    if zone_id is not None:
        query = query.where(Quota.zone_id == zone_id)
    return list(db.scalars(query))


@router.post(
    "/quotas",
    response_model=QuotaPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["quotas"],
    summary="Set the quota of an age group in a zone",
    dependencies=WRITE,
)
def create_quota(body: QuotaCreate, write: ReferenceWriteDep, cfg: PolicyDep) -> Quota:
    require_refs(write.db, Zone, [body.zone_id], ("body", "zone_id"), "Zone")
    require_age_groups([body.age_group], ("body", "age_group"), cfg)
    existing = write.db.scalar(
        select(Quota.id).where(Quota.zone_id == body.zone_id, Quota.age_group == body.age_group)
    )
    if existing is not None:
        conflict(f"Un quota existe déjà pour {body.age_group} dans cette zone (n° {existing})")
    return write.create(
        Quota(**body.model_dump()), "Un quota existe déjà pour cette tranche d'âge dans cette zone"
    )


@router.get(
    "/quotas/{quota_id}",
    response_model=QuotaPublic,
    tags=["quotas"],
    summary="One quota",
    dependencies=READ,
)
def get_quota(quota_id: DbId, db: SessionDep) -> Quota:
    return get_or_404(db, Quota, quota_id, "Quota")


@router.patch(
    "/quotas/{quota_id}",
    response_model=QuotaPublic,
    tags=["quotas"],
    summary="Edit a quota",
    dependencies=WRITE,
)
def update_quota(quota_id: DbId, body: QuotaUpdate, write: ReferenceWriteDep) -> Quota:
    quota = write.get(Quota, quota_id, "Quota")
    changes = body.changes()
    _rule(
        check_break,
        changes.get("break_after_min", quota.break_after_min),
        changes.get("break_min", quota.break_min),
    )
    return write.update(quota, changes)


@router.delete(
    "/quotas/{quota_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["quotas"],
    summary="Delete a quota",
    dependencies=WRITE,
)
def delete_quota(quota_id: DbId, write: ReferenceWriteDep) -> None:
    write.delete(write.get(Quota, quota_id, "Quota"))


def _zone_age_groups(db: Session, zone_id: str, cfg: PolicyConfig) -> list[str]:
    """Age groups the zone's weekly slots and special openings admit, in band order.

    An audience without age groups admits every band; so does a zone with no slot
    or opening yet (nobody is restricted so far).
    """
    audiences = list(db.scalars(select(Slot.age_groups).where(Slot.zone_id == zone_id)))
    audiences += db.scalars(
        select(SlotException.age_groups).where(
            SlotException.kind == ExceptionKind.OPENING,
            (SlotException.zone_id == zone_id) | SlotException.zone_id.is_(None),
        )
    )
    bands = [band.name for band in cfg.age_bands]
    if not audiences or any(not groups for groups in audiences):
        return bands
    admitted = {group for groups in audiences for group in groups}
    return [band for band in bands if band in admitted]


@router.post(
    "/zones/{zone_id}/quotas/recommended",
    response_model=list[QuotaPublic],
    status_code=status.HTTP_201_CREATED,
    tags=["quotas"],
    summary="Create the recommended (healthy-gaming) quotas the zone's age groups lack",
    responses={200: {"description": "every age group already has a quota: nothing created"}},
    dependencies=[allow(Capability.QUOTAS_RECOMMEND)],
)
def create_recommended_quotas(
    zone_id: Ident,
    write: ReferenceWriteDep,
    cfg: PolicyDep,
    settings: SettingsDep,
    principal: CurrentAccount,
    response: Response,
) -> list[Quota]:
    """For each age group the zone admits that has a recommendation in the hub's
    ``gaming_defaults`` and no quota yet, create that quota; answer the created rows.
    Existing quotas are left exactly as they are."""
    db = write.db
    write.get(Zone, zone_id, "Zone")
    existing = set(db.scalars(select(Quota.age_group).where(Quota.zone_id == zone_id)))
    created: list[Quota] = []
    for group in _zone_age_groups(db, zone_id, cfg):
        rule = settings.gaming_defaults.get(group)
        if rule is None or group in existing:
            continue
        created.append(
            Quota(
                zone_id=zone_id,
                age_group=group,
                daily_min=rule.daily_min,
                break_after_min=rule.break_after_min,
                break_min=rule.break_min,
            )
        )
    if not created:
        response.status_code = status.HTTP_200_OK
        return []
    db.add_all(created)
    write.commit("Un quota a été créé entre-temps pour cette zone : réessayez")
    log.info(
        "account %d created recommended quotas %s in zone %s",
        principal.account_id,
        [q.age_group for q in created],
        zone_id,
    )
    return created
