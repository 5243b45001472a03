"""The kiosk beside each machine (``/kiosk/{machine}``) and its pairing (``/kiosques``).

A kiosk has no personal login. An admin pairs the screen once: ``/kiosques`` creates a
random token bound to one machine (only its keyed hash is stored, in ``kiosk_token``)
and shows the pairing address ``/kiosk/{machine}?appairage=<token>`` once; opening it
on the kiosk sets a long-lived HttpOnly cookie for that machine's kiosk path and drops
the token from the address. Revoking the token unpairs the screen. Without a valid
token the kiosk still shows the machine's state and refusals, but nobody's name.

The screen is one fragment (``kiosk-screen``) pushed by the floor feed
(:mod:`hub.web.live`): a big pictogram, a colour, one short sentence, the countdown
with the 10- and 2-minute warnings (``live.js``), or why the last badge was refused
and what to do, in French, Arabic (right to left) or English (:mod:`hub.web.kiosk_texts`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.api.auth import Capability
from hub.api.deps import SessionDep, SettingsDep
from hub.control import HubControl
from hub.db.models import KioskToken, Machine
from hub.settings import HubSettings
from hub.web.core import TEMPLATES, CsrfChecked, PageUser, page, render
from hub.web.kiosk_texts import LANG_NAMES, LANGS, RTL, UI, Lang, clock, lang_of, refusal
from hub.web.live import feed_of
from hub.web.tiles import FloorSnapshot, Tile
from protocol.messages import utcnow

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

PUBLIC = frozenset({("GET", "/kiosk/{machine_id}"), ("GET", "/kiosk/{machine_id}/flux")})

KIOSK_COOKIE = "fabrique_kiosk"
#: The "refusal" that answers a tap captured for enrolment (see hub.enrolment).
ENROLLED = "badge_enrolled"
#: How long a refusal stays on the screen after the badge.
REFUSAL_SHOWN = timedelta(seconds=30)
#: How long the welcome after a grant stays.
GRANT_SHOWN = timedelta(seconds=8)

_FRAGMENT = TEMPLATES.env.get_template("_kiosk.html")


def kiosk_digest(settings: HubSettings, token: str) -> str:
    """The stored form of a kiosk token (HMAC-SHA256 with the session secret)."""
    key = settings.session_secret.get_secret_value().encode()
    return hmac.new(key, b"kiosk:" + token.encode(), hashlib.sha256).hexdigest()


def paired(db: Session, settings: HubSettings, machine_id: str, token: str | None) -> bool:
    """Whether ``token`` is a valid, unrevoked kiosk token of ``machine_id``."""
    if not token or len(token) > 128:
        return False
    row = db.scalar(
        select(KioskToken).where(KioskToken.token_hash == kiosk_digest(settings, token))
    )
    return row is not None and row.machine_id == machine_id and row.revoked_at is None


@dataclass(frozen=True, slots=True)
class Screen:
    """What the kiosk shows now."""

    state: str
    picto: str
    sentence: str
    detail: str = ""
    ends_at: datetime | None = None
    warn_10: str = ""
    warn_2: str = ""


def screen_of(
    tile: Tile,
    decision: tuple[datetime, Any] | None,
    *,
    show_names: bool,
    lang: Lang,
    now: datetime,
    tz: tzinfo,
) -> Screen:
    """Decide the kiosk's picture and words from the machine's tile and last decision."""
    ui = UI[lang]
    if decision is not None:
        at, d = decision
        if (
            not d.granted
            and now - at <= REFUSAL_SHOWN
            and tile.state in ("libre", "maintenance", "sans-session")
        ):
            text = refusal(d.code, d.message, dict(d.params), lang, now, tz)
            if d.code == ENROLLED:  # the tap was captured to enrol the badge: good news
                return Screen("libre", "check", ui["enrolled"], text)
            return Screen("refuse", "stop", ui["refused"], text)
    if tile.state == "maintenance":
        return Screen("maintenance", "wrench", ui["maintenance"], ui["maintenance_detail"])
    if tile.state == "hors-ligne":
        return Screen("hors-ligne", "plug", ui["offline"], ui["offline_detail"])
    if tile.state == "defaut":
        return Screen("defaut", "warning", ui["fault"], ui["fault_detail"])
    if tile.state == "pause":
        return Screen("pause", "pause", ui["pause"], ui["pause_detail"])
    if tile.state == "sans-session":
        return Screen("sans-session", "warning", ui["foreign"], ui["foreign_detail"])
    if tile.state in ("occupe", "fin"):
        who = tile.person if show_names and tile.person else ui["busy"]
        sentence = who
        if tile.ends_at is not None:
            sentence = f"{who} — {ui['until'].format(time=clock(tile.ends_at, tz, lang))}"
        detail = ""
        if decision is not None and decision[1].granted and now - decision[0] <= GRANT_SHOWN:
            detail = ui["granted"]
        return Screen(
            "occupe" if tile.state == "occupe" else "fin",
            "clock",
            sentence,
            detail,
            ends_at=tile.ends_at,
            warn_10=ui["warn_10"],
            warn_2=ui["warn_2"],
        )
    return Screen("libre", "check", ui["free"], ui["free_detail"])


def kiosk_render(
    control: HubControl, machine_id: str, lang: Lang, show_names: bool, tz: tzinfo
) -> Any:
    module: Any = _FRAGMENT.make_module({})

    def render_screen(snapshot: FloorSnapshot) -> dict[str, str]:
        tile = snapshot.tiles.get(machine_id)
        if tile is None:
            return {}
        screen = screen_of(
            tile,
            control.last_decision(machine_id),
            show_names=show_names,
            lang=lang,
            now=utcnow(),
            tz=tz,
        )
        return {"kiosk-screen": str(module.screen(screen, tile, lang))}

    return render_screen


@router.get("/kiosk/{machine_id}")
def kiosk_page(
    request: Request,
    machine_id: str,
    db: SessionDep,
    settings: SettingsDep,
    lang: str = "fr",
    appairage: str = "",
) -> Response:
    """The full-screen kiosk; ``?appairage=`` pairs this screen once (see the module)."""
    language = lang_of(lang)
    machine = db.get(Machine, machine_id)
    if machine is None:
        return render(
            request,
            "erreur.html",
            {"title": "Machine introuvable", "message": "Cette borne ne connaît pas la machine."},
            status_code=404,
        )
    path = f"/kiosk/{machine_id}"
    if appairage:
        if not paired(db, settings, machine_id, appairage):
            log.info("kiosk pairing refused for machine %s", machine_id)
            return render(
                request,
                "erreur.html",
                {
                    "title": "Appairage refusé",
                    "message": "Ce lien d'appairage est inconnu ou révoqué : "
                    "demandez-en un nouveau à un administrateur.",
                },
                status_code=403,
            )
        response = RedirectResponse(f"{path}?lang={language}", status.HTTP_303_SEE_OTHER)
        response.set_cookie(
            KIOSK_COOKIE,
            appairage,
            max_age=400 * 86400,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=path,
        )
        log.info("kiosk paired for machine %s", machine_id)
        return response
    show_names = paired(db, settings, machine_id, request.cookies.get(KIOSK_COOKIE))
    feed = feed_of(request.app.state)
    fragments = kiosk_render(
        request.app.state.control, machine_id, language, show_names, settings.tz
    )(feed.snapshot_now())
    return render(
        request,
        "kiosk.html",
        {
            "machine": machine,
            "lang": language,
            "dir": "rtl" if language in RTL else "ltr",
            "langs": [(code, LANG_NAMES[code]) for code in LANGS],
            "ui": UI[language],
            "screen_html": fragments.get("kiosk-screen", ""),
            "paired": show_names,
        },
    )


@router.get("/kiosk/{machine_id}/flux")
def kiosk_stream(
    request: Request, machine_id: str, db: SessionDep, settings: SettingsDep, lang: str = "fr"
) -> StreamingResponse:
    language = lang_of(lang)
    show_names = paired(db, settings, machine_id, request.cookies.get(KIOSK_COOKIE))
    db.close()  # the stream outlives the request: give its connection back to the pool now
    view = f"kiosk:{machine_id}:{language}:{'named' if show_names else 'anon'}"
    render_screen = kiosk_render(
        request.app.state.control, machine_id, language, show_names, settings.tz
    )
    return StreamingResponse(
        feed_of(request.app.state).stream(view, render_screen, decisions=True),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --------------------------------------------------------------------------- pairing


@router.get("/kiosques", dependencies=[page(Capability.REFERENCE_WRITE)])
def kiosks_page(request: Request, db: SessionDep, user: PageUser) -> Response:
    machines = list(db.scalars(select(Machine).order_by(Machine.zone_id, Machine.id)))
    tokens = list(db.scalars(select(KioskToken).order_by(KioskToken.created_at.desc())))
    return render(
        request,
        "kiosques.html",
        {"machines": machines, "tokens": tokens, "created": None},
        user=user,
    )


@router.post("/kiosques", dependencies=[page(Capability.REFERENCE_WRITE), CsrfChecked])
def kiosk_create(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    user: PageUser,
    machine_id: Annotated[str, Form(max_length=64)] = "",
    label: Annotated[str, Form(max_length=80)] = "",
) -> Response:
    """Create a pairing token and show its address once."""
    machine = db.get(Machine, machine_id)
    machines = list(db.scalars(select(Machine).order_by(Machine.zone_id, Machine.id)))
    if machine is None:
        tokens = list(db.scalars(select(KioskToken).order_by(KioskToken.created_at.desc())))
        return render(
            request,
            "kiosques.html",
            {
                "machines": machines,
                "tokens": tokens,
                "created": None,
                "error": "Choisissez une machine de la liste.",
                "label": label,
            },
            user=user,
            status_code=422,
        )
    token = secrets.token_urlsafe(24)
    db.add(
        KioskToken(
            token_hash=kiosk_digest(settings, token),
            machine_id=machine.id,
            label=label.strip() or f"Kiosque {machine.name}"[:80],
        )
    )
    db.commit()
    log.info("account %d paired a kiosk for machine %s", user.account_id, machine.id)
    tokens = list(db.scalars(select(KioskToken).order_by(KioskToken.created_at.desc())))
    address = f"{str(request.base_url).rstrip('/')}/kiosk/{machine.id}?appairage={token}"
    return render(
        request,
        "kiosques.html",
        {"machines": machines, "tokens": tokens, "created": {"machine": machine, "url": address}},
        user=user,
        status_code=201,
    )


@router.post(
    "/kiosques/{token_id}/revoquer", dependencies=[page(Capability.REFERENCE_WRITE), CsrfChecked]
)
def kiosk_revoke(token_id: int, db: SessionDep, user: PageUser) -> RedirectResponse:
    row = db.get(KioskToken, token_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        db.commit()
        log.info("account %d revoked kiosk token %d", user.account_id, token_id)
    return RedirectResponse("/kiosques", status.HTTP_303_SEE_OTHER)
