"""The live floor (``/plancher``) and its alert actions.

The page is rendered whole on the server; ``/plancher/flux`` then pushes the tiles and
the alerts strip that changed (:mod:`hub.web.live`). Staff see first names and print
file names; coordinators see neither; only roles that may read the floor's alerts
(``floor.read``) get the strip, and only those that may resolve them its buttons.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from hub.api.auth import Capability
from hub.api.deps import ControlDep, SessionDep
from hub.api.routes import floor as api_floor
from hub.db.models import Alert
from hub.web.core import STAFF_ROLES, TEMPLATES, CsrfChecked, PageUser, can, page, render
from hub.web.live import Render, feed_of
from hub.web.tiles import FloorSnapshot, floor_snapshot
from protocol.messages import utcnow

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

_FRAGMENTS = TEMPLATES.env.get_template("_floor.html")


def floor_render(staff: bool, alerts: bool, tz: Any) -> Render:
    """The floor's fragments for one kind of viewer (``csrf`` is filled in by live.js)."""
    module: Any = _FRAGMENTS.make_module({})

    def render(snapshot: FloorSnapshot) -> dict[str, str]:
        out = {
            f"tile-{t.id}": str(module.tile(t.for_role(staff), staff, tz))
            for t in snapshot.tiles.values()
        }
        if alerts:
            out["alertes"] = str(module.alerts(snapshot.alerts, "", tz))
        return out

    return render


@router.get("/plancher", dependencies=[page(Capability.LIVE_READ)])
def floor_page(request: Request, db: SessionDep, control: ControlDep, user: PageUser) -> Response:
    show_alerts = can(user.role, Capability.FLOOR_READ)
    snapshot = floor_snapshot(db, control, alerts=show_alerts)
    return render(
        request,
        "plancher.html",
        {"snapshot": snapshot, "show_alerts": show_alerts},
        user=user,
    )


@router.get("/plancher/flux", dependencies=[page(Capability.LIVE_READ)])
def floor_stream(request: Request, db: SessionDep, user: PageUser) -> StreamingResponse:
    """Server-Sent Events: ``fragments`` (element id → HTML) and ``ping``."""
    db.close()  # the stream outlives the request: give its connection back to the pool now
    staff = user.role in STAFF_ROLES
    alerts = can(user.role, Capability.FLOOR_READ)
    tz = request.app.state.settings.tz
    view = f"floor:{'staff' if staff else 'anon'}:{'alerts' if alerts else ''}"
    feed = feed_of(request.app.state)
    return StreamingResponse(
        feed.stream(view, floor_render(staff, alerts, tz)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _back(request: Request, note: str) -> RedirectResponse:
    return RedirectResponse(f"/plancher?resultat={note}", status.HTTP_303_SEE_OTHER)


@router.post("/alertes/{alert_id}/vu", dependencies=[page(Capability.ALERT_RESOLVE), CsrfChecked])
def alert_seen(request: Request, alert_id: int, db: SessionDep, user: PageUser) -> RedirectResponse:
    """Mark an alert as seen: it stays on the strip, dimmed, until resolved."""
    alert = db.get(Alert, alert_id)
    if alert is not None and alert.seen_at is None:
        alert.seen_at = utcnow()
        db.commit()
        log.info("alert %d seen by account %d", alert_id, user.account_id)
    feed_of(request.app.state).poke()
    return _back(request, "vu")


@router.post(
    "/alertes/{alert_id}/resolu", dependencies=[page(Capability.ALERT_RESOLVE), CsrfChecked]
)
def alert_resolved(
    request: Request, alert_id: int, db: SessionDep, user: PageUser
) -> RedirectResponse:
    """Resolve an alert with the API's own route (already resolved: nothing to do)."""
    try:
        api_floor.resolve_alert(alert_id, db, user)
    except HTTPException as err:
        if err.status_code != status.HTTP_409_CONFLICT:
            raise
    feed_of(request.app.state).poke()
    return _back(request, "resolu")
