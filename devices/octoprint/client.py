"""An asyncio client for OctoPrint's REST API (httpx), verified against 1.11.

Every call sends the *user's* API key in ``X-Api-Key`` (never the deprecated global
key, research §5.5 pitfall 2) and returns a frozen model from
:mod:`devices.octoprint.models`. Errors are translated at this boundary, chained
with ``raise … from err``::

    httpx.TimeoutException          -> DeviceTimeout
    other httpx transport errors    -> DeviceUnavailable    (refused, DNS, reset)
    HTTP 401 / 403                  -> DeviceAuthError      (wrong or missing key)
    HTTP 400 "CSRF validation"      -> DeviceAuthError      (POST with an unknown key)
    HTTP 429                        -> DeviceAuthError      (too many failed logins)
    HTTP 409 on GET /api/printer    -> PrinterOffline       (printer not connected)
    HTTP 409 on a command           -> CommandRefused       (e.g. "Printer is not
                                                             operational")
    other HTTP error status         -> DeviceProtocolError  (with OctoPrint's text)
    body not JSON / wrong shape     -> DeviceProtocolError

``PrinterOffline`` and ``CommandRefused`` are :class:`DeviceProtocolError`
subclasses: OctoPrint answered, but the printer's state did not allow the request.

The client is an async context manager that creates its ``httpx.AsyncClient`` on
entry (or uses the one passed in, which it then never closes). Entering it again
while open is allowed and counted, so the :class:`OctoPrintFollower` that owns a
printer's connection and the code that sends commands can share one client.
"""

from __future__ import annotations

import json
import logging
from types import TracebackType
from typing import Any, Self

import httpx

from devices.errors import (
    DeviceAuthError,
    DeviceProtocolError,
    DeviceTimeout,
    DeviceUnavailable,
)
from devices.octoprint.models import (
    ConnectionInfo,
    JobStatus,
    LoginSession,
    PrinterStatus,
    UploadResult,
    Version,
    parse_model,
)

__all__ = ["CommandRefused", "OctoPrintClient", "PrinterOffline"]

_LOGGER = logging.getLogger(__name__)


class CommandRefused(DeviceProtocolError):
    """OctoPrint refused a request in the printer's current state (HTTP 409).

    Attributes:
        detail: OctoPrint's explanation, e.g. "Printer is not operational".
    """

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class PrinterOffline(CommandRefused):
    """OctoPrint is up but the printer is not connected to it (409 on /api/printer)."""


class OctoPrintClient:
    """REST client for one OctoPrint instance.

    Args:
        base_url: OctoPrint's root URL, e.g. ``http://127.0.0.1:5000``.
        api_key: a user's API key (Settings → Application Keys, or the user's key).
        http: an existing ``httpx.AsyncClient`` to share (e.g. one per edge for
            all its printers); the client creates and closes its own when omitted.
        timeout: seconds for each request (connect, read, write, pool).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._api_key = api_key
        self._shared_http = http
        self._http: httpx.AsyncClient | None = None
        self._depth = 0

    def __repr__(self) -> str:
        return f"OctoPrintClient({self.base_url!r})"  # never the key

    async def __aenter__(self) -> Self:
        if self._depth == 0:
            self._http = self._shared_http or httpx.AsyncClient(timeout=self.timeout)
        self._depth += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth == 0 and self._http is not None:
            http, self._http = self._http, None
            if self._shared_http is None:
                await http.aclose()

    @property
    def websocket_url(self) -> str:
        """The raw push socket, ``ws://host:port/sockjs/websocket`` (no SockJS framing)."""
        scheme, sep, rest = self.base_url.partition("://")
        ws_scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
        return f"{ws_scheme}{sep}{rest}/sockjs/websocket"

    # ------------------------------------------------------------------- reads

    async def version(self) -> Version:
        """``GET /api/version``: answers even when the printer is offline.

        Raises:
            DeviceError: see the module docstring.
        """
        return parse_model(Version, await self._get_json("/api/version"), "GET /api/version")

    async def printer(self) -> PrinterStatus:
        """``GET /api/printer``: state, flags and temperatures.

        Raises:
            PrinterOffline: OctoPrint is up but no printer is connected to it.
            DeviceError: see the module docstring.
        """
        response = await self._request("GET /api/printer", "GET", "/api/printer")
        if response.status_code == httpx.codes.CONFLICT:
            detail = _detail(response)
            raise PrinterOffline(f"{self!r}: printer not connected to OctoPrint: {detail}", detail)
        return PrinterStatus.from_api(self._json(response, "GET /api/printer"))

    async def job(self) -> JobStatus:
        """``GET /api/job``: the selected file and the progress (works while offline).

        Raises:
            DeviceError: see the module docstring.
        """
        return JobStatus.from_api(await self._get_json("/api/job"))

    async def connection(self) -> ConnectionInfo:
        """``GET /api/connection``: the printer's serial link and the available ports.

        Raises:
            DeviceError: see the module docstring.
        """
        return ConnectionInfo.from_api(await self._get_json("/api/connection"))

    # ------------------------------------------------------------------- session

    async def passive_login(self) -> LoginSession:
        """``POST /api/login {"passive": true}``: a session for the push socket.

        Refuses the deprecated global API key (whose user is ``_api``): it cannot
        authenticate a socket (FDM Monster rejects it for the same reason).

        Raises:
            DeviceAuthError: key refused, rate-limited after failed logins, or the
                global key was used.
            DeviceError: see the module docstring.
        """
        what = "POST /api/login"
        response = await self._request(what, "POST", "/api/login", json={"passive": True})
        self._check(response, what, expect=(200,))
        body = self._json(response, what)
        session = parse_model(LoginSession, body, "POST /api/login")
        if session.name == "_api":
            raise DeviceAuthError(
                f"{self!r}: the global API key cannot follow a printer; use a user's key"
            )
        return session

    # ------------------------------------------------------------------- commands

    async def connect(
        self,
        port: str | None = None,
        *,
        baudrate: int | None = None,
        printer_profile: str | None = None,
    ) -> None:
        """Ask OctoPrint to open the serial link to the printer.

        ``port=None`` lets OctoPrint pick its preferred port ("VIRTUAL" for the
        virtual printer). ``autoconnect``/``save`` are never sent: they would be
        written to OctoPrint's config (research §5.5 pitfall 3).

        Raises:
            DeviceError: see the module docstring.
        """
        body: dict[str, Any] = {"command": "connect"}
        if port is not None:
            body["port"] = port
        if baudrate is not None:
            body["baudrate"] = baudrate
        if printer_profile is not None:
            body["printerProfile"] = printer_profile
        await self._command("/api/connection", body, "connect")

    async def disconnect(self) -> None:
        """Ask OctoPrint to close the serial link to the printer.

        Raises:
            DeviceError: see the module docstring.
        """
        await self._command("/api/connection", {"command": "disconnect"}, "disconnect")

    async def upload(
        self, name: str, data: bytes, *, select: bool = False, print_: bool = False
    ) -> UploadResult:
        """Upload a G-code file to OctoPrint's local storage.

        Args:
            name: the file name (OctoPrint sanitises it; the result has the final one).
            data: the file's content.
            select: select the file for printing.
            print_: select it and start printing at once.

        Returns:
            Where the file landed and what OctoPrint did: when the printer is busy
            or not operational, OctoPrint stores the file but silently neither
            selects nor prints it, so check ``selected``/``printing``.

        Raises:
            DeviceError: see the module docstring.
        """
        what = f"upload {name!r}"
        form = {"select": _bool(select or print_), "print": _bool(print_)}
        response = await self._request(
            what,
            "POST",
            "/api/files/local",
            files={"file": (name, data, "application/octet-stream")},
            data=form,
        )
        self._check(response, what, expect=(200, 201))
        result = UploadResult.from_api(self._json(response, what))
        _LOGGER.info("%r: uploaded %s (%d bytes, print=%s)", self, result.path, len(data), print_)
        return result

    async def select(self, path: str, *, print_: bool = False) -> None:
        """Select an already uploaded local file, optionally starting the print.

        Raises:
            CommandRefused: the printer cannot take the file now.
            DeviceError: see the module docstring.
        """
        body = {"command": "select", "print": print_}
        await self._command(f"/api/files/local/{path.lstrip('/')}", body, f"select {path!r}")

    async def start(self) -> None:
        """Start printing the selected file.

        Raises:
            CommandRefused: not operational, no file selected, or already printing.
            DeviceError: see the module docstring.
        """
        await self._command("/api/job", {"command": "start"}, "start")

    async def pause(self) -> None:
        """Pause the running print (no effect if already paused).

        Raises:
            CommandRefused: no print job to pause.
            DeviceError: see the module docstring.
        """
        await self._command("/api/job", {"command": "pause", "action": "pause"}, "pause")

    async def resume(self) -> None:
        """Resume a paused print (no effect if not paused).

        Raises:
            CommandRefused: no print job to resume.
            DeviceError: see the module docstring.
        """
        await self._command("/api/job", {"command": "pause", "action": "resume"}, "resume")

    async def cancel(self) -> None:
        """Cancel the running or paused print.

        Raises:
            CommandRefused: no print job to cancel.
            DeviceError: see the module docstring.
        """
        await self._command("/api/job", {"command": "cancel"}, "cancel")

    # ------------------------------------------------------------------- plumbing

    async def _command(self, path: str, body: dict[str, Any], what: str) -> None:
        """POST a JSON command that answers 204 (or 200) with no useful body."""
        response = await self._request(what, "POST", path, json=body)
        self._check(response, what, expect=(200, 204))
        _LOGGER.info("%r: %s", self, what)

    async def _get_json(self, path: str) -> object:
        what = f"GET {path}"
        response = await self._request(what, "GET", path)
        self._check(response, what, expect=(200,))
        return self._json(response, what)

    async def _request(self, what: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; transport failures become DeviceUnavailable/DeviceTimeout.

        401/403/429 are translated here too, because they mean the same for every call.
        """
        if self._http is None:
            raise DeviceUnavailable(f"{self!r} is not open (use 'async with')")
        try:
            response = await self._http.request(
                method,
                self.base_url + path,
                headers={"X-Api-Key": self._api_key},
                timeout=self.timeout,
                **kwargs,
            )
        except httpx.TimeoutException as err:
            raise DeviceTimeout(f"{self!r}: {what} timed out after {self.timeout} s") from err
        except httpx.TransportError as err:
            raise DeviceUnavailable(f"{self!r}: {what}: {err or type(err).__name__}") from err
        except httpx.HTTPError as err:
            raise DeviceProtocolError(f"{self!r}: {what}: {err}") from err
        status = response.status_code
        if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            raise DeviceAuthError(
                f"{self!r}: {what}: OctoPrint refused the API key "
                f"(HTTP {status}: {_detail(response)})"
            )
        if status == httpx.codes.BAD_REQUEST and "CSRF" in _detail(response):
            # requests with a valid API key are exempt from CSRF checks: OctoPrint
            # ignored an unknown key, then refused the cookie-less POST
            raise DeviceAuthError(f"{self!r}: {what}: OctoPrint did not accept the API key")
        if status == httpx.codes.TOO_MANY_REQUESTS:
            raise DeviceAuthError(
                f"{self!r}: {what}: rate-limited after failed logins "
                f"(HTTP 429: {_detail(response)})"
            )
        return response

    def _check(self, response: httpx.Response, what: str, *, expect: tuple[int, ...]) -> None:
        status = response.status_code
        if status in expect:
            return
        detail = _detail(response)
        if status == httpx.codes.CONFLICT:
            raise CommandRefused(f"{self!r}: {what} refused by OctoPrint: {detail}", detail)
        raise DeviceProtocolError(f"{self!r}: {what}: HTTP {status}: {detail}")

    def _json(self, response: httpx.Response, what: str) -> object:
        try:
            body: object = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DeviceProtocolError(
                f"{self!r}: {what}: HTTP {response.status_code}, body is not JSON"
            ) from err
        return body


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _detail(response: httpx.Response) -> str:
    """OctoPrint's error text: ``{"error": "…"}`` for API errors, else the body's start."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    text = response.text.strip()
    if not text or "html" in response.headers.get("content-type", ""):
        return response.reason_phrase
    return text[:200]
