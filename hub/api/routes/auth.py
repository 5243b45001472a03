"""Login, logout and "who am I" (tag ``auth``).

A failed login always answers the same generic French message, whether the username
exists or not, after the same amount of hashing work; repeated failures per username
or client address get growing delays (429); every outcome goes to the audit trail.
"""

from __future__ import annotations

import contextlib
import logging
import math
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import delete, select

from hub.api.auth import COOKIE_NAME, Capability, HashingBusy, Principal, issue_token
from hub.api.deps import (
    CheckerDep,
    CurrentAccount,
    SessionDep,
    SettingsDep,
    ThrottleDep,
    allow,
)
from hub.api.schemas import AccountPublic, LoginRequest, LoginResponse, Message
from hub.audit import record
from hub.db.models import Account, ApiToken

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/auth", tags=["auth"])

LOGIN_FAILED = "Identifiant ou mot de passe incorrect"


def _set_cookie(response: Response, request: Request, token: str, expires_at: datetime) -> None:
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=max(0, int((expires_at - datetime.now(expires_at.tzinfo)).total_seconds())),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


@router.post(
    "/login",
    response_model=LoginResponse,
    summary="Log in with a username and password",
    responses={401: {"description": "wrong credentials"}, 429: {"description": "too many tries"}},
)
def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    db: SessionDep,
    settings: SettingsDep,
    checker: CheckerDep,
    throttle: ThrottleDep,
) -> LoginResponse:
    """Check the password, issue a token, set it as the ``fabrique_session`` cookie.

    The attempt is counted by the throttle *before* the password is checked, so parallel
    guesses cannot overtake the count; at most two hashes run at once (503 beyond).
    """
    address = request.client.host if request.client else ""
    username = body.username
    wait = throttle.begin(username, address)
    if wait > 0:
        log.warning("login throttled for %r from %s (%.0f s)", username, address, wait)
        record(request, "login.throttled", actor=username, outcome="refused")
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"Trop de tentatives de connexion : réessayez dans {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    account = db.scalar(select(Account).where(Account.username == username))
    try:
        verified = checker.verify(account, body.password)
    except HashingBusy as err:
        log.warning("login for %r from %s: every hashing slot busy", username, address)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="Serveur occupé : réessayez dans un instant",
            headers={"Retry-After": "5"},
        ) from err
    if not verified or account is None:
        log.warning(
            "failed login for %r from %s (known account: %s)",
            username,
            address,
            account is not None,
        )
        record(request, "login.failed", actor=username, outcome="failed")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=LOGIN_FAILED)
    throttle.succeeded(username, address)
    if checker.needs_rehash(account):
        with contextlib.suppress(HashingBusy):  # upgrade at the next login instead
            account.password_hash = checker.hash(body.password)
    token, expires_at = issue_token(db, settings, account)
    db.commit()
    log.info("account %d logged in from %s", account.id, address)
    record(request, "login", actor=account.username, role=account.role, outcome="ok")
    _set_cookie(response, request, token, expires_at)
    return LoginResponse(
        token=token, expires_at=expires_at, account=AccountPublic.model_validate(account)
    )


@router.post(
    "/logout",
    response_model=Message,
    summary="Log out (revoke the current token)",
    dependencies=[allow(Capability.SELF)],
)
def logout(principal: CurrentAccount, response: Response, db: SessionDep) -> Message:
    """Delete the token used for this request and clear the cookie."""
    db.execute(delete(ApiToken).where(ApiToken.id == principal.token_id))
    db.commit()
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return Message(detail="Vous êtes déconnecté")


@router.get(
    "/me",
    response_model=AccountPublic,
    summary="The account of the current token",
    dependencies=[allow(Capability.SELF)],
)
def whoami(principal: CurrentAccount, db: SessionDep) -> AccountPublic:
    return AccountPublic.model_validate(_account(db, principal))


def _account(db: SessionDep, principal: Principal) -> Account:
    account = db.get(Account, principal.account_id)
    if account is None:  # deleted between the token check and now
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Compte supprimé")
    return account
