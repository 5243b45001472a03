"""Zones, programmes and trainings (tags ``zones``, ``programmes``, ``trainings``).

Reading is open to staff and coordinators; writing is for admins and goes through
:class:`hub.api.writes.ReferenceWrite`, which commits and tells the live hub so that
edges get fresh policy snapshots.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, status
from sqlalchemy import func, select

from hub.api.auth import Capability
from hub.api.common import conflict, get_or_404
from hub.api.deps import SessionDep, allow
from hub.api.schemas import (
    Ident,
    ProgrammeCreate,
    ProgrammePublic,
    ProgrammeUpdate,
    TrainingCreate,
    TrainingPublic,
    TrainingUpdate,
    ZoneCreate,
    ZonePublic,
    ZoneUpdate,
)
from hub.api.writes import ReferenceWriteDep
from hub.db.models import (
    Machine,
    MachineTraining,
    MemberProgramme,
    MemberTraining,
    Programme,
    Slot,
    SlotException,
    Training,
    Zone,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api")

READ = [allow(Capability.REFERENCE_READ)]
WRITE = [allow(Capability.REFERENCE_WRITE)]

# --------------------------------------------------------------------------- zones


@router.get(
    "/zones",
    response_model=list[ZonePublic],
    tags=["zones"],
    summary="List zones",
    dependencies=READ,
)
def list_zones(db: SessionDep) -> list[Zone]:
    return list(db.scalars(select(Zone).order_by(Zone.id)))


@router.post(
    "/zones",
    response_model=ZonePublic,
    status_code=status.HTTP_201_CREATED,
    tags=["zones"],
    summary="Create a zone",
    dependencies=WRITE,
)
def create_zone(body: ZoneCreate, write: ReferenceWriteDep) -> Zone:
    zone = write.create(Zone(**body.model_dump()), f"La zone {body.id} existe déjà", key=body.id)
    log.info("zone %s created", zone.id)
    return zone


@router.get(
    "/zones/{zone_id}",
    response_model=ZonePublic,
    tags=["zones"],
    summary="One zone",
    dependencies=READ,
)
def get_zone(zone_id: Ident, db: SessionDep) -> Zone:
    return get_or_404(db, Zone, zone_id, "Zone")


@router.patch(
    "/zones/{zone_id}",
    response_model=ZonePublic,
    tags=["zones"],
    summary="Edit a zone",
    dependencies=WRITE,
)
def update_zone(zone_id: Ident, body: ZoneUpdate, write: ReferenceWriteDep) -> Zone:
    return write.update(write.get(Zone, zone_id, "Zone"), body.changes())


@router.delete(
    "/zones/{zone_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["zones"],
    summary="Delete a zone (its slots, exceptions and quotas go with it)",
    dependencies=WRITE,
)
def delete_zone(zone_id: Ident, write: ReferenceWriteDep) -> None:
    zone = write.get(Zone, zone_id, "Zone")
    machines = write.db.scalar(
        select(func.count()).select_from(Machine).where(Machine.zone_id == zone_id)
    )
    if machines:
        conflict(f"La zone contient encore {machines} machine(s) : déplacez-les ou supprimez-les")
    write.delete(zone, "La zone est encore utilisée")
    log.info("zone %s deleted", zone_id)


# --------------------------------------------------------------------------- programmes


@router.get(
    "/programmes",
    response_model=list[ProgrammePublic],
    tags=["programmes"],
    summary="List programmes",
    dependencies=READ,
)
def list_programmes(db: SessionDep) -> list[Programme]:
    return list(db.scalars(select(Programme).order_by(Programme.id)))


@router.post(
    "/programmes",
    response_model=ProgrammePublic,
    status_code=status.HTTP_201_CREATED,
    tags=["programmes"],
    summary="Create a programme",
    dependencies=WRITE,
)
def create_programme(body: ProgrammeCreate, write: ReferenceWriteDep) -> Programme:
    return write.create(
        Programme(**body.model_dump()), f"Le programme {body.id} existe déjà", key=body.id
    )


@router.get(
    "/programmes/{programme_id}",
    response_model=ProgrammePublic,
    tags=["programmes"],
    summary="One programme",
    dependencies=READ,
)
def get_programme(programme_id: Ident, db: SessionDep) -> Programme:
    return get_or_404(db, Programme, programme_id, "Programme")


@router.patch(
    "/programmes/{programme_id}",
    response_model=ProgrammePublic,
    tags=["programmes"],
    summary="Rename a programme",
    dependencies=WRITE,
)
def update_programme(
    programme_id: Ident, body: ProgrammeUpdate, write: ReferenceWriteDep
) -> Programme:
    return write.update(write.get(Programme, programme_id, "Programme"), body.changes())


@router.delete(
    "/programmes/{programme_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["programmes"],
    summary="Delete an unused programme",
    dependencies=WRITE,
)
def delete_programme(programme_id: Ident, write: ReferenceWriteDep) -> None:
    db = write.db
    programme = write.get(Programme, programme_id, "Programme")
    members = db.scalar(
        select(func.count())
        .select_from(MemberProgramme)
        .where(MemberProgramme.programme_id == programme_id)
    )
    audiences = sum(
        programme_id in (row or [])
        for row in [
            *db.scalars(select(Slot.programmes)),
            *db.scalars(select(SlotException.programmes)),
        ]
    )
    if members or audiences:
        conflict(
            f"Le programme est encore utilisé par {members} membre(s) et {audiences} "
            "créneau(x) ou exception(s)"
        )
    write.delete(programme, "Le programme est encore utilisé")


# --------------------------------------------------------------------------- trainings


@router.get(
    "/trainings",
    response_model=list[TrainingPublic],
    tags=["trainings"],
    summary="List trainings",
    dependencies=READ,
)
def list_trainings(db: SessionDep) -> list[Training]:
    return list(db.scalars(select(Training).order_by(Training.id)))


@router.post(
    "/trainings",
    response_model=TrainingPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["trainings"],
    summary="Create a training",
    dependencies=WRITE,
)
def create_training(body: TrainingCreate, write: ReferenceWriteDep) -> Training:
    return write.create(
        Training(**body.model_dump()), f"La formation {body.id} existe déjà", key=body.id
    )


@router.get(
    "/trainings/{training_id}",
    response_model=TrainingPublic,
    tags=["trainings"],
    summary="One training",
    dependencies=READ,
)
def get_training(training_id: Ident, db: SessionDep) -> Training:
    return get_or_404(db, Training, training_id, "Formation")


@router.patch(
    "/trainings/{training_id}",
    response_model=TrainingPublic,
    tags=["trainings"],
    summary="Edit a training (existing grants keep their expiry)",
    dependencies=WRITE,
)
def update_training(training_id: Ident, body: TrainingUpdate, write: ReferenceWriteDep) -> Training:
    return write.update(write.get(Training, training_id, "Formation"), body.changes())


@router.delete(
    "/trainings/{training_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["trainings"],
    summary="Delete a training no machine or member uses",
    dependencies=WRITE,
)
def delete_training(training_id: Ident, write: ReferenceWriteDep) -> None:
    db = write.db
    training = write.get(Training, training_id, "Formation")
    machines = db.scalar(
        select(func.count())
        .select_from(MachineTraining)
        .where(MachineTraining.training_id == training_id)
    )
    members = db.scalar(
        select(func.count())
        .select_from(MemberTraining)
        .where(MemberTraining.training_id == training_id)
    )
    if machines or members:
        conflict(
            f"La formation est encore exigée par {machines} machine(s) "
            f"et accordée à {members} membre(s)"
        )
    write.delete(training, "La formation est encore utilisée")
