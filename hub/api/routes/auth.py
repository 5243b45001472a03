"""Login, logout and "who am I" (tag ``auth``).

A failed login always answers the same generic French message, whether the username
exists or not, after the same amount of hashing work; repeated failures per username
or client address are throttled (429).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import delete, select

from hub.api.auth import COOKIE_NAME, Capability, Principal, issue_token
from hub.api.deps import (
    CheckerDep,
    CurrentAccount,
    SessionDep,
    SettingsDep,
    ThrottleDep,
    allow,
)
from hub.api.schemas import AccountPublic, LoginRequest, LoginResponse, Message
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
    """Check the password, issue a token, set it as the ``fabrique_session`` cookie."""
    address = request.client.host if request.client else ""
    wait = throttle.retry_after(body.username, address)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="Trop de tentatives de connexion : réessayez dans quelques minutes",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    account = db.scalar(select(Account).where(Account.username == body.username))
    if not checker.verify(account, body.password) or account is None:
        throttle.failed(body.username, address)
        log.info("failed login (known account: %s)", account is not None)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=LOGIN_FAILED)
    throttle.succeeded(body.username)
    if checker.needs_rehash(account):
        account.password_hash = checker.hasher.hash(body.password)
    token, expires_at = issue_token(db, settings, account)
    db.commit()
    log.info("account %d logged in", account.id)
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
