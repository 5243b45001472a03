"""Composition root of the hub process: store, service, API, HTTP server.

Everything the hub process holds is built here, explicitly, from one
:class:`~hub.settings.HubSettings`:

1. the schema is migrated (Alembic, idempotent);
2. the engine and session factory are created (:mod:`hub.db.engine`);
3. the :class:`~hub.service.Hub` service is built (nothing connects yet);
4. the API app is created with a lifespan that starts the service when the HTTP
   server starts and stops it (journal drained, offline status published) when the
   server stops.

:func:`run_hub` serves it in the foreground (``fabrique hub run``);
:class:`HubServer` serves it on a background thread (``fabrique demo``, tests).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import metadata

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hub.api.app import create_app
from hub.db.engine import make_engine, make_sessionmaker
from hub.db.migrate import upgrade
from hub.service import Hub
from hub.settings import HubSettings

logger = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The hub cannot start (database unreachable or not migratable, port taken…)."""


def software_version() -> str:
    """The installed distribution's version ("" when run from a bare source tree)."""
    try:
        return metadata.version("fabrique")
    except metadata.PackageNotFoundError:
        return ""


def redacted_url(url: str) -> str:
    """The database URL without its password, for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


@dataclass(frozen=True, slots=True)
class HubParts:
    """What :func:`assemble` built; the service is started by the app's lifespan."""

    settings: HubSettings
    engine: Engine
    factory: sessionmaker[Session]
    hub: Hub
    app: FastAPI
    #: Set once the lifespan has started the service (stays set after it stops).
    served: threading.Event


def migrate(settings: HubSettings) -> None:
    """Bring the store to the latest schema.

    Raises:
        StartupError: the database is unreachable or the migration failed.
    """
    try:
        upgrade(settings.database_url)
    except SQLAlchemyError as err:
        raise StartupError(
            f"cannot migrate the database {redacted_url(settings.database_url)}: {err}"
        ) from err


def assemble(
    settings: HubSettings, *, run_migrations: bool = True, snapshot_workers: int | None = None
) -> HubParts:
    """Build the hub process's objects from its settings (see the module docstring).

    Args:
        settings: the hub's settings.
        run_migrations: migrate the store first.
        snapshot_workers: processes compiling policy snapshots (None: the service's
            default; 0: compile on a thread, no child process at all).

    Raises:
        StartupError: the store cannot be opened or migrated.
    """
    if run_migrations:
        migrate(settings)
    try:
        engine = make_engine(settings.database_url)
    except (ArgumentError, SQLAlchemyError) as err:
        raise StartupError(
            f"cannot open the database {redacted_url(settings.database_url)}: {err}"
        ) from err
    factory = make_sessionmaker(engine)
    if snapshot_workers is None:
        hub = Hub(settings, factory, version=software_version())
    else:
        hub = Hub(settings, factory, version=software_version(), snapshot_workers=snapshot_workers)
    served = threading.Event()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.start()
        served.set()
        try:
            yield
        finally:
            hub.stop()
            engine.dispose()

    app = create_app(settings, factory, hub, lifespan=lifespan)
    return HubParts(settings, engine, factory, hub, app, served)


def build_app(settings: HubSettings) -> FastAPI:
    """The hub's ASGI app, ready to serve (the hub service starts with the server)."""
    return assemble(settings).app


def check_port(host: str, port: int) -> None:
    """Fail early, with a clear message, when the HTTP port is already taken.

    Raises:
        StartupError: nothing can listen on ``host:port``.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise StartupError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err


def uvicorn_config(app: FastAPI, settings: HubSettings, lifespan: str = "on") -> uvicorn.Config:
    """How uvicorn serves the hub's app.

    No ``server`` header (it names the software to an attacker), and uvicorn's own
    ``X-Forwarded-*`` handling off: it would trust any loopback client by default;
    :mod:`hub.api.proxy` believes only ``settings.trusted_proxies``.
    """
    # log_config=None: keep the process's logging (set up by the CLI) instead of uvicorn's.
    return uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan=lifespan,  # type: ignore[arg-type]
        server_header=False,
        proxy_headers=False,
        # Open live pages (Server-Sent Events) never finish by themselves: give them a
        # few seconds, then close them so the hub stops (their browsers reconnect).
        timeout_graceful_shutdown=3,
    )


def _uvicorn_config(parts: HubParts) -> uvicorn.Config:
    return uvicorn_config(parts.app, parts.settings)


def run_hub(settings: HubSettings) -> None:
    """Serve the hub in the foreground until SIGINT/SIGTERM (``fabrique hub run``).

    Raises:
        StartupError: the store cannot be opened or migrated, or the server could
            not start (e.g. the HTTP port is taken).
    """
    check_port(settings.http_host, settings.http_port)
    parts = assemble(settings)
    server = uvicorn.Server(_uvicorn_config(parts))
    try:
        server.run()
    except SystemExit as err:
        if err.code in (0, None):
            raise  # a signal handler ending the process after a clean shutdown
        # uvicorn exits with an error code when it cannot bind the port
        raise StartupError(
            f"the HTTP server could not start on {settings.http_host}:{settings.http_port}"
        ) from err
    if not parts.served.is_set():
        raise StartupError(
            f"the HTTP server could not start on {settings.http_host}:{settings.http_port}"
        )


class HubServer:
    """The hub (service and API) served by uvicorn on a background thread.

    For the demo and tests, where the main thread has other work (a console, a
    scenario). Signals stay with the main thread: call :meth:`stop` to shut down.
    """

    def __init__(
        self,
        settings: HubSettings,
        *,
        run_migrations: bool = True,
        snapshot_workers: int | None = None,
    ) -> None:
        """Assign only; :meth:`start` builds and serves (arguments as :func:`assemble`)."""
        self._settings = settings
        self._run_migrations = run_migrations
        self._snapshot_workers = snapshot_workers
        self._parts: HubParts | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def hub(self) -> Hub:
        """The running hub service."""
        if self._parts is None:
            raise RuntimeError("HubServer is not started")
        return self._parts.hub

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://{self._settings.http_host}:{self._settings.http_port}"

    def start(self, timeout: float = 60.0) -> None:
        """Assemble, serve, and return once the service is started and the port open.

        Raises:
            StartupError: assembly failed, or the server stopped or did not come up
                within ``timeout`` seconds.
        """
        check_port(self._settings.http_host, self._settings.http_port)
        self._parts = assemble(
            self._settings,
            run_migrations=self._run_migrations,
            snapshot_workers=self._snapshot_workers,
        )
        server = uvicorn.Server(_uvicorn_config(self._parts))
        self._server = server
        thread = threading.Thread(target=self._serve, name="hub-http", daemon=True)
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise StartupError(
                    "the hub did not start on "
                    f"{self._settings.http_host}:{self._settings.http_port} (see the log)"
                )
            time.sleep(0.05)
        logger.info("hub serving on %s", self.url)

    def _serve(self) -> None:
        assert self._server is not None
        try:
            self._server.run()
        except SystemExit:
            logger.error("the HTTP server exited during start-up")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving; the lifespan stops the service. Idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the hub's HTTP thread did not stop within %.0f s", timeout)
            self._thread = None

    def __enter__(self) -> HubServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
