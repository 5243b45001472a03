"""Machines: configuration (admins) and floor commands (staff) (tag ``machines``).

Maintenance is both a stored flag (the policy refuses access, snapshots carry it) and a
command to the edge; pause/resume/cancel only go to the edge through ``HubControl``.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.api.auth import Capability, Principal
from hub.api.common import get_or_404, require_refs
from hub.api.deps import ControlDep, CurrentAccount, SessionDep, allow
from hub.api.outcomes import CommandFailed, await_outcome
from hub.api.schemas import (
    CommandRequest,
    CommandResult,
    Ident,
    MachineCreate,
    MachinePublic,
    MachineUpdate,
    MaintenanceRequest,
)
from hub.api.writes import ReferenceWriteDep
from hub.db.models import Machine, MachineTraining, Training, Zone
from protocol.messages import MachineAction, Outcome

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/machines", tags=["machines"])


def _require_trainings(db: Session, training_ids: list[str]) -> None:
    require_refs(db, Training, training_ids, ("body", "required_trainings"), "Formation")


def _set_trainings(machine: Machine, training_ids: list[str]) -> None:
    current = {t.training_id: t for t in machine.trainings}
    machine.trainings = [
        current.get(tid) or MachineTraining(machine_id=machine.id, training_id=tid)
        for tid in training_ids
    ]


@router.get(
    "",
    response_model=list[MachinePublic],
    summary="List machines",
    dependencies=[allow(Capability.REFERENCE_READ)],
)
def list_machines(db: SessionDep, zone_id: Ident | None = None) -> list[Machine]:
    query = select(Machine).order_by(Machine.id)
    if zone_id is not None:
        query = query.where(Machine.zone_id == zone_id)
    return list(db.scalars(query))


@router.post(
    "",
    response_model=MachinePublic,
    status_code=status.HTTP_201_CREATED,
    summary="Add a machine",
    dependencies=[allow(Capability.REFERENCE_WRITE)],
)
def create_machine(body: MachineCreate, write: ReferenceWriteDep) -> Machine:
    exists = f"La machine {body.id} existe déjà"
    write.absent(Machine, body.id, exists)
    require_refs(write.db, Zone, [body.zone_id], ("body", "zone_id"), "Zone")
    _require_trainings(write.db, body.required_trainings)
    machine = Machine(**body.model_dump(exclude={"required_trainings"}))
    _set_trainings(machine, body.required_trainings)
    write.create(machine, exists)
    log.info("machine %s created on edge %s", machine.id, machine.edge_id)
    return machine


@router.get(
    "/{machine_id}",
    response_model=MachinePublic,
    summary="One machine",
    dependencies=[allow(Capability.REFERENCE_READ)],
)
def get_machine(machine_id: Ident, db: SessionDep) -> Machine:
    return get_or_404(db, Machine, machine_id, "Machine")


@router.patch(
    "/{machine_id}",
    response_model=MachinePublic,
    summary="Edit a machine",
    dependencies=[allow(Capability.REFERENCE_WRITE)],
)
def update_machine(machine_id: Ident, body: MachineUpdate, write: ReferenceWriteDep) -> Machine:
    machine = write.get(Machine, machine_id, "Machine")
    changes = body.changes()
    if "zone_id" in changes:
        require_refs(write.db, Zone, [changes["zone_id"]], ("body", "zone_id"), "Zone")
    if "required_trainings" in changes:
        trainings = changes.pop("required_trainings")
        _require_trainings(write.db, trainings)
        _set_trainings(machine, trainings)
    return write.update(machine, changes)


@router.delete(
    "/{machine_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a machine (its usage history stays)",
    dependencies=[allow(Capability.REFERENCE_WRITE)],
)
def delete_machine(machine_id: Ident, write: ReferenceWriteDep) -> None:
    write.delete(write.get(Machine, machine_id, "Machine"), "La machine est encore utilisée")
    log.info("machine %s deleted", machine_id)


@router.post(
    "/{machine_id}/maintenance",
    response_model=CommandResult,
    summary="Put a machine in maintenance, or back in service",
    dependencies=[allow(Capability.MACHINE_COMMAND)],
)
def set_maintenance(
    machine_id: Ident,
    body: MaintenanceRequest,
    write: ReferenceWriteDep,
    control: ControlDep,
    principal: CurrentAccount,
) -> CommandResult:
    """Store the flag (kept across restarts, refused by the policy) and tell the edge now."""
    machine = write.get(Machine, machine_id, "Machine")
    write.update(
        machine, {"maintenance": body.on, "maintenance_note": body.note if body.on else ""}
    )
    action = MachineAction.MAINTENANCE_ON if body.on else MachineAction.MAINTENANCE_OFF
    pending = control.machine_command(machine_id, action, by=principal.account_id)
    outcome = pending.wait() if pending is not None else None
    _log_command(principal, machine_id, action, outcome.outcome if outcome else None)
    return CommandResult(
        machine_id=machine_id,
        action=action,
        delivered=outcome is not None,
        outcome=outcome.outcome if outcome else None,
        code=outcome.code if outcome else "",
        reason=outcome.reason if outcome else "",
    )


@router.post(
    "/{machine_id}/commands",
    response_model=CommandResult,
    summary="Pause, resume or cancel the machine's job, or re-arm a laser",
    responses={
        409: {"description": "the edge refused (``code``, French ``detail``) or it expired"},
        503: {"description": "the machine's edge cannot be reached"},
        504: {"description": "the edge did not answer in time (``code`` ``no_answer``)"},
    },
    dependencies=[allow(Capability.MACHINE_COMMAND)],
)
def command(
    machine_id: Ident,
    body: CommandRequest,
    db: SessionDep,
    control: ControlDep,
    principal: CurrentAccount,
) -> CommandResult:
    """Waits for the edge's answer (see :mod:`hub.api.outcomes`): 200 once applied."""
    get_or_404(db, Machine, machine_id, "Machine")
    pending = control.machine_command(machine_id, body.action, by=principal.account_id)
    try:
        await_outcome(pending, "La machine est injoignable pour le moment : commande non transmise")
    except CommandFailed as failed:
        _log_command(principal, machine_id, body.action, failed.code)
        raise
    _log_command(principal, machine_id, body.action, Outcome.APPLIED)
    return CommandResult(
        machine_id=machine_id, action=body.action, delivered=True, outcome=Outcome.APPLIED
    )


def _log_command(principal: Principal, machine_id: str, action: str, outcome: str | None) -> None:
    log.info(
        "account %d sent %s to machine %s: %s",
        principal.account_id,
        action,
        machine_id,
        outcome or "no answer",
    )
