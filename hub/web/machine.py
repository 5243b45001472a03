"""One machine (``/machines/{id}``): its live tile, today's sessions and jobs, and actions.

Every action goes through a confirmation page (``/machines/{id}/confirmer``) and is
then posted to one of two routes, each guarded by its own capability, which call the
API's own route functions: :func:`hub.api.routes.sessions.end_session` /
``extend_session`` (``sessions.end``) and :func:`hub.api.routes.machines.set_maintenance`
/ ``command`` (``machine.command``). Those routes wait for the edge's answer, and the
machine page shows it once, through a short-lived cookie: applied, refused and why (in
the edge's French words), or no answer in time. A laser in fault (an alarm, or waiting
for a re-arm after a hard limit or an abort) offers staff "Réarmer": the edge unlocks
GRBL (``$X``), homes it when homing is enabled, and journals who did it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import select

from hub.api.auth import Capability
from hub.api.deps import ControlDep, SessionDep
from hub.api.routes import machines as api_machines
from hub.api.routes import sessions as api_sessions
from hub.api.schemas import CommandRequest, MaintenanceRequest
from hub.api.views import first_name
from hub.api.writes import ReferenceWrite
from hub.db.models import Machine, MachineJob, Member, UsageSession
from hub.web.core import STAFF_ROLES, CsrfChecked, PageUser, can, page, render
from hub.web.floor import floor_render
from hub.web.live import feed_of
from hub.web.tiles import Tile, floor_snapshot
from protocol.messages import MachineAction, Outcome

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

FLASH_COOKIE = "fabrique_flash"


@dataclass(frozen=True, slots=True)
class Action:
    """One button of the machine page."""

    key: str
    label: str
    question: str
    capability: Capability
    danger: bool = False


ACTIONS = {
    a.key: a
    for a in (
        Action(
            "end",
            "Terminer la session",
            "Terminer la session en cours ? La machine s'arrête (une impression en cours "
            "n'est jamais coupée).",
            Capability.SESSIONS_END,
            danger=True,
        ),
        Action(
            "extend",
            "Prolonger de 15 min",
            "Donner 15 minutes de plus à la session en cours ?",
            Capability.SESSIONS_END,
        ),
        Action(
            "maintenance_on",
            "Mettre en maintenance",
            "Mettre la machine en maintenance ? Plus personne ne pourra badger.",
            Capability.MACHINE_COMMAND,
            danger=True,
        ),
        Action(
            "maintenance_off",
            "Remettre en service",
            "Remettre la machine en service ?",
            Capability.MACHINE_COMMAND,
        ),
        Action(
            "pause",
            "Mettre l'impression en pause",
            "Mettre l'impression en pause ?",
            Capability.MACHINE_COMMAND,
        ),
        Action(
            "resume",
            "Reprendre l'impression",
            "Reprendre l'impression ?",
            Capability.MACHINE_COMMAND,
        ),
        Action(
            "rearm",
            "Réarmer le laser",
            "Réarmer le laser ? Vérifie d'abord la machine (tête, capot, pièce) : le "
            "contrôleur est déverrouillé et refait son origine si elle est configurée.",
            Capability.MACHINE_COMMAND,
            danger=True,
        ),
        Action(
            "cancel",
            "Annuler l'impression",
            "Annuler l'impression en cours ? Elle ne pourra pas reprendre.",
            Capability.MACHINE_COMMAND,
            danger=True,
        ),
    )
}

END_REASONS = {
    "badge_out": "badge de sortie",
    "time_up": "temps écoulé",
    "staff": "par l'équipe",
    "job_done": "impression finie",
    "idle": "inactivité",
    "fault": "défaut",
    "link_lost": "liaison perdue",
    "break": "pause obligatoire",
    "edge_restart": "redémarrage de la borne",
    "revoked": "badge désactivé",
    "job_lost": "impression perdue",
    "staff_cancel": "impression annulée par l'équipe",
}

#: What the page says once the edge answered ``applied``.
_DONE = {
    "end": "Fait : la session est terminée.",
    "extend": "Fait : la session est prolongée de 15 minutes.",
    "maintenance_on": "La machine est en maintenance.",
    "maintenance_off": "La machine est remise en service.",
    "pause": "Fait : l'impression est en pause.",
    "resume": "Fait : l'impression reprend.",
    "cancel": "Fait : l'impression est annulée.",
    "rearm": "Fait : le laser est réarmé, une nouvelle session peut commencer.",
}
#: Said after a maintenance change the edge did not confirm (it is stored anyway).
_UNCONFIRMED = " La borne ne l'a pas encore confirmé : elle l'appliquera à sa reconnexion."


def available(tile: Tile, role: Any) -> list[Action]:
    """The actions that make sense for the machine now and that ``role`` may take."""
    keys: list[str] = []
    if tile.session_id is not None:
        keys += ["end", "extend"]
    if tile.printer is not None and tile.state not in ("hors-ligne",):
        state = tile.printer.state
        if state in ("impression",):
            keys += ["pause", "cancel"]
        elif state in ("en pause", "mise en pause"):
            keys += ["resume", "cancel"]
    if tile.kind == "laser" and tile.state == "defaut":
        keys.append("rearm")
    keys.append("maintenance_off" if tile.state == "maintenance" else "maintenance_on")
    return [ACTIONS[k] for k in keys if can(role, ACTIONS[k].capability)]


def _machine(db: SessionDep, machine_id: str) -> Machine:
    machine = db.get(Machine, machine_id)
    if machine is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Machine introuvable")
    return machine


def _tile(db: SessionDep, control: ControlDep, machine: Machine) -> Tile:
    snapshot = floor_snapshot(db, control, alerts=False, zone_id=machine.zone_id)
    return snapshot.tiles[machine.id]


def _today(request: Request) -> datetime:
    tz = request.app.state.settings.tz
    return datetime.combine(datetime.now(tz).date(), time(0), tz)


@router.get("/machines/{machine_id}", dependencies=[page(Capability.LIVE_READ)])
def machine_page(
    request: Request, machine_id: str, db: SessionDep, control: ControlDep, user: PageUser
) -> Response:
    machine = db.get(Machine, machine_id)
    if machine is None:
        return render(
            request,
            "erreur.html",
            {"title": "Machine introuvable", "message": f"Aucune machine « {machine_id[:40]} »."},
            user=user,
            status_code=404,
        )
    staff = user.role in STAFF_ROLES
    tile = _tile(db, control, machine).for_role(staff)
    since = _today(request)
    rows = db.execute(
        select(UsageSession, Member.display_name)
        .outerjoin(Member, Member.id == UsageSession.member_id)
        .where(UsageSession.machine_id == machine_id, UsageSession.started_at >= since)
        .order_by(UsageSession.started_at.desc())
    ).all()
    sessions = [
        {
            "started_at": row.started_at,
            "ended_at": row.ended_at,
            "used_s": row.used_s,
            "who": (first_name(name) or "—") if staff else row.age_group or "—",
            "reason": END_REASONS.get(str(row.end_reason or ""), str(row.end_reason or "")),
        }
        for row, name in rows
    ]
    jobs = []
    if can(user.role, Capability.JOBS_READ):
        jobs = list(
            db.scalars(
                select(MachineJob)
                .where(MachineJob.machine_id == machine_id, MachineJob.ended_at >= since)
                .order_by(MachineJob.ended_at.desc())
            )
        )
    flash = _read_flash(request, machine_id)
    response = render(
        request,
        "machine.html",
        {
            "machine": machine,
            "tile": tile,
            "sessions": sessions,
            "jobs": jobs,
            "show_jobs": can(user.role, Capability.JOBS_READ),
            "actions": available(tile, user.role),
            "flash": flash,
        },
        user=user,
    )
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path=f"/machines/{machine_id}")
    return response


@router.get("/machines/{machine_id}/flux", dependencies=[page(Capability.LIVE_READ)])
def machine_stream(
    request: Request, machine_id: str, db: SessionDep, user: PageUser
) -> StreamingResponse:
    """The machine's tile, live (same fragments as the floor's)."""
    db.close()  # the stream outlives the request: give its connection back to the pool now
    staff = user.role in STAFF_ROLES
    tz = request.app.state.settings.tz
    whole = floor_render(staff, False, tz)
    key = f"tile-{machine_id}"

    def render_one(snapshot: Any) -> dict[str, str]:
        fragments = whole(snapshot)
        return {key: fragments[key]} if key in fragments else {}

    view = f"machine:{machine_id}:{'staff' if staff else 'anon'}"
    return StreamingResponse(
        feed_of(request.app.state).stream(view, render_one),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/machines/{machine_id}/confirmer", dependencies=[page(Capability.LIVE_READ)])
def confirm_page(
    request: Request,
    machine_id: str,
    db: SessionDep,
    control: ControlDep,
    user: PageUser,
    action: str = "",
) -> Response:
    """The confirmation of one action, with what it will do, before anything happens."""
    machine = _machine(db, machine_id)
    chosen = ACTIONS.get(action)
    if chosen is None or not can(user.role, chosen.capability):
        return RedirectResponse(f"/machines/{machine_id}", status.HTTP_303_SEE_OTHER)
    tile = _tile(db, control, machine).for_role(user.role in STAFF_ROLES)
    target = "session" if chosen.capability is Capability.SESSIONS_END else "commande"
    return render(
        request,
        "machine_confirmer.html",
        {"machine": machine, "tile": tile, "action": chosen, "target": target},
        user=user,
    )


def _outcome(
    request: Request,
    machine_id: str,
    action: str,
    error: HTTPException | None,
    suffix: str = "",
) -> RedirectResponse:
    response = RedirectResponse(f"/machines/{machine_id}", status.HTTP_303_SEE_OTHER)
    if error is None:
        flash = {"ok": True, "text": _DONE[action] + suffix}
    elif error.status_code == status.HTTP_504_GATEWAY_TIMEOUT:
        flash = {"ok": False, "text": f"Pas de réponse : {error.detail}"}
    else:
        flash = {"ok": False, "text": f"Refusé : {error.detail}"}
    response.set_cookie(
        FLASH_COOKIE,
        json.dumps(flash, ensure_ascii=True),
        max_age=60,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=f"/machines/{machine_id}",
    )
    return response


def _read_flash(request: Request, machine_id: str) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return None
    return {"ok": bool(value.get("ok")), "text": value["text"][:300]}


@router.post(
    "/machines/{machine_id}/session",
    dependencies=[page(Capability.SESSIONS_END), CsrfChecked],
)
def session_action(
    request: Request,
    machine_id: str,
    db: SessionDep,
    control: ControlDep,
    user: PageUser,
    action: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """End or extend the machine's current session (the API's routes decide)."""
    machine = _machine(db, machine_id)
    if action not in ("end", "extend"):
        return _outcome(request, machine_id, "end", HTTPException(422, "action inconnue"))
    tile = _tile(db, control, machine)
    error: HTTPException | None = None
    try:
        if tile.session_id is None:
            raise HTTPException(status.HTTP_409_CONFLICT, "aucune session en cours")
        if action == "end":
            api_sessions.end_session(tile.session_id, db, control, user)
        else:
            api_sessions.extend_session(tile.session_id, db, control, user, 15)
    except HTTPException as err:
        error = err
    feed_of(request.app.state).poke()
    return _outcome(request, machine_id, action, error)


@router.post(
    "/machines/{machine_id}/commande",
    dependencies=[page(Capability.MACHINE_COMMAND), CsrfChecked],
)
def machine_action(
    request: Request,
    machine_id: str,
    db: SessionDep,
    control: ControlDep,
    user: PageUser,
    action: Annotated[str, Form()] = "",
    note: Annotated[str, Form(max_length=200)] = "",
) -> RedirectResponse:
    """Maintenance in/out, pause/resume/cancel the print, re-arm a laser (the API's
    routes decide, and wait for the edge's answer)."""
    _machine(db, machine_id)
    error: HTTPException | None = None
    suffix = ""
    try:
        if action in ("maintenance_on", "maintenance_off"):
            body = MaintenanceRequest(on=action == "maintenance_on", note=note.strip())
            write = ReferenceWrite(db, control)
            result = api_machines.set_maintenance(machine_id, body, write, control, user)
            if result.outcome is None:
                suffix = _UNCONFIRMED
            elif result.outcome is not Outcome.APPLIED:
                suffix = f" La borne répond : {result.reason}"
        elif action in ("pause", "resume", "cancel", "rearm"):
            command = CommandRequest(action=MachineAction(action))
            api_machines.command(machine_id, command, db, control, user)
        else:
            raise HTTPException(422, "action inconnue")
    except HTTPException as err:
        error = err
    feed_of(request.app.state).poke()
    return _outcome(request, machine_id, action if error is None else "end", error, suffix)
