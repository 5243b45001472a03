"""What a request may cost before a route runs: a bounded body, and a login before parsing.

* :class:`BodyLimit` bounds every request body by path prefix (:data:`BODY_LIMITS`,
  64 KiB by default, 4 KiB for the login). A declared ``Content-Length`` over the bound
  is refused at once (413) without reading anything; a chunked body is counted as it
  arrives and refused as soon as it passes the bound. The body is never read past it.
* :class:`AuthGate` refuses an unauthenticated request to a protected ``/api`` route
  (401) before its body is read: FastAPI reads and parses the body *before* it solves a
  route's dependencies, so the role guard alone would come too late. The principal it
  resolves is left in the scope (:data:`PRINCIPAL_KEY`) for
  :func:`hub.api.deps.current_principal`, so the token is looked up once.

Both answer in French, like the rest of the API.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from fastapi import HTTPException, status
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.auth import PRINCIPAL_KEY, Principal, resolve_token
from hub.api.deps import bearer_or_cookie
from hub.settings import HubSettings

#: Default bound of a request body (bytes): every JSON body of the API is far smaller.
DEFAULT_BODY_LIMIT = 64 * 1024
#: Bounds per path prefix (the longest matching prefix wins).
BODY_LIMITS: Mapping[str, int] = {"/api/auth/login": 4 * 1024}

TOO_LARGE = "Requête trop volumineuse : {limit} octets au plus"
BAD_LENGTH = "En-tête Content-Length invalide"
AUTH_REQUIRED = "Authentification requise"
AUTH_INVALID = "Session expirée ou invalide : reconnectez-vous"


class BodyTooLarge(HTTPException):
    """The body passed its bound; FastAPI lets HTTP errors through its body parsing."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=TOO_LARGE.format(limit=limit),
            headers={"Connection": "close"},
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return _header(scope, b"transfer-encoding") is not None or (
        length is not None and length.strip() not in ("", "0")
    )


async def _answer(
    scope: Scope, receive: Receive, send: Send, code: int, detail: str, **headers: str
) -> None:
    response = JSONResponse({"detail": detail}, status_code=code, headers=headers or None)
    await response(scope, receive, send)


class BodyLimit:
    """ASGI middleware bounding request bodies (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        limits: Mapping[str, int] = BODY_LIMITS,
        default: int = DEFAULT_BODY_LIMIT,
    ) -> None:
        self.app = app
        self.default = default
        self.limits = sorted(limits.items(), key=lambda kv: len(kv[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        return next((n for prefix, n in self.limits if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _answer(scope, receive, send, 400, BAD_LENGTH, connection="close")
                return
            if int(declared) > limit:
                await _answer(
                    scope, receive, send, 413, TOO_LARGE.format(limit=limit), connection="close"
                )
                return
        received = 0
        started = False

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded, tracked)
        except BodyTooLarge as err:
            if started:
                raise
            await _answer(
                scope, receive, send, err.status_code, str(err.detail), connection="close"
            )


class AuthGate:
    """ASGI middleware: a protected ``/api`` route needs a valid token before its body is read.

    ``public`` lists the paths anyone may call (health, login). The token is resolved on a
    worker thread (the store is synchronous); the app's error handlers still answer 401
    for a token that expires between here and the route.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: HubSettings,
        sessions: sessionmaker[Session],
        public: Collection[str],
        prefix: str = "/api/",
    ) -> None:
        self.app = app
        self.settings = settings
        self.sessions = sessions
        self.public = frozenset(public)
        self.prefix = prefix

    def _resolve(self, token: str) -> Principal | None:
        with self.sessions() as db:
            return resolve_token(db, self.settings, token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not path.startswith(self.prefix)
            or path.rstrip("/") in self.public
            or scope.get("method") == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        token = bearer_or_cookie(Request(scope))
        challenge: dict[str, Any] = {"www-authenticate": "Bearer"}
        if _has_body(scope):  # do not let the server drain a body nobody will read
            challenge["connection"] = "close"
        if token is None:
            await _answer(scope, receive, send, 401, AUTH_REQUIRED, **challenge)
            return
        principal = await run_in_threadpool(self._resolve, token)
        if principal is None:
            await _answer(scope, receive, send, 401, AUTH_INVALID, **challenge)
            return
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)
