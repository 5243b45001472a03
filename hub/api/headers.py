"""Security headers on every HTTP response of the hub.

* ``Content-Security-Policy`` per path prefix (the longest matching prefix wins):
  :data:`STRICT_CSP` by default (self-hosted scripts and styles only, no inline code,
  no framing, no plugins), :data:`DOCS_CSP` for the Swagger UI page, whose bootstrap
  script and styles are inline.
* ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin`` (not
  ``no-referrer``: with it a browser sends ``Origin: null`` on same-origin form posts,
  which the pages' CSRF check must refuse),
  ``X-Frame-Options: DENY`` (for browsers without ``frame-ancestors``),
  ``Cross-Origin-Opener-Policy: same-origin``, a restrictive ``Permissions-Policy``.
* ``Strict-Transport-Security`` when the request came over TLS (the scheme, as rewritten
  by :mod:`hub.api.proxy` from a trusted proxy's ``X-Forwarded-Proto``).
* ``Cache-Control: no-store`` on every ``/api`` answer (member data, exports, tokens)
  unless the route set its own.

A header the application already set is kept; the ``server`` header is never sent
(uvicorn's is turned off in :mod:`hub.main`, and any other is removed here).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BASE = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def csp(**overrides: str) -> str:
    """A policy: :data:`STRICT_CSP`'s directives with ``overrides`` (``script_src=…``)."""
    directives = {**_BASE, **{k.replace("_", "-"): v for k, v in overrides.items()}}
    return "; ".join(f"{name} {value}" for name, value in directives.items())


#: Default policy: only the hub's own static files, no inline script or style.
STRICT_CSP = csp()
#: Swagger UI: its page starts the bundle with an inline script and inline styles.
DOCS_CSP = csp(script_src="'self' 'unsafe-inline'", style_src="'self' 'unsafe-inline'")
#: Policies per path prefix.
CSP_BY_PREFIX: Mapping[str, str] = {"/docs": DOCS_CSP}
HSTS = "max-age=31536000; includeSubDomains"

_FIXED = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)


class SecurityHeaders:
    """ASGI middleware adding the headers of the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        csp_by_prefix: Mapping[str, str] = CSP_BY_PREFIX,
        default_csp: str = STRICT_CSP,
        no_store_prefixes: tuple[str, ...] = ("/api/",),
    ) -> None:
        self.app = app
        self.default_csp = default_csp
        self.policies = sorted(csp_by_prefix.items(), key=lambda kv: len(kv[0]), reverse=True)
        self.no_store_prefixes = no_store_prefixes

    def csp_for(self, path: str) -> str:
        return next((p for prefix, p in self.policies if path.startswith(prefix)), self.default_csp)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        policy = self.csp_for(path)
        tls = scope.get("scheme") == "https"
        no_store = path.startswith(self.no_store_prefixes)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "server" in headers:
                    del headers["server"]
                headers.setdefault("content-security-policy", policy)
                for name, value in _FIXED:
                    headers.setdefault(name.decode(), value.decode())
                if tls:
                    headers.setdefault("strict-transport-security", HSTS)
                if no_store:
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, with_headers)
