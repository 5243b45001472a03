"""Members, their trainings, and their data rights (tags ``members``, ``privacy``).

Admins manage members; fabmanagers read them in full and grant trainings; animators
read first names, age groups and trainings only. Export and erasure implement the
rights of access and erasure (DESIGN §4): erasure deletes the member, their badges,
trainings, programmes, staff presence, accounts and access-log rows, and keeps their
usage sessions and print jobs pseudonymised through the retention job's code path
(hub.retention: no member id, no badge hash, no job file name; age group, programmes,
gender and a month pseudonym kept for funders' totals). Each erasure leaves an
``erasure_tombstone`` (when, by which account, how many rows) that names nobody.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy import Table, delete, func, or_, select
from sqlalchemy.orm import Session

from hub.api.auth import Capability, Principal
from hub.api.common import (
    commit,
    conflict,
    expiry,
    field_error,
    get_or_404,
    local_today,
    not_found,
    require_refs,
)
from hub.api.deps import ControlDep, CurrentAccount, PolicyDep, SessionDep, allow
from hub.api.schemas import (
    MAX_INT,
    DbId,
    Ident,
    MemberBrief,
    MemberCreate,
    MemberExport,
    MemberPublic,
    MemberTrainingPublic,
    MemberUpdate,
    Page,
    TrainingGrant,
)
from hub.api.views import member_brief, member_public, member_trainings, training_names
from hub.db.engine import checkpoint
from hub.db.models import (
    AccessLog,
    Account,
    ApiToken,
    Base,
    ConsentScope,
    EdgeEvent,
    ErasureTombstone,
    MachineJob,
    Member,
    MemberProgramme,
    MemberStatus,
    MemberTraining,
    Programme,
    Role,
    StaffPresence,
    Training,
    UsageSession,
)
from hub.policy.model import PolicyConfig
from hub.retention import Scrubbed, pseudonymise_sessions, scrub_jobs, scrub_member_events
from protocol.messages import utcnow

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/members")

#: Columns never exported (secrets, not personal data).
_NOT_EXPORTED = {("account", "password_hash")}


def _member(db: Session, member_id: int) -> Member:
    return get_or_404(db, Member, member_id, "Membre")


def _full_view(principal: Principal) -> bool:
    return principal.role in {Role.ADMIN, Role.FABMANAGER}


@router.get(
    "",
    response_model=Page[MemberPublic] | Page[MemberBrief],
    tags=["members"],
    summary="List members (animators: first names and trainings only)",
    dependencies=[allow(Capability.MEMBERS_READ)],
)
def list_members(
    db: SessionDep,
    principal: CurrentAccount,
    cfg: PolicyDep,
    q: Annotated[str | None, Query(max_length=100, description="part of the name")] = None,
    programme: Ident | None = None,
    member_status: Annotated[MemberStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> Page[MemberPublic] | Page[MemberBrief]:
    query = select(Member)
    if q:
        query = query.where(func.lower(Member.display_name).contains(q.lower(), autoescape=True))
    if programme is not None:
        query = query.where(
            Member.id.in_(
                select(MemberProgramme.member_id).where(MemberProgramme.programme_id == programme)
            )
        )
    if member_status is not None:
        query = query.where(Member.status == member_status)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(db.scalars(query.order_by(Member.id).limit(limit).offset(offset)))
    names = training_names(db)
    if _full_view(principal):
        return Page[MemberPublic](
            items=[member_public(m, names, cfg) for m in rows],
            total=total,
            limit=limit,
            offset=offset,
        )
    return Page[MemberBrief](
        items=[member_brief(m, names, cfg) for m in rows], total=total, limit=limit, offset=offset
    )


@router.post(
    "",
    response_model=MemberPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["members"],
    summary="Register a member",
    dependencies=[allow(Capability.MEMBERS_WRITE)],
)
def create_member(
    body: MemberCreate,
    db: SessionDep,
    control: ControlDep,
    cfg: PolicyDep,
    principal: CurrentAccount,
) -> MemberPublic:
    require_refs(db, Programme, body.programmes, ("body", "programmes"), "Programme")
    member = Member(**body.model_dump(exclude={"programmes", "consent_scope"}))
    _record_consent(member, body.consent_at, body.consent_scope, principal)
    member.programmes = [MemberProgramme(programme_id=p) for p in body.programmes]
    db.add(member)
    commit(db, "Membre refusé par la base de données")
    control.reference_changed()
    log.info("member %d registered", member.id)
    return member_public(member, training_names(db), cfg)


def _record_consent(
    member: Member,
    consent_at: date | None,
    scope: list[ConsentScope] | None,
    principal: Principal,
) -> None:
    """A guardian's consent with who recorded it and what it covers (access by default);
    withdrawing it (no date) clears all three."""
    member.consent_at = consent_at
    if consent_at is None:
        member.consent_recorded_by = None
        member.consent_scope = []
        return
    member.consent_recorded_by = principal.username
    member.consent_scope = [s.value for s in (scope or [ConsentScope.ACCESS])]


@router.get(
    "/{member_id}",
    response_model=MemberPublic | MemberBrief,
    tags=["members"],
    summary="One member (animators: first name and trainings only)",
    dependencies=[allow(Capability.MEMBERS_READ)],
)
def get_member(
    member_id: DbId, db: SessionDep, principal: CurrentAccount, cfg: PolicyDep
) -> MemberPublic | MemberBrief:
    member = _member(db, member_id)
    if _full_view(principal):
        return member_public(member, training_names(db), cfg)
    return member_brief(member, training_names(db), cfg)


@router.patch(
    "/{member_id}",
    response_model=MemberPublic,
    tags=["members"],
    summary="Edit a member (name, birth, programmes, role, status, consent)",
    dependencies=[allow(Capability.MEMBERS_WRITE)],
)
def update_member(
    member_id: DbId,
    body: MemberUpdate,
    db: SessionDep,
    control: ControlDep,
    cfg: PolicyDep,
    principal: CurrentAccount,
) -> MemberPublic:
    member = _member(db, member_id)
    changes = body.changes()
    if "consent_at" in changes or "consent_scope" in changes:
        consent = changes.pop("consent_at", member.consent_at)
        scope = changes.pop("consent_scope", None)
        if consent != member.consent_at or scope is not None:
            _record_consent(member, consent, scope, principal)
    year = changes.get("birth_year", member.birth_year)
    month = changes.get("birth_month", member.birth_month)
    today = utcnow().date()
    if (year, month) > (today.year, today.month):
        field_error(("body", "birth_month"), "La date de naissance ne peut pas être dans le futur")
    if "programmes" in changes:
        programmes = changes.pop("programmes")
        require_refs(db, Programme, programmes, ("body", "programmes"), "Programme")
        kept = {p.programme_id: p for p in member.programmes}
        member.programmes = [
            kept.get(p) or MemberProgramme(member_id=member.id, programme_id=p) for p in programmes
        ]
    for name, value in changes.items():
        setattr(member, name, value)
    commit(db, "Modification refusée")
    control.reference_changed()
    return member_public(member, training_names(db), cfg)


@router.delete(
    "/{member_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["members", "privacy"],
    summary="Delete a member; with erase=true, also erase their history",
    dependencies=[allow(Capability.MEMBERS_WRITE)],
)
def delete_member(
    member_id: DbId,
    db: SessionDep,
    control: ControlDep,
    principal: CurrentAccount,
    cfg: PolicyDep,
    erase: bool = False,
) -> None:
    """Without ``erase``, a member who has a usage or access history is kept (409)."""
    member = _member(db, member_id)
    if not erase:
        history = db.scalar(
            select(func.count())
            .select_from(UsageSession)
            .where(UsageSession.member_id == member_id)
        ) or db.scalar(
            select(func.count()).select_from(AccessLog).where(AccessLog.member_id == member_id)
        )
        if history:
            conflict(
                "Ce membre a un historique d'utilisation : suspendez-le, ou effacez ses données "
                "avec erase=true (ses sessions restent comptées de façon anonyme)"
            )
    _erase(db, member, principal, cfg)
    control.reference_changed()


@router.post(
    "/{member_id}/erase",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["privacy"],
    summary="Erase a member's data (right to erasure); usage stays as anonymous totals",
    dependencies=[allow(Capability.MEMBER_DATA)],
)
def erase_member(
    member_id: DbId, db: SessionDep, control: ControlDep, principal: CurrentAccount, cfg: PolicyDep
) -> None:
    _erase(db, _member(db, member_id), principal, cfg)
    control.reference_changed()


def _erase(db: Session, member: Member, principal: Principal, cfg: PolicyConfig) -> None:
    """Delete or pseudonymise every row about ``member``, in one transaction, through
    the retention job's code path (hub.retention); leave a tombstone naming nobody."""
    if principal.member_id == member.id:
        conflict("Vous ne pouvez pas effacer le membre lié à votre propre compte")
    member_id = member.id
    hashes = [b.hash for b in member.badges]
    scrubbed = Scrubbed()
    by_badge = AccessLog.badge_hash.in_(hashes) if hashes else None
    result = db.execute(
        delete(AccessLog).where(
            or_(AccessLog.member_id == member_id, *([by_badge] if by_badge is not None else []))
        )
    )
    scrubbed.add("access_log", int(getattr(result, "rowcount", 0) or 0))
    session_match = [UsageSession.member_id == member_id]
    if hashes:
        session_match.append(UsageSession.badge_hash.in_(hashes))
    pseudonymise_sessions(db, cfg.tz, or_(*session_match), scrubbed)
    scrub_jobs(
        db, db.scalars(select(MachineJob).where(MachineJob.member_id == member_id)), scrubbed
    )
    scrub_member_events(db, hashes, scrubbed)
    for table, query in (
        ("staff_presence", delete(StaffPresence).where(StaffPresence.member_id == member_id)),
        (
            "api_token",
            delete(ApiToken).where(
                ApiToken.account_id.in_(select(Account.id).where(Account.member_id == member_id))
            ),
        ),
        ("account", delete(Account).where(Account.member_id == member_id)),
    ):
        scrubbed.add(table, int(getattr(db.execute(query), "rowcount", 0) or 0))
    scrubbed.add("badge", len(hashes))
    scrubbed.add("member", 1)
    db.delete(member)
    db.add(
        ErasureTombstone(
            erased_by_account=principal.account_id,
            erased_by_username=principal.username,
            rows=dict(sorted(scrubbed.rows.items())),
        )
    )
    commit(db, "Effacement refusé par la base de données")
    checkpoint(db)  # the erased rows' old pages must not linger in SQLite's WAL
    log.info("a member was erased by account %d (%d rows)", principal.account_id, scrubbed.total)


@router.get(
    "/{member_id}/export",
    response_model=MemberExport,
    tags=["privacy"],
    summary="Export every row about a member (right of access, portability)",
    dependencies=[allow(Capability.MEMBER_DATA)],
)
def export_member(member_id: DbId, db: SessionDep, principal: CurrentAccount) -> MemberExport:
    """Walk every table holding a member reference (foreign key, badge hash column, or
    badge hash inside a journal event's body)."""
    member = _member(db, member_id)
    hashes = [b.hash for b in member.badges]
    tables: dict[str, list[dict[str, Any]]] = {}
    for table in Base.metadata.sorted_tables:
        conditions = [
            column == member_id
            for column in table.columns
            if any(fk.column.table.name == "member" for fk in column.foreign_keys)
        ]
        if table.name == "member":
            conditions.append(table.c.id == member_id)
        if hashes and "badge_hash" in table.c:
            conditions.append(table.c.badge_hash.in_(hashes))
        if hashes and table.name == "edge_event":
            conditions.append(EdgeEvent.body["badge"].as_string().in_(hashes))
        if conditions:
            tables[table.name] = _rows(db, table, conditions)
    log.info("member %d exported by account %d", member_id, principal.account_id)
    return MemberExport(member_id=member_id, exported_at=utcnow(), tables=tables)


def _rows(db: Session, table: Table, conditions: list[Any]) -> list[dict[str, Any]]:
    rows = db.execute(select(table).where(or_(*conditions)))
    return [
        {k: v for k, v in row._mapping.items() if (table.name, k) not in _NOT_EXPORTED}
        for row in rows
    ]


# --------------------------------------------------------------------------- trainings


@router.get(
    "/{member_id}/trainings",
    response_model=list[MemberTrainingPublic],
    tags=["members", "trainings"],
    summary="A member's trainings with their expiry",
    dependencies=[allow(Capability.MEMBERS_READ)],
)
def list_member_trainings(
    member_id: DbId, db: SessionDep, cfg: PolicyDep
) -> list[MemberTrainingPublic]:
    member = _member(db, member_id)
    return member_trainings(member.trainings, training_names(db), cfg)


@router.post(
    "/{member_id}/trainings/{training_id}",
    response_model=MemberTrainingPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["members", "trainings"],
    summary="Grant (or renew) a training; it expires after the training's validity",
    dependencies=[allow(Capability.TRAININGS_GRANT)],
)
def grant_training(
    member_id: DbId,
    training_id: Ident,
    db: SessionDep,
    control: ControlDep,
    principal: CurrentAccount,
    cfg: PolicyDep,
    body: TrainingGrant | None = None,
) -> MemberTrainingPublic:
    member = _member(db, member_id)
    training = get_or_404(db, Training, training_id, "Formation")
    today = local_today(cfg.tz)
    granted_on: date = (body.granted_on if body else None) or today
    if granted_on > today:
        field_error(("body", "granted_on"), "La date de formation ne peut pas être dans le futur")
    expires_on = expiry(granted_on, training.validity_days)
    row = next((t for t in member.trainings if t.training_id == training_id), None)
    if row is None:
        row = MemberTraining(member_id=member.id, training_id=training_id, granted_on=granted_on)
        member.trainings.append(row)
    row.granted_on = granted_on
    row.expires_on = expires_on
    commit(db, "Formation refusée par la base de données")
    control.reference_changed()
    log.info(
        "training %s granted to member %d by account %d",
        training_id,
        member_id,
        principal.account_id,
    )
    return member_trainings([row], {training.id: training.name}, cfg)[0]


@router.delete(
    "/{member_id}/trainings/{training_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["members", "trainings"],
    summary="Withdraw a training",
    dependencies=[allow(Capability.TRAININGS_GRANT)],
)
def withdraw_training(
    member_id: DbId, training_id: Ident, db: SessionDep, control: ControlDep
) -> None:
    member = _member(db, member_id)
    row = next((t for t in member.trainings if t.training_id == training_id), None)
    if row is None:
        not_found("Formation de ce membre")
    member.trainings.remove(row)
    commit(db, "Modification refusée")
    control.reference_changed()
