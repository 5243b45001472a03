"""What every page shares: templates, :func:`render`, the page guard and CSRF tokens.

* :func:`page` is a page's entry in the role matrix: ``dependencies=[page(Capability.X)]``
  (or ``PageUser = Depends(page(...))`` as a parameter). It is a
  :class:`~hub.api.deps.RoleGuard`, so :func:`hub.api.app.check_role_matrix` counts it
  like an API route's guard, and it admits exactly the roles of
  :data:`~hub.api.auth.MATRIX`. A visitor without a valid session is sent to the login
  page (:class:`LoginRequired`); a role without the capability gets the French 403 page
  (:class:`PageForbidden`). Every action (POST) is guarded the same way on the server.
* :func:`render` renders one template with what the layout needs (the user, the
  navigation for their role, the CSRF token, the site's name).
* CSRF: the session cookie is ``SameSite=Strict`` and every form also carries
  :func:`csrf_token` (an HMAC of the session token), checked by :func:`check_csrf`
  together with the request's ``Origin``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from hub.api.auth import MATRIX, Capability, Principal, resolve_token
from hub.api.deps import RoleGuard, SessionDep, SettingsDep, bearer_or_cookie
from hub.db.models import Role
from hub.settings import HubSettings

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
STATIC_DIR = HERE / "static"
STATIC_PATH = "/static"
LOGIN_PATH = "/connexion"

#: The roles that see people's first names and print file names on the floor.
STAFF_ROLES = frozenset({Role.ADMIN, Role.FABMANAGER, Role.ANIMATOR})

ROLE_LABELS = {
    Role.ADMIN: "Administration",
    Role.FABMANAGER: "Fabmanager",
    Role.ANIMATOR: "Animation",
    Role.COORDINATOR: "Coordination",
    Role.MEMBER: "Membre",
}


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    href: str
    capability: Capability
    #: The body class (page name) that marks this item as current.
    page: str


#: The header's navigation; an item shows only to roles granted its capability.
NAV = (
    NavItem("Plancher", "/plancher", Capability.LIVE_READ, "plancher"),
    NavItem("Membres", "/membres", Capability.MEMBERS_IDENTIFY, "membres"),
    NavItem("Créneaux", "/creneaux", Capability.REFERENCE_READ, "creneaux"),
    NavItem("Rapports", "/rapports", Capability.REPORTS_READ, "rapports"),
    NavItem("Kiosques", "/kiosques", Capability.REFERENCE_WRITE, "kiosques"),
    NavItem("Mon temps", "/mon-temps", Capability.SELF, "mon-temps"),
    NavItem("API", "/docs", Capability.API_DOCS, "docs"),
)


def can(role: Role | None, capability: Capability) -> bool:
    """Whether ``role`` is granted ``capability`` by the role matrix."""
    return role is not None and role in MATRIX[capability]


def home_of(role: Role) -> str:
    """Where ``/`` takes a person: staff to the floor, coordinators to the reports,
    members to their own time."""
    if can(role, Capability.FLOOR_READ):
        return "/plancher"
    if can(role, Capability.REPORTS_READ):
        return "/rapports"
    return "/mon-temps"


# --------------------------------------------------------------------------- errors


class LoginRequired(Exception):
    """No valid session: the page handler redirects to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageForbidden(Exception):
    """The role lacks the capability: the French 403 page."""

    def __init__(self, principal: Principal, capability: Capability) -> None:
        super().__init__(capability.value)
        self.principal = principal
        self.capability = capability


def login_redirect(next_path: str) -> RedirectResponse:
    target = LOGIN_PATH
    if next_path and next_path not in ("/", LOGIN_PATH):
        target += "?suite=" + quote(next_path, safe="/")
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    if request.method != "GET" or request.headers.get("accept") == "text/event-stream":
        return HTMLResponse("Session expirée : reconnectez-vous", status.HTTP_401_UNAUTHORIZED)
    return login_redirect(exc.next_path)


async def _forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageForbidden)
    return render(
        request,
        "erreur.html",
        {
            "title": "Accès refusé",
            "message": "Votre rôle ne permet pas d'ouvrir cette page ou de faire cette action.",
        },
        user=exc.principal,
        status_code=status.HTTP_403_FORBIDDEN,
    )


class PageNotFound(Exception):
    """A page's object does not exist (a deleted member, a stale link): the French 404."""

    def __init__(self, what: str, user: Principal | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.user = user


async def _not_found(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageNotFound)
    return render(
        request,
        "erreur.html",
        {"title": f"{exc.what} introuvable", "message": "Le lien est peut-être périmé."},
        user=exc.user,
        status_code=status.HTTP_404_NOT_FOUND,
    )


ERROR_HANDLERS = {
    LoginRequired: _login_required,
    PageForbidden: _forbidden,
    PageNotFound: _not_found,
}


# --------------------------------------------------------------------------- who


def optional_user(request: Request, db: SessionDep, settings: SettingsDep) -> Principal | None:
    """The logged-in account of a page request, or None (no redirect)."""
    token = bearer_or_cookie(request)
    if token is None:
        return None
    return resolve_token(db, settings, token)


OptionalUser = Annotated[Principal | None, Depends(optional_user)]


def page_user(request: Request, user: OptionalUser) -> Principal:
    """The logged-in account, or :class:`LoginRequired`."""
    if user is None:
        path = request.url.path
        if request.url.query and request.method == "GET":
            path += "?" + request.url.query
        raise LoginRequired(path)
    return user


#: The logged-in account as a page parameter; the route's ``page(...)`` guard checks the role.
PageUser = Annotated[Principal, Depends(page_user)]


class PageGuard(RoleGuard):
    """A page's role check: login page when logged out, 403 page when not allowed."""

    def __call__(self, principal: PageUser) -> Principal:
        if principal.role not in self.roles:
            log.info(
                "account %d (%s) refused page %s",
                principal.account_id,
                principal.role,
                self.capability,
            )
            raise PageForbidden(principal, self.capability)
        return principal


_PAGE_GUARDS = {cap: PageGuard(cap) for cap in Capability}


def page(capability: Capability) -> Any:
    """``dependencies=[page(Capability.X)]``: the page's entry in the role matrix.

    Take the account as a parameter with :data:`PageUser` (resolved once per request).
    """
    return Depends(_PAGE_GUARDS[capability])


# --------------------------------------------------------------------------- CSRF


def csrf_token(settings: HubSettings, session_token: str | None) -> str:
    """The form token of a session: HMAC of its cookie token, keyed with the session secret."""
    if not session_token:
        return ""
    key = settings.session_secret.get_secret_value().encode()
    return hmac.new(key, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()[:40]


class CsrfError(Exception):
    """A form came without its token, or from another origin."""


async def _csrf_failed(request: Request, exc: Exception) -> Response:
    log.warning("form refused on %s: %s", request.url.path, exc)
    return HTMLResponse(
        "Formulaire refusé : rechargez la page et recommencez.", status.HTTP_403_FORBIDDEN
    )


ERROR_HANDLERS[CsrfError] = _csrf_failed


def same_origin(request: Request) -> bool:
    """True unless the browser says the request comes from another origin."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", request.url.netloc)


def check_csrf(request: Request, settings: SettingsDep, csrf: Annotated[str, Form()] = "") -> None:
    """Dependency of every page POST: same origin, and the session's form token."""
    if not same_origin(request):
        raise CsrfError("cross-origin form")
    expected = csrf_token(settings, bearer_or_cookie(request))
    if not expected or not hmac.compare_digest(expected, csrf):
        raise CsrfError("missing or wrong form token")


CsrfChecked = Depends(check_csrf)


# --------------------------------------------------------------------------- render


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    user: Principal | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render ``template`` inside the layout.

    The layout gets ``user`` (the logged-in principal or None), ``nav`` (the items
    their role may open), ``csrf`` (the form token to put in every form), ``site_name``
    and ``can(capability_name)``; ``context`` adds the page's own values.
    """
    settings: HubSettings = request.app.state.settings
    role = user.role if user is not None else None
    ctx: dict[str, Any] = {
        "user": user,
        "role_label": ROLE_LABELS.get(role, "") if role is not None else "",
        "nav": [item for item in NAV if can(role, item.capability)] if user else [],
        "csrf": csrf_token(settings, bearer_or_cookie(request)) if user else "",
        "site_name": settings.site_name,
        "can": lambda name: can(role, Capability(name)),
        "tz": settings.tz,
        "staff": role in STAFF_ROLES,
    }
    ctx.update(context or {})
    return TEMPLATES.TemplateResponse(request, template, ctx, status_code=status_code)


def csrf_field(token: str) -> Markup:
    """The hidden form field carrying the CSRF token (``{{ csrf_field(csrf) }}``)."""
    return Markup('<input type="hidden" name="csrf" value="{}">').format(token)


TEMPLATES.env.globals["csrf_field"] = csrf_field


def hhmm(value: datetime | None, tz: tzinfo | None = None) -> str:
    """``15h30`` (in ``tz``, the site's time zone)."""
    if value is None:
        return ""
    local = value.astimezone(tz)
    return f"{local.hour}h{local.minute:02d}"


def duration(seconds: float | None) -> str:
    """``1 h 05``, ``12 min``, ``45 s``."""
    if seconds is None:
        return ""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d}"
    if s >= 60:
        return f"{s // 60} min"
    return f"{s} s"


def number(value: float | None, digits: int = 0) -> str:
    """A French decimal (``21,5``); an em dash when unknown."""
    if value is None:
        return "—"
    return f"{value:.{digits}f}".replace(".", ",")


TEMPLATES.env.filters["hhmm"] = hhmm
TEMPLATES.env.filters["duration"] = duration
TEMPLATES.env.filters["number"] = number
