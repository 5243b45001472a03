"""Logging in and out of the web UI (``/connexion``, ``/deconnexion``) and ``/``.

The login form calls the API's own login (:func:`hub.api.routes.auth.login`): same
password check, throttle, token and ``SameSite=Strict`` session cookie; a refusal
shows the API's French message next to the form, which keeps the username typed.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import delete

from hub.api.auth import COOKIE_NAME, Capability
from hub.api.deps import CheckerDep, SessionDep, SettingsDep, ThrottleDep
from hub.api.routes import auth as api_auth
from hub.api.schemas import LoginRequest
from hub.db.models import ApiToken
from hub.web.core import (
    LOGIN_PATH,
    CsrfChecked,
    OptionalUser,
    PageUser,
    home_of,
    page,
    render,
    same_origin,
)

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

#: Pages anyone may open (method, path), added to the API's public routes.
PUBLIC = frozenset({("GET", "/"), ("GET", LOGIN_PATH), ("POST", LOGIN_PATH)})


def _safe_next(value: str) -> str:
    """Only a local path is followed after login (no open redirect)."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return ""


@router.get("/")
def home(user: OptionalUser) -> RedirectResponse:
    """The login page, or where the logged-in person's role belongs."""
    target = LOGIN_PATH if user is None else home_of(user.role)
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@router.get(LOGIN_PATH)
def login_page(request: Request, user: OptionalUser, suite: str = "") -> Response:
    if user is not None:
        return RedirectResponse(_safe_next(suite) or home_of(user.role), status.HTTP_303_SEE_OTHER)
    return render(request, "connexion.html", {"suite": _safe_next(suite), "username": ""})


@router.post(LOGIN_PATH)
def login_submit(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    checker: CheckerDep,
    throttle: ThrottleDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    suite: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Check the password with the API's login; on success set the cookie and go on."""
    error = ""
    code = status.HTTP_200_OK
    if not same_origin(request):
        error, code = "Formulaire refusé : rechargez la page.", status.HTTP_403_FORBIDDEN
    elif not username or not password:
        error, code = "Indiquez votre identifiant et votre mot de passe.", 422
    else:
        try:
            body = LoginRequest(username=username, password=password)
        except ValidationError:
            error, code = api_auth.LOGIN_FAILED, status.HTTP_401_UNAUTHORIZED
        else:
            redirect = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
            try:
                answer = api_auth.login(body, request, redirect, db, settings, checker, throttle)
            except HTTPException as err:
                error, code = str(err.detail), err.status_code
            else:
                target = _safe_next(suite) or home_of(answer.account.role)
                redirect.headers["location"] = target
                return redirect
    return render(
        request,
        "connexion.html",
        {"suite": _safe_next(suite), "username": username, "error": error},
        status_code=code,
    )


@router.post("/deconnexion", dependencies=[page(Capability.SELF), CsrfChecked])
def logout(db: SessionDep, principal: PageUser) -> RedirectResponse:
    """Revoke this session's token and clear the cookie."""
    db.execute(delete(ApiToken).where(ApiToken.id == principal.token_id))
    db.commit()
    log.info("account %d logged out", principal.account_id)
    response = RedirectResponse(LOGIN_PATH, status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response
