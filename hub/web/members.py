"""The members pages (``/membres``): search, create, edit, trainings, badges, data rights.

Admins and fabmanagers open them (:attr:`Capability.MEMBERS_IDENTIFY`; animators and
coordinators never see a member's full name or birth date here); each action checks
its own capability of the role matrix on the server (edit: admins; trainings and
badges: fabmanagers too; export and erasure: admins).

Writes go through the API's route functions (:mod:`hub.api.routes.members`,
:mod:`hub.api.routes.badges`), so the rules stay in one place; their French refusals
are shown next to the field (:mod:`hub.web.forms`).

A member is recorded as a first name and the initial of the family name
(``"Inès B."``): the site needs no more to recognise them.

**Enrolment by tapping** (see :mod:`hub.enrolment`): "associer un badge" arms the
chosen machine's reader for 60 s; the waiting page reloads itself (``enrol.js``, or a
"Vérifier" link without JavaScript) until the hub reports the outcome: bound,
already someone's badge (their first name), or nothing seen in time. The badge's hash
never reaches the browser.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.api.auth import Capability, Principal
from hub.api.common import member_age
from hub.api.deps import ControlDep, PolicyDep, SessionDep
from hub.api.routes import badges as api_badges
from hub.api.routes import members as api_members
from hub.api.schemas import MemberCreate, MemberUpdate, TrainingGrant
from hub.api.views import member_trainings, training_names
from hub.api.writes import ReferenceWrite
from hub.db.models import (
    AccessLog,
    Account,
    Badge,
    Machine,
    MachineJob,
    Member,
    MemberStatus,
    Programme,
    Role,
    StaffPresence,
    Training,
    UsageSession,
)
from hub.enrolment import EnrolState, already_enrolled_message
from hub.policy.calendar import MONTHS_FR
from hub.policy.model import PolicyConfig
from hub.web.core import CsrfChecked, PageNotFound, PageUser, page, render
from hub.web.forms import Errors, checked, submit, validate
from protocol.messages import utcnow

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

ROLE_NAMES = {
    Role.MEMBER: "Membre",
    Role.ANIMATOR: "Animateur·rice",
    Role.FABMANAGER: "Fabmanager",
    Role.COORDINATOR: "Coordination",
    Role.ADMIN: "Administration",
}
STATUS_NAMES = {MemberStatus.ACTIVE: "Actif", MemberStatus.SUSPENDED: "Suspendu"}
RESULTS = {
    "cree": "Membre enregistré.",
    "modifie": "Modifications enregistrées.",
    "formation": "Formation enregistrée.",
    "formation-retiree": "Formation retirée.",
    "badge-revoque": "Badge révoqué.",
    "badge-associe": "Badge associé.",
    "efface": "Les données du membre ont été effacées.",
}
LIST_LIMIT = 200


def _split_name(display_name: str) -> tuple[str, str]:
    """``"Inès B."`` → ``("Inès", "B")``."""
    parts = display_name.split()
    if not parts:
        return "", ""
    return parts[0], " ".join(parts[1:]).rstrip(".")


def _display_name(first: str, initial: str) -> str:
    first, initial = first.strip(), initial.strip().rstrip(".").strip()
    return f"{first} {initial[:3].upper()}." if initial else first


def _name_errors(first: str, initial: str) -> Errors:
    errors: Errors = {}
    if not first.strip():
        errors["first_name"] = "Indiquez le prénom."
    elif len(first.split()) > 1 or len(first.strip()) > 40:
        errors["first_name"] = "Un seul prénom, 40 caractères au plus (ex. Inès ou Jean-Luc)."
    if len(initial.strip().rstrip(".")) > 3 or any(c.isdigit() for c in initial):
        errors["initial"] = "L'initiale du nom seulement (1 à 3 lettres, ex. B)."
    return errors


@dataclass
class MemberForm:
    """What the member form shows: typed values (strings) and their errors."""

    first_name: str = ""
    initial: str = ""
    birth_year: str = ""
    birth_month: str = ""
    programmes: tuple[str, ...] = ()
    role: str = Role.MEMBER.value
    status: str = MemberStatus.ACTIVE.value
    consent_at: str = ""

    @classmethod
    def of(cls, member: Member) -> MemberForm:
        first, initial = _split_name(member.display_name)
        return cls(
            first_name=first,
            initial=initial,
            birth_year=str(member.birth_year),
            birth_month=str(member.birth_month),
            programmes=tuple(member.programme_ids),
            role=member.role.value,
            status=member.status.value,
            consent_at=member.consent_at.isoformat() if member.consent_at else "",
        )

    def body(self) -> dict[str, Any]:
        return {
            "display_name": _display_name(self.first_name, self.initial),
            "birth_year": self.birth_year,
            "birth_month": self.birth_month,
            "programmes": list(self.programmes),
            "role": self.role,
            "status": self.status,
            "consent_at": self.consent_at or None,
        }


def _form_context(db: Session, form: MemberForm, errors: Errors) -> dict[str, Any]:
    if "display_name" in errors:
        errors.setdefault("first_name", errors.pop("display_name"))
    return {
        "form": form,
        "errors": errors,
        "months": list(enumerate(MONTHS_FR, start=1)),
        "programmes": list(db.execute(select(Programme.id, Programme.name).order_by(Programme.id))),
        "roles": list(ROLE_NAMES.items()),
        "statuses": list(STATUS_NAMES.items()),
    }


def _read_form(
    first_name: str,
    initial: str,
    birth_year: str,
    birth_month: str,
    programmes: list[str],
    role: str,
    member_status: str,
    consent_at: str,
) -> MemberForm:
    return MemberForm(
        first_name=first_name.strip(),
        initial=initial.strip(),
        birth_year=birth_year.strip(),
        birth_month=birth_month.strip(),
        programmes=tuple(checked(programmes)),
        role=role,
        status=member_status,
        consent_at=consent_at.strip(),
    )


FormStr = Annotated[str, Form(max_length=200)]
FormList = Annotated[list[str], Form(max_length=50)]


# --------------------------------------------------------------------------- list


@router.get("/membres", dependencies=[page(Capability.MEMBERS_IDENTIFY)])
def members_list(
    request: Request,
    db: SessionDep,
    cfg: PolicyDep,
    user: PageUser,
    q: str = "",
    resultat: str = "",
) -> Response:
    query = select(Member)
    q = q.strip()[:100]
    if q:
        query = query.where(func.lower(Member.display_name).contains(q.lower(), autoescape=True))
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = []
    for member in db.scalars(query.order_by(Member.display_name, Member.id).limit(LIST_LIMIT)):
        age, group = member_age(member.birth_year, member.birth_month, cfg)
        rows.append(
            {
                "member": member,
                "age": age,
                "group": group,
                "consent_missing": age < cfg.consent_age and member.consent_at is None,
                "badges": sum(1 for b in member.badges if b.revoked_at is None),
                "role": ROLE_NAMES.get(member.role, member.role),
                "status": STATUS_NAMES.get(member.status, member.status),
            }
        )
    return render(
        request,
        "membres.html",
        {"rows": rows, "q": q, "total": total, "limit": LIST_LIMIT, "flash": RESULTS.get(resultat)},
        user=user,
    )


# --------------------------------------------------------------------------- create


@router.get("/membres/nouveau", dependencies=[page(Capability.MEMBERS_WRITE)])
def member_new(request: Request, db: SessionDep, user: PageUser) -> Response:
    return render(request, "membre_form.html", _form_context(db, MemberForm(), {}), user=user)


@router.post("/membres/nouveau", dependencies=[page(Capability.MEMBERS_WRITE), CsrfChecked])
def member_create(
    request: Request,
    db: SessionDep,
    control: ControlDep,
    cfg: PolicyDep,
    user: PageUser,
    first_name: FormStr = "",
    initial: FormStr = "",
    birth_year: FormStr = "",
    birth_month: FormStr = "",
    programmes: FormList = [],  # noqa: B006 - FastAPI copies defaults
    role: FormStr = Role.MEMBER.value,
    member_status: Annotated[str, Form(alias="status", max_length=20)] = "active",
    consent_at: FormStr = "",
) -> Response:
    form = _read_form(
        first_name, initial, birth_year, birth_month, programmes, role, member_status, consent_at
    )
    errors = _name_errors(form.first_name, form.initial)
    body, model_errors = validate(MemberCreate, form.body(), whole="birth_month")
    errors = {**model_errors, **errors}
    if body is not None and not errors:
        created, errors = submit(lambda: api_members.create_member(body, db, control, cfg, user))
        if created is not None:
            if body.consent_at is not None:
                _record_consent(db, created.id, user)
            log.info("member %d created from the web by account %d", created.id, user.account_id)
            return _redirect(f"/membres/{created.id}?resultat=cree")
    return render(
        request,
        "membre_form.html",
        _form_context(db, form, errors),
        user=user,
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def _record_consent(db: Session, member_id: int, user: Principal) -> None:
    member = db.get(Member, member_id)
    if member is not None:
        member.consent_recorded_by = user.username if member.consent_at is not None else None
        db.commit()


def _redirect(target: str) -> RedirectResponse:
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


# --------------------------------------------------------------------------- one member


def _load(db: Session, member_id: int) -> Member:
    member = db.get(Member, member_id)
    if member is None:
        raise PageNotFound("Membre")
    return member


def _detail_context(
    db: Session,
    cfg: PolicyConfig,
    member: Member,
    form: MemberForm | None = None,
    errors: Errors | None = None,
    training_errors: Errors | None = None,
    badge_errors: Errors | None = None,
) -> dict[str, Any]:
    age, group = member_age(member.birth_year, member.birth_month, cfg)
    names = training_names(db)
    machines = list(
        db.execute(select(Machine.id, Machine.name, Machine.zone_id).order_by(Machine.name))
    )
    return {
        "member": member,
        "age": age,
        "group": group,
        "consent_missing": age < cfg.consent_age and member.consent_at is None,
        "consent_age": cfg.consent_age,
        "trainings": member_trainings(member.trainings, names, cfg),
        "all_trainings": sorted(names.items(), key=lambda kv: kv[1]),
        "badges": sorted(member.badges, key=lambda b: b.id),
        "machines": machines,
        "role_name": ROLE_NAMES.get(member.role, member.role),
        "status_name": STATUS_NAMES.get(member.status, member.status),
        "month_name": MONTHS_FR[member.birth_month - 1],
        "training_errors": training_errors or {},
        "badge_errors": badge_errors or {},
        **_form_context(db, form or MemberForm.of(member), errors or {}),
    }


@router.get("/membres/{member_id}", dependencies=[page(Capability.MEMBERS_IDENTIFY)])
def member_detail(
    member_id: int,
    request: Request,
    db: SessionDep,
    cfg: PolicyDep,
    user: PageUser,
    resultat: str = "",
) -> Response:
    member = _load(db, member_id)
    ctx = _detail_context(db, cfg, member)
    ctx["flash"] = RESULTS.get(resultat)
    return render(request, "membre.html", ctx, user=user)


@router.post("/membres/{member_id}", dependencies=[page(Capability.MEMBERS_WRITE), CsrfChecked])
def member_update(
    member_id: int,
    request: Request,
    db: SessionDep,
    control: ControlDep,
    cfg: PolicyDep,
    user: PageUser,
    first_name: FormStr = "",
    initial: FormStr = "",
    birth_year: FormStr = "",
    birth_month: FormStr = "",
    programmes: FormList = [],  # noqa: B006 - FastAPI copies defaults
    role: FormStr = Role.MEMBER.value,
    member_status: Annotated[str, Form(alias="status", max_length=20)] = "active",
    consent_at: FormStr = "",
) -> Response:
    member = _load(db, member_id)
    before = member.consent_at
    form = _read_form(
        first_name, initial, birth_year, birth_month, programmes, role, member_status, consent_at
    )
    errors = _name_errors(form.first_name, form.initial)
    body, model_errors = validate(MemberUpdate, form.body(), whole="birth_month")
    errors = {**model_errors, **errors}
    if body is not None and not errors:
        _, errors = submit(
            lambda: api_members.update_member(member_id, body, db, control, cfg, user)
        )
        if not errors:
            if member.consent_at != before:
                _record_consent(db, member_id, user)
            return _redirect(f"/membres/{member_id}?resultat=modifie")
    db.refresh(member)
    return render(
        request,
        "membre.html",
        _detail_context(db, cfg, member, form, errors),
        user=user,
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


# --------------------------------------------------------------------------- trainings


@router.post(
    "/membres/{member_id}/formations", dependencies=[page(Capability.TRAININGS_GRANT), CsrfChecked]
)
def member_grant(
    member_id: int,
    request: Request,
    db: SessionDep,
    control: ControlDep,
    cfg: PolicyDep,
    user: PageUser,
    training_id: FormStr = "",
    granted_on: FormStr = "",
) -> Response:
    member = _load(db, member_id)
    errors: Errors = {}
    if db.get(Training, training_id) is None:
        errors["training_id"] = "Choisissez une formation de la liste."
    grant, grant_errors = validate(TrainingGrant, {"granted_on": granted_on.strip() or None})
    errors.update(grant_errors)
    if grant is not None and not errors:
        _, errors = submit(
            lambda: api_members.grant_training(
                member_id, training_id, db, control, user, cfg, grant
            ),
            whole="granted_on",
        )
        if not errors:
            return _redirect(f"/membres/{member_id}?resultat=formation#formations")
    db.refresh(member)
    return render(
        request,
        "membre.html",
        _detail_context(db, cfg, member, training_errors=errors),
        user=user,
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


@router.post(
    "/membres/{member_id}/formations/{training_id}/retirer",
    dependencies=[page(Capability.TRAININGS_GRANT), CsrfChecked],
)
def member_withdraw(
    member_id: int, training_id: str, db: SessionDep, control: ControlDep
) -> Response:
    _load(db, member_id)
    with contextlib.suppress(HTTPException):  # already withdrawn: the page shows the list
        api_members.withdraw_training(member_id, training_id, db, control)
    return _redirect(f"/membres/{member_id}?resultat=formation-retiree#formations")


# --------------------------------------------------------------------------- badges


@router.post(
    "/membres/{member_id}/badges/{badge_id}/revoquer",
    dependencies=[page(Capability.BADGES_WRITE), CsrfChecked],
)
def badge_revoke(
    member_id: int, badge_id: int, db: SessionDep, control: ControlDep, user: PageUser
) -> Response:
    badge = db.get(Badge, badge_id)
    if badge is None or badge.member_id != member_id:
        raise PageNotFound("Badge", user)
    if badge.revoked_at is None:
        api_badges.revoke_badge(badge_id, ReferenceWrite(db, control), user)
    return _redirect(f"/membres/{member_id}?resultat=badge-revoque#badges")


@router.post(
    "/membres/{member_id}/badges/associer",
    dependencies=[page(Capability.BADGES_WRITE), CsrfChecked],
)
def enrol_start(
    member_id: int,
    request: Request,
    db: SessionDep,
    control: ControlDep,
    cfg: PolicyDep,
    user: PageUser,
    machine_id: FormStr = "",
) -> Response:
    """Arm the chosen reader for this member; then wait on the enrolment's page."""
    member = _load(db, member_id)
    enrolment = None
    if db.get(Machine, machine_id) is not None:
        enrolment = control.arm_enrolment(machine_id, member.id, member.first_name, user.account_id)
    if enrolment is None:
        errors = {"machine_id": "Choisissez un lecteur de la liste (machine connue du hub)."}
        return render(
            request,
            "membre.html",
            _detail_context(db, cfg, member, badge_errors=errors),
            user=user,
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    log.info(
        "account %d armed an enrolment on %s for member %d", user.account_id, machine_id, member_id
    )
    return _redirect(f"/membres/{member_id}/badges/attente/{enrolment.token}")


ENROL_TEXT = {
    EnrolState.WAITING: "En attente du badge…",
    EnrolState.BINDING: "Badge lu, enregistrement…",
    EnrolState.BOUND: "Badge associé.",
    EnrolState.EXPIRED: "Aucun badge vu dans la minute : rien n'a été associé.",
    EnrolState.CANCELLED: "Association annulée : rien n'a été associé.",
    EnrolState.FAILED: "Le badge n'a pas pu être enregistré : recommencez.",
}


@router.get(
    "/membres/{member_id}/badges/attente/{token}", dependencies=[page(Capability.BADGES_WRITE)]
)
def enrol_wait(
    member_id: int,
    token: str,
    request: Request,
    db: SessionDep,
    control: ControlDep,
    user: PageUser,
) -> Response:
    member = _load(db, member_id)
    enrolment = control.enrolment(token[:64])
    if enrolment is None or enrolment.member_id != member_id:
        return _redirect(f"/membres/{member_id}#badges")
    if enrolment.state is EnrolState.DUPLICATE:
        text = already_enrolled_message(enrolment.owner_first_name or "un autre membre")
    else:
        text = ENROL_TEXT[enrolment.state]
    machine = db.get(Machine, enrolment.machine_id)
    return render(
        request,
        "membre_badge.html",
        {
            "member": member,
            "enrolment": enrolment,
            "machine_name": machine.name if machine is not None else enrolment.machine_id,
            "text": text,
            "seconds_left": enrolment.seconds_left(utcnow()),
            "waiting": not enrolment.finished,
            "ok": enrolment.state is EnrolState.BOUND,
        },
        user=user,
    )


@router.post(
    "/membres/{member_id}/badges/attente/{token}/annuler",
    dependencies=[page(Capability.BADGES_WRITE), CsrfChecked],
)
def enrol_cancel(member_id: int, token: str, control: ControlDep) -> Response:
    enrolment = control.enrolment(token[:64])
    if enrolment is not None and enrolment.member_id == member_id:
        control.cancel_enrolment(enrolment.token)
    return _redirect(f"/membres/{member_id}#badges")


# --------------------------------------------------------------------------- data rights


def _erase_counts(db: Session, member: Member) -> list[tuple[str, int]]:
    """What an erasure deletes or detaches, in French, with counts."""
    hashes = [b.hash for b in member.badges]

    def count(model: Any, *conditions: Any) -> int:
        return db.scalar(select(func.count()).select_from(model).where(*conditions)) or 0

    log_rows = count(AccessLog, AccessLog.member_id == member.id)
    if hashes:
        log_rows = count(
            AccessLog, (AccessLog.member_id == member.id) | AccessLog.badge_hash.in_(hashes)
        )
    return [
        ("badge(s), supprimé(s)", len(member.badges)),
        ("formation(s), supprimée(s)", len(member.trainings)),
        ("programme(s), retiré(s)", len(member.programmes)),
        ("passage(s) aux lecteurs (journal d'accès), supprimé(s)", log_rows),
        (
            "présence(s) d'équipe, supprimée(s)",
            count(StaffPresence, StaffPresence.member_id == member.id),
        ),
        ("compte(s) de connexion, supprimé(s)", count(Account, Account.member_id == member.id)),
        (
            "session(s) d'utilisation, gardée(s) sans nom pour les totaux",
            count(UsageSession, UsageSession.member_id == member.id),
        ),
        (
            "impression(s), gardée(s) sans nom ni nom de fichier",
            count(MachineJob, MachineJob.member_id == member.id),
        ),
    ]


@router.get("/membres/{member_id}/effacer", dependencies=[page(Capability.MEMBER_DATA)])
def erase_confirm(
    member_id: int, request: Request, db: SessionDep, cfg: PolicyDep, user: PageUser
) -> Response:
    member = _load(db, member_id)
    return render(
        request,
        "membre_effacer.html",
        {"member": member, "counts": _erase_counts(db, member), "error": ""},
        user=user,
    )


@router.post(
    "/membres/{member_id}/effacer", dependencies=[page(Capability.MEMBER_DATA), CsrfChecked]
)
def erase_submit(
    member_id: int,
    request: Request,
    db: SessionDep,
    control: ControlDep,
    cfg: PolicyDep,
    user: PageUser,
    confirm_name: FormStr = "",
) -> Response:
    member = _load(db, member_id)
    error = ""
    if confirm_name.strip().casefold() != member.first_name.casefold():
        error = f"Tapez le prénom « {member.first_name} » pour confirmer l'effacement."
    else:
        try:
            api_members.erase_member(member_id, db, control, user, cfg)
        except HTTPException as err:
            error = str(err.detail)
        else:
            return _redirect("/membres?resultat=efface")
    db.rollback()
    member = _load(db, member_id)
    return render(
        request,
        "membre_effacer.html",
        {"member": member, "counts": _erase_counts(db, member), "error": error},
        user=user,
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


@router.get("/membres/{member_id}/export", dependencies=[page(Capability.MEMBER_DATA)])
def member_export(member_id: int, db: SessionDep, user: PageUser) -> Response:
    """Every row about the member, as a JSON file (the API's export)."""
    _load(db, member_id)
    export = api_members.export_member(member_id, db, user)
    content = json.dumps(export.model_dump(mode="json"), ensure_ascii=False, indent=2)
    filename = f"fabrique-membre-{member_id}-{date.today().isoformat()}.json"
    return Response(
        content,
        media_type="application/json; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
