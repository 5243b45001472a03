"""FastAPI dependencies, as ``Annotated`` aliases that tests swap via ``dependency_overrides``.

The wiring lives on ``app.state`` (set once by :func:`hub.api.app.create_app`); these
functions only read it. :func:`allow` is how a route declares its capability: it is
the role check, and also the marker the role-matrix test and :func:`create_app` look for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.params import Depends as DependsParam
from sqlalchemy.orm import Session, sessionmaker

from hub.api.auth import (
    COOKIE_NAME,
    MATRIX,
    PRINCIPAL_KEY,
    Capability,
    LoginThrottle,
    PasswordChecker,
    Principal,
    resolve_token,
)
from hub.control import HubControl
from hub.db.models import Role
from hub.policy.model import PolicyConfig
from hub.settings import HubSettings

log = logging.getLogger(__name__)


def get_settings(request: Request) -> HubSettings:
    """The hub settings given to ``create_app``."""
    settings: HubSettings = request.app.state.settings
    return settings


def get_db(request: Request) -> Iterator[Session]:
    """One SQLAlchemy session per request; endpoints commit explicitly, the rest rolls back."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    with factory() as session:
        yield session


def get_control(request: Request) -> HubControl:
    """The live hub service (``NullControl`` in tests)."""
    control: HubControl = request.app.state.control
    return control


def get_policy(request: Request) -> PolicyConfig:
    """The policy tunables (time zone, age bands, consent age) the hub decides with."""
    policy: PolicyConfig = request.app.state.policy
    return policy


def get_password_checker(request: Request) -> PasswordChecker:
    """Password hashing and verification (cheap argon2 parameters in tests)."""
    checker: PasswordChecker = request.app.state.password_checker
    return checker


def get_login_throttle(request: Request) -> LoginThrottle:
    throttle: LoginThrottle = request.app.state.login_throttle
    return throttle


SettingsDep = Annotated[HubSettings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_db)]
ControlDep = Annotated[HubControl, Depends(get_control)]
PolicyDep = Annotated[PolicyConfig, Depends(get_policy)]
CheckerDep = Annotated[PasswordChecker, Depends(get_password_checker)]
ThrottleDep = Annotated[LoginThrottle, Depends(get_login_throttle)]


def bearer_or_cookie(request: Request) -> str | None:
    """The token a request carries: ``Authorization: Bearer`` first, then the cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE_NAME) or None


def current_principal(request: Request, db: SessionDep, settings: SettingsDep) -> Principal:
    """The authenticated caller, or 401 (no credentials, unknown or expired token).

    The token was already resolved by :class:`hub.api.limits.AuthGate` for ``/api``
    routes; it is looked up here only for the others (the admins' ``/docs``).
    """
    gated = request.scope.get(PRINCIPAL_KEY)
    if isinstance(gated, Principal):
        return gated
    token = bearer_or_cookie(request)
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="Authentification requise",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = resolve_token(db, settings, token)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="Session expirée ou invalide : reconnectez-vous",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.scope[PRINCIPAL_KEY] = principal  # for the audit trail
    return principal


CurrentAccount = Annotated[Principal, Depends(current_principal)]


class RoleGuard:
    """Dependency that admits the roles :data:`~hub.api.auth.MATRIX` grants ``capability``."""

    def __init__(self, capability: Capability) -> None:
        self.capability = capability

    @property
    def roles(self) -> frozenset[Role]:
        return MATRIX[self.capability]

    def __call__(self, principal: CurrentAccount) -> Principal:
        if principal.role not in self.roles:
            log.info(
                "account %d (%s) refused %s", principal.account_id, principal.role, self.capability
            )
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail="Votre rôle ne permet pas cette action"
            )
        return principal

    def __repr__(self) -> str:
        return f"RoleGuard({self.capability.value})"


_GUARDS = {cap: RoleGuard(cap) for cap in Capability}


def allow(capability: Capability) -> Any:
    """``dependencies=[allow(Capability.X)]``: the route's entry in the role matrix."""
    return Depends(_GUARDS[capability])


def guard_of(dependencies: list[Any]) -> list[RoleGuard]:
    """The role guards among a route's declared dependencies."""
    return [
        d.dependency
        for d in dependencies
        if isinstance(d, DependsParam) and isinstance(d.dependency, RoleGuard)
    ]
