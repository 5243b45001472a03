"""Login accounts (tag ``accounts``), for admins.

Changing a password, deactivating an account or changing its role revokes its tokens,
so the change takes effect at the next request. An admin cannot lock themselves out.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, status
from sqlalchemy import select

from hub.api.auth import (
    Capability,
    WeakPasswordError,
    check_password_strength,
    create_account,
    revoke_tokens,
)
from hub.api.common import commit, conflict, get_or_404, invalid, require_refs
from hub.api.deps import CheckerDep, CurrentAccount, SessionDep, allow
from hub.api.schemas import AccountCreate, AccountPublic, AccountUpdate, DbId
from hub.db.models import Account, Member

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/accounts", tags=["accounts"])

ADMIN = [allow(Capability.ACCOUNTS)]


@router.get("", response_model=list[AccountPublic], summary="List accounts", dependencies=ADMIN)
def list_accounts(db: SessionDep) -> list[Account]:
    return list(db.scalars(select(Account).order_by(Account.id)))


@router.post(
    "",
    response_model=AccountPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Create an account",
    dependencies=ADMIN,
)
def create(body: AccountCreate, db: SessionDep, checker: CheckerDep) -> Account:
    try:
        check_password_strength(body.password, body.username)
    except WeakPasswordError as err:
        raise invalid(("body", "password"), str(err), "weak_password") from err
    if db.scalar(select(Account.id).where(Account.username == body.username)) is not None:
        conflict(f"L'identifiant {body.username} est déjà utilisé")
    if body.member_id is not None:
        require_refs(db, Member, [body.member_id], ("body", "member_id"), "Membre")
    try:
        account = create_account(
            db, body.username, body.password, body.role, body.member_id, hasher=checker.hasher
        )
    except ValueError as err:  # a race on the username; the checks above cover the rest
        raise invalid(("body",), str(err)) from err
    commit(db, f"L'identifiant {body.username} est déjà utilisé")
    return account


@router.get(
    "/{account_id}", response_model=AccountPublic, summary="One account", dependencies=ADMIN
)
def get_account(account_id: DbId, db: SessionDep) -> Account:
    return get_or_404(db, Account, account_id, "Compte")


@router.patch(
    "/{account_id}",
    response_model=AccountPublic,
    summary="Change an account's password, role, member or activation",
    dependencies=ADMIN,
)
def update_account(
    account_id: DbId,
    body: AccountUpdate,
    db: SessionDep,
    checker: CheckerDep,
    principal: CurrentAccount,
) -> Account:
    account = get_or_404(db, Account, account_id, "Compte")
    changes = body.changes()
    if account.id == principal.account_id and (
        changes.get("active") is False or changes.get("role", account.role) != account.role
    ):
        conflict("Vous ne pouvez pas retirer vos propres droits ni désactiver votre compte")
    if "password" in changes:
        password = changes.pop("password")
        try:
            check_password_strength(password, account.username)
        except WeakPasswordError as err:
            raise invalid(("body", "password"), str(err), "weak_password") from err
        account.password_hash = checker.hash(password)
        revoke_tokens(db, account.id)
    if changes.get("member_id") is not None:
        require_refs(db, Member, [changes["member_id"]], ("body", "member_id"), "Membre")
    if changes.get("active") is False or changes.get("role", account.role) != account.role:
        revoke_tokens(db, account.id)
    for name, value in changes.items():
        setattr(account, name, value)
    commit(db, "Modification refusée")
    log.info("account %d changed by account %d", account_id, principal.account_id)
    return account


@router.delete(
    "/{account_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an account",
    dependencies=ADMIN,
)
def delete_account(account_id: DbId, db: SessionDep, principal: CurrentAccount) -> None:
    account = get_or_404(db, Account, account_id, "Compte")
    if account.id == principal.account_id:
        conflict("Vous ne pouvez pas supprimer votre propre compte")
    revoke_tokens(db, account.id)
    db.delete(account)
    commit(db, "Suppression refusée")
    log.info("account %d deleted by account %d", account_id, principal.account_id)
