"""The hub's REST API application (FastAPI; OpenAPI at ``/docs`` and ``/openapi.json``).

:func:`create_app` wires the app explicitly: settings, a SQLAlchemy session factory and
the live hub's :class:`~hub.control.HubControl` are stored on ``app.state`` and read by
the dependencies of :mod:`hub.api.deps`. It refuses to build an app in which a route
declares no capability of the role matrix (fail closed).

The documentation (``/docs``, Swagger UI) and the schema (``/openapi.json``) follow
``settings.docs_access``: served by FastAPI to anyone (``public``, the demo's default),
behind the role matrix for admins (``admin``, the default outside demo mode: the schema
is a map of every route for an attacker, OWASP API8), or not at all (``off``).

Every request first passes the protections of :func:`_guard` (:mod:`hub.api.proxy`,
:mod:`hub.api.headers`, :mod:`hub.audit`, :mod:`hub.api.limits`); ``docs/security.md``
lists the limits.

Errors answer in French: field errors keep FastAPI's 422 shape with translated
messages; 404/405 and database conflicts get a French ``detail``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from importlib import resources
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.api.auth import Capability, LoginThrottle, PasswordChecker, pi_password_hasher
from hub.api.deps import SessionDep, allow, guard_of
from hub.api.headers import SecurityHeaders
from hub.api.limits import AuthGate, BodyLimit
from hub.api.outcomes import error_body
from hub.api.proxy import ForwardedHeaders, TrustedProxies
from hub.api.routes import (
    accounts,
    audit,
    auth,
    badges,
    calendar,
    floor,
    jobs,
    machines,
    me,
    members,
    reference,
    sessions,
)
from hub.api.schemas import Health
from hub.audit import AuditMiddleware, AuditTrail
from hub.control import HubControl
from hub.db.errors import describe
from hub.directory import policy_config
from hub.settings import HubSettings
from hub.web import PUBLIC_PAGES, mount_web

log = logging.getLogger(__name__)

#: Routes anyone may call: (method, path).
PUBLIC_ROUTES = frozenset({("GET", "/api/health"), ("POST", "/api/auth/login")}) | PUBLIC_PAGES
#: Where the API documentation and its OpenAPI schema are served (see ``api_docs``).
DOCS_PATH = "/docs"
OPENAPI_PATH = "/openapi.json"
#: Swagger UI's own files (JavaScript, CSS), from the ``fastapi-offline`` package.
DOCS_ASSETS = "/docs-assets"
DOCS_ASSETS_DIR = Path(str(resources.files("fastapi_offline") / "static"))

#: The routers, in the order their routes are matched.
ROUTERS = (
    auth,
    me,
    floor,
    sessions,
    jobs,
    machines,
    members,
    badges,
    reference,
    calendar,
    accounts,
    audit,
)
_ROLES_MARK = "\n\nRoles: "

TAGS = [
    {"name": "auth", "description": "Log in and out; tokens as cookie or bearer."},
    {"name": "me", "description": "A member's own trainings, time and sessions."},
    {"name": "live", "description": "The floor now: machines, edges, alerts."},
    {"name": "presence", "description": "Staff presence per zone."},
    {"name": "sessions", "description": "Usage sessions; end one."},
    {"name": "jobs", "description": "Print jobs and who started them."},
    {"name": "reports", "description": "Usage totals and CSV (small groups hidden)."},
    {"name": "machines", "description": "Machines, maintenance and print commands."},
    {"name": "members", "description": "Members, their programmes and trainings."},
    {"name": "badges", "description": "Badges, stored only as keyed hashes."},
    {"name": "trainings", "description": "Trainings and their validity."},
    {"name": "zones", "description": "Zones of the site."},
    {"name": "programmes", "description": "Programmes members belong to."},
    {"name": "slots", "description": "Weekly slots and dated exceptions."},
    {"name": "quotas", "description": "Time caps and forced breaks per age group."},
    {"name": "accounts", "description": "Login accounts and their roles."},
    {"name": "privacy", "description": "Export and erasure of a member's data."},
    {"name": "audit", "description": "Who did what, when, from where (admins)."},
    {"name": "system", "description": "Health."},
]

_FRENCH: dict[str, str] = {
    "missing": "Champ obligatoire",
    "extra_forbidden": "Champ inconnu",
    "string_pattern_mismatch": "Format invalide",
    "string_too_short": "Trop court",
    "string_too_long": "Trop long",
    "string_type": "Texte attendu",
    "int_parsing": "Nombre entier attendu",
    "int_type": "Nombre entier attendu",
    "int_from_float": "Nombre entier attendu",
    "float_parsing": "Nombre attendu",
    "float_type": "Nombre attendu",
    "bool_parsing": "Booléen attendu (true ou false)",
    "bool_type": "Booléen attendu (true ou false)",
    "greater_than": "Valeur trop petite",
    "greater_than_equal": "Valeur trop petite",
    "less_than": "Valeur trop grande",
    "less_than_equal": "Valeur trop grande",
    "enum": "Valeur non autorisée",
    "literal_error": "Valeur non autorisée",
    "date_parsing": "Date invalide (AAAA-MM-JJ)",
    "date_from_datetime_parsing": "Date invalide (AAAA-MM-JJ)",
    "date_from_datetime_inexact": "Date invalide (AAAA-MM-JJ)",
    "date_type": "Date invalide (AAAA-MM-JJ)",
    "time_parsing": "Heure invalide (HH:MM)",
    "time_type": "Heure invalide (HH:MM)",
    "datetime_parsing": "Date et heure invalides (AAAA-MM-JJTHH:MM)",
    "datetime_from_date_parsing": "Date et heure invalides (AAAA-MM-JJTHH:MM)",
    "datetime_type": "Date et heure invalides (AAAA-MM-JJTHH:MM)",
    "json_invalid": "JSON invalide",
    "json_type": "JSON invalide",
    "model_type": "Objet JSON attendu",
    "model_attributes_type": "Objet JSON attendu",
    "dict_type": "Objet JSON attendu",
    "list_type": "Liste attendue",
    "too_long": "Trop d'éléments",
    "too_short": "Pas assez d'éléments",
    "union_tag_invalid": "Valeur non autorisée",
}


def _french(error: dict[str, Any]) -> dict[str, Any]:
    """One pydantic error with a French message (our own ValueErrors are already French)."""
    kind = str(error.get("type", "value_error"))
    ctx = error.get("ctx") or {}
    if kind == "value_error":
        msg = str(error.get("msg", "")).removeprefix("Value error, ")
    elif kind == "assertion_error":
        msg = "Valeur invalide"
    else:
        msg = _FRENCH.get(kind, "Valeur invalide")
        for key, unit in (
            ("min_length", "min."),
            ("max_length", "max."),
            ("ge", "≥"),
            ("gt", ">"),
            ("le", "≤"),
            ("lt", "<"),
            ("expected", "attendu :"),
        ):
            if key in ctx:
                # pydantic lists expected values as "'a', 'b' or 'c'": say it in French.
                value = str(ctx[key]).replace("' or '", "' ou '")
                msg += f" ({unit} {value})"
                break
    return {"loc": list(error.get("loc", ())), "msg": msg, "type": kind}


#: One pydantic error with a French message (the web forms use it too).
french_error = _french


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": [_french(e) for e in exc.errors()]},
    )


_HTTP_FRENCH = {
    404: "Ressource introuvable",
    405: "Méthode non autorisée",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail: Any = exc.detail
    if isinstance(exc, StarletteHTTPException) and not isinstance(exc, HTTPException):
        detail = _HTTP_FRENCH.get(exc.status_code, detail)
    if detail == "There was an error parsing the body":  # FastAPI's, e.g. a non-UTF-8 body
        detail = "Corps de la requête illisible"
    return JSONResponse(
        status_code=exc.status_code, content=error_body(exc, detail), headers=exc.headers
    )


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("unhandled constraint violation on %s %s", request.method, request.url.path)
    return JSONResponse(
        status_code=status.HTTP_409_CONFLICT,
        content={"detail": "Conflit avec des données existantes"},
    )


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable on %s %s: %s", request.method, request.url.path, describe(exc))
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": "Base de données indisponible, réessayez dans un instant"},
    )


def api_routes(app: FastAPI) -> list[tuple[str, frozenset[str], APIRoute]]:
    """Every API route of ``app`` as (full path, methods, route), through included routers."""
    try:  # FastAPI >= 0.16x includes routers lazily
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI: routes are copied in
        contexts: list[Any] = list(app.routes)
    else:
        contexts = list(iter_route_contexts(app.routes))
    result = []
    for ctx in contexts:
        route = getattr(ctx, "original_route", ctx)
        if isinstance(route, APIRoute):
            result.append((str(ctx.path), frozenset(ctx.methods or ()), route))
    return result


def check_role_matrix(app: FastAPI) -> None:
    """Raise RuntimeError if a route does not declare exactly one capability.

    Every API route counts, under ``/api`` or not (the admins' ``/docs`` too); only
    FastAPI's own documentation routes in ``public`` mode are plain routes, outside it.
    """
    problems = []
    for path, methods, route in api_routes(app):
        guards = guard_of(route.dependencies)
        public = all((m, path) in PUBLIC_ROUTES for m in methods)
        if public and guards:
            problems.append(f"{sorted(methods)} {path} is public but guarded")
        elif not public and len(guards) != 1:
            problems.append(f"{sorted(methods)} {path} has {len(guards)} role guards")
    if problems:
        raise RuntimeError("role matrix incomplete: " + "; ".join(problems))


def create_app(
    settings: HubSettings,
    sessionmaker: sessionmaker[Session],
    control: HubControl,
    *,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None,
    password_hasher: PasswordHasher | None = None,
    login_throttle: LoginThrottle | None = None,
) -> FastAPI:
    """Build the API app.

    Args:
        settings: the hub's settings (site secret for badge hashes, token lifetime…).
        sessionmaker: factory of SQLAlchemy sessions on the hub's store.
        control: the running hub (``NullControl`` in tests).
        lifespan: the hub service's lifespan, when the API runs inside it.
        password_hasher: argon2 parameters (the library defaults when None; tests pass
            cheap ones).
        login_throttle: failed-login delays (5 free failures per username, 30 per
            address, then doubling delays up to ``settings.login_max_delay_s``).
    """
    docs = settings.docs_access
    public_docs = docs == "public"
    app = FastAPI(
        title="fabrique",
        version="1",
        summary="Équipements du FabLab et de la salle de jeux : accès, créneaux, usage.",
        description=(
            "REST API of the fabrique hub. Authenticate with `POST /api/auth/login`; the "
            "token is set as the `fabrique_session` cookie and may also be sent as "
            "`Authorization: Bearer <token>`. Every route lists the roles it admits."
        ),
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url=None,  # served below with local assets: no CDN (a site's network may be down)
        openapi_url=OPENAPI_PATH if public_docs else None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    app.state.sessionmaker = sessionmaker
    app.state.control = control
    app.state.policy = policy_config(settings)
    app.state.password_checker = PasswordChecker(password_hasher or pi_password_hasher())
    app.state.login_throttle = login_throttle or LoginThrottle(
        max_delay_s=settings.login_max_delay_s
    )
    app.state.audit = AuditTrail(sessionmaker, settings.audit_retention_days)

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(OperationalError, _database_down)

    @app.get("/api/health", response_model=Health, tags=["system"], summary="Liveness and database")
    def health(db: SessionDep) -> Health:
        """No authentication: for load balancers and the systemd watchdog."""
        try:
            db.execute(text("SELECT 1"))
        except OperationalError as err:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, detail="Base de données indisponible"
            ) from err
        return Health(status="ok", database="ok")

    _describe_roles(app.routes)
    for module in ROUTERS:
        _describe_roles(module.router.routes)
        app.include_router(module.router)
    if docs != "off":
        app.mount(DOCS_ASSETS, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    if docs == "admin":
        _admin_docs(app)
    elif public_docs:
        app.add_route(DOCS_PATH, _public_docs(app), include_in_schema=False)
    mount_web(app)
    check_role_matrix(app)
    _guard(app, settings, sessionmaker)
    log.info("API ready with %d routes (documentation: %s)", len(api_routes(app)), docs)
    return app


def _guard(app: FastAPI, settings: HubSettings, factory: sessionmaker[Session]) -> None:
    """The request-level protections, outermost first (Starlette runs the last added first).

    Client address and scheme from trusted proxies only; security headers on every
    answer; the audit trail; the body bound; authentication before any body is read.
    """
    public = {path for _, path in PUBLIC_ROUTES}
    app.add_middleware(AuthGate, settings=settings, sessions=factory, public=public)
    app.add_middleware(BodyLimit)
    app.add_middleware(AuditMiddleware, trail=app.state.audit)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(ForwardedHeaders, proxies=TrustedProxies(settings.trusted_proxies))


def _admin_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/openapi.json`` to admins only, through the role matrix.

    The Swagger UI page fetches the schema from the browser, which sends the admin's
    session cookie along (same origin); a bearer token works for scripts.
    """

    @app.get(
        OPENAPI_PATH,
        include_in_schema=False,
        dependencies=[allow(Capability.API_DOCS)],
    )
    def openapi_schema(request: Request) -> JSONResponse:
        schema = app.openapi()
        root_path = str(request.scope.get("root_path", "")).rstrip("/")
        if root_path and root_path not in {s.get("url") for s in schema.get("servers", [])}:
            # Behind a proxy prefix, as FastAPI's own route does: "Try it out" must work.
            schema = {**schema, "servers": [{"url": root_path}, *schema.get("servers", [])]}
        return JSONResponse(schema)

    @app.get(
        DOCS_PATH,
        include_in_schema=False,
        dependencies=[allow(Capability.API_DOCS)],
    )
    def swagger_ui(request: Request) -> HTMLResponse:
        return swagger_page(app, request)


def swagger_page(app: FastAPI, request: Request) -> HTMLResponse:
    """Swagger UI with its JavaScript and CSS served by the hub (no CDN)."""
    root_path = str(request.scope.get("root_path", "")).rstrip("/")
    return get_swagger_ui_html(
        openapi_url=root_path + OPENAPI_PATH,
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root_path}{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root_path}{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root_path}{DOCS_ASSETS}/favicon.png",
    )


def _public_docs(app: FastAPI) -> Callable[[Request], Awaitable[HTMLResponse]]:
    """The documentation page for anyone (``api_docs = "public"``): a plain route."""

    async def docs_page(request: Request) -> HTMLResponse:
        return swagger_page(app, request)

    return docs_page


def _describe_roles(routes: Sequence[Any]) -> None:
    """Append the admitted roles to each route's OpenAPI description (once)."""
    for route in routes:
        if not isinstance(route, APIRoute) or _ROLES_MARK in (route.description or ""):
            continue
        guards = guard_of(route.dependencies)
        roles = ", ".join(sorted(guards[0].roles)) if guards else "anyone"
        route.description = (route.description or "").strip() + f"{_ROLES_MARK}{roles}."
