"""The hub's web UI: server-rendered French pages beside the REST API (see README.md).

:func:`mount_web` adds the pages, their error pages and the static files to the API
app built by :func:`hub.api.app.create_app`. Pages share the API's dependencies
(store session, live hub, settings) and its role matrix: each page route declares one
capability with :func:`hub.web.core.page`, checked by ``check_role_matrix`` like the
API's own routes. :data:`PUBLIC_PAGES` lists the few pages anyone may open.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from hub.web import calendar, floor, kiosk, machine, members, my_time, reports, session
from hub.web.core import ERROR_HANDLERS, STATIC_DIR, STATIC_PATH
from hub.web.live import FloorFeed

#: Page routers, in the order their routes are matched.
ROUTERS = (session, floor, machine, kiosk, members, calendar, reports, my_time)

#: (method, path) of the pages that need no login (added to the API's public routes).
PUBLIC_PAGES: frozenset[tuple[str, str]] = frozenset().union(
    *(getattr(module, "PUBLIC", frozenset()) for module in ROUTERS)
)


def mount_web(app: FastAPI) -> None:
    """Add the web UI to ``app``: static files, error pages, then every page router."""
    app.state.floor_feed = FloorFeed(app.state.sessionmaker, app.state.control)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")
    for exc, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(exc, handler)
    for module in ROUTERS:
        app.include_router(module.router)
