""" "Mon temps" (``/mon-temps``): a member's own time, trainings and next slots.

Two ways in, both giving the page of **one** member and nothing about anyone else:

* a member with a login account (role ``member``) logs in as usual;
* most young members have no account: an animator (or anyone allowed to read
  members) opens ``/mon-temps/codes``, picks the member by first name and gets a
  **6-digit code valid 10 minutes, usable once** (:class:`MemberCodes`); the member
  types it at ``/mon-temps`` on any screen (a kiosk tablet, their phone). This was
  chosen over "tap your badge to sign in": a tap at a shared reader cannot tell
  which browser asked, so a stranger could arm it and read the next child's page;
  the code is handed person to person. Codes live in memory (one hub per site),
  only their keyed digest is kept, a new code replaces the member's previous one,
  and wrong guesses are throttled per address with the login throttle (5 per 5
  minutes), so guessing one of the few live codes among a million is hopeless.

A redeemed code gives a signed, HttpOnly, SameSite=Strict cookie
(:data:`COOKIE`: member id and expiry, HMAC with the session secret) valid
:data:`SESSION_MIN` minutes, read-only (this page only), ended by "C'est fini".
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time as clock
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.api.auth import Capability
from hub.api.common import day_start, local_today, member_age
from hub.api.deps import PolicyDep, SessionDep, SettingsDep, ThrottleDep
from hub.api.routes.me import member_usage
from hub.api.views import member_trainings, training_names
from hub.db.models import (
    Machine,
    MachineTraining,
    Member,
    MemberStatus,
    Quota,
    UsageSession,
    Zone,
)
from hub.directory import load_directory
from hub.policy.calendar import format_time, format_when, open_windows
from hub.policy.engine import continuous_play
from hub.policy.model import PolicyConfig
from hub.settings import HubSettings
from hub.web.core import CsrfChecked, OptionalUser, PageUser, page, render, same_origin
from protocol.messages import utcnow

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

PATH = "/mon-temps"
COOKIE = "fabrique_mon_temps"
CODE_TTL_S = 600.0
SESSION_MIN = 30
NEXT_SLOTS = 5
PUBLIC = frozenset({("GET", PATH), ("POST", PATH + "/code"), ("POST", PATH + "/sortir")})


class MemberCodes:
    """Short single-use codes that open one member's page (in memory, thread-safe)."""

    def __init__(self, secret: bytes, ttl_s: float = CODE_TTL_S) -> None:
        self._key = secret
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        #: digest -> (member id, monotonic expiry)
        self._codes: dict[str, tuple[int, float]] = {}

    def _digest(self, code: str) -> str:
        return hmac.new(self._key, b"code:" + code.encode(), hashlib.sha256).hexdigest()

    def issue(self, member_id: int) -> str:
        """A fresh 6-digit code for ``member_id`` (its previous code stops working)."""
        now = clock.monotonic()
        with self._lock:
            self._codes = {
                d: (m, exp) for d, (m, exp) in self._codes.items() if exp > now and m != member_id
            }
            while True:
                code = f"{secrets.randbelow(1_000_000):06d}"
                digest = self._digest(code)
                if digest not in self._codes:
                    break
            self._codes[digest] = (member_id, now + self.ttl_s)
        return code

    def redeem(self, code: str) -> int | None:
        """The member of a live code, which is used up; None otherwise."""
        code = "".join(c for c in code if c.isdigit())
        if len(code) != 6:
            return None
        with self._lock:
            found = self._codes.pop(self._digest(code), None)
        if found is None or found[1] <= clock.monotonic():
            return None
        return found[0]


def codes_of(request: Request) -> MemberCodes:
    """The app's code book, made on first use."""
    state = request.app.state
    codes: MemberCodes | None = getattr(state, "member_codes", None)
    if codes is None:
        settings: HubSettings = state.settings
        codes = state.member_codes = MemberCodes(
            settings.session_secret.get_secret_value().encode()
        )
    return codes


# --------------------------------------------------------------------------- the cookie


def _sign(settings: HubSettings, payload: str) -> str:
    key = settings.session_secret.get_secret_value().encode()
    return hmac.new(key, b"mon-temps:" + payload.encode(), hashlib.sha256).hexdigest()[:32]


def member_cookie(settings: HubSettings, member_id: int, expires: int) -> str:
    payload = f"{member_id}.{expires}"
    return f"{payload}.{_sign(settings, payload)}"


def cookie_member(settings: HubSettings, value: str | None) -> int | None:
    """The member id of a valid, unexpired cookie."""
    if not value or len(value) > 100:
        return None
    try:
        member, expires, signature = value.split(".")
        member_id, until = int(member), int(expires)
    except ValueError:
        return None
    if not hmac.compare_digest(signature, _sign(settings, f"{member}.{expires}")):
        return None
    return member_id if until > int(clock.time()) else None


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True, slots=True)
class ZoneTime:
    zone: str
    today_min: int
    daily_min: int | None
    left_min: int | None
    break_rule: str
    next_break: str


def _zone_times(
    db: Session, member: Member, group: str, cfg: PolicyConfig, now: datetime
) -> tuple[list[ZoneTime], list[Any]]:
    usage, views = member_usage(db, member, group, cfg)
    zones = {z.id: z.name for z in db.scalars(select(Zone))}
    quotas = {q.zone_id: q for q in db.scalars(select(Quota).where(Quota.age_group == group))}
    result = []
    for u in usage:
        quota = quotas.get(u.zone_id)
        left = None
        if u.daily_min is not None:
            left = max(0, int((u.daily_min * 60 - u.today_s) // 60))
        rule = next_break = ""
        if quota is not None and quota.break_after_min and quota.break_min:
            rule = f"Pause de {quota.break_min} min toutes les {quota.break_after_min} min de jeu"
            played, _ = continuous_play(views, u.zone_id, now, quota.break_min)
            playing = any(v.zone_id == u.zone_id and v.ended_at is None for v in views)
            if playing:
                minutes = max(0, int((quota.break_after_min * 60 - played) // 60))
                next_break = f"Prochaine pause dans {minutes} min"
        result.append(
            ZoneTime(
                zone=zones.get(u.zone_id, u.zone_id),
                today_min=int(u.today_s // 60),
                daily_min=u.daily_min,
                left_min=left,
                break_rule=rule,
                next_break=next_break,
            )
        )
    return result, views


def _until(end: datetime, cfg: PolicyConfig) -> str:
    """``18h00``, or ``minuit`` for a window that ends with the day."""
    local = end.astimezone(cfg.tz)
    return "minuit" if (local.hour, local.minute) == (0, 0) else format_time(end, cfg)


def my_time(db: Session, cfg: PolicyConfig, member: Member) -> dict[str, Any]:
    """Everything the page shows about ``member``."""
    now = utcnow()
    _, group = member_age(member.birth_year, member.birth_month, cfg)
    zone_times, _ = _zone_times(db, member, group, cfg, now)
    today = local_today(cfg.tz)
    week_start = day_start(today - timedelta(days=today.weekday()), cfg.tz)
    machines = {m.id: m.name for m in db.scalars(select(Machine))}
    sessions = [
        {
            "machine": machines.get(s.machine_id, s.machine_id),
            "started": s.started_at,
            "used_s": s.used_s,
            "open": s.ended_at is None,
        }
        for s in db.scalars(
            select(UsageSession)
            .where(UsageSession.member_id == member.id, UsageSession.started_at >= week_start)
            .order_by(UsageSession.started_at.desc())
        )
    ]
    unlocks: dict[str, list[str]] = {}
    for training_id, machine_id in db.execute(
        select(MachineTraining.training_id, MachineTraining.machine_id)
    ):
        unlocks.setdefault(training_id, []).append(machines.get(machine_id, machine_id))
    trainings = [
        {"t": t, "unlocks": sorted(unlocks.get(t.training_id, []))}
        for t in member_trainings(member.trainings, training_names(db), cfg)
    ]
    directory = load_directory(db, version=0)
    programmes = frozenset(member.programme_ids)
    windows = []
    zone_names = {z.id: z.name for z in db.scalars(select(Zone))}
    for zone_id, zone_name in zone_names.items():
        for w in open_windows(
            zone_id,
            today,
            today + timedelta(days=7),
            directory,
            cfg,
            age_group=group,
            programmes=programmes,
        ):
            if w.end > now:
                windows.append((w.start, w.end, zone_name, w.label, w.animator_required))
    windows.sort()
    next_slots = [
        {
            "when": "maintenant" if start <= now else format_when(start, now, cfg),
            "until": _until(end, cfg),
            "zone": zone,
            "label": label,
            "animator": animator,
        }
        for start, end, zone, label, animator in windows[:NEXT_SLOTS]
    ]
    return {
        "member": member,
        "group": group,
        "zone_times": zone_times,
        "sessions": sessions,
        "week_s": sum(s["used_s"] for s in sessions),
        "trainings": trainings,
        "next_slots": next_slots,
    }


# --------------------------------------------------------------------------- pages


@router.get(PATH)
def my_time_page(
    request: Request,
    db: SessionDep,
    cfg: PolicyDep,
    settings: SettingsDep,
    user: OptionalUser,
    erreur: str = "",
) -> Response:
    """A member's page (account or code cookie), else the code form."""
    member_id = cookie_member(settings, request.cookies.get(COOKIE))
    if member_id is None and user is not None:
        member_id = user.member_id
    member = db.get(Member, member_id) if member_id is not None else None
    if member is None:
        return render(
            request,
            "mon_temps_code.html",
            {"error": erreur == "code", "throttled": erreur == "attente", "staff_user": user},
            user=user,
        )
    ctx = my_time(db, cfg, member)
    ctx["by_code"] = user is None or user.member_id != member.id
    return render(request, "mon_temps.html", ctx, user=user)


@router.post(PATH + "/code")
def redeem_code(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    code: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    address = request.client.host if request.client else "?"
    key = f"mon-temps@{address}"
    # Counted before the code is checked (hub.api.auth.LoginThrottle): parallel guesses
    # cannot overtake the count; a right code takes it back.
    if not same_origin(request) or throttle.begin(key, address) > 0:
        return RedirectResponse(PATH + "?erreur=attente", status.HTTP_303_SEE_OTHER)
    member_id = codes_of(request).redeem(code)
    member = db.get(Member, member_id) if member_id is not None else None
    if member is None or member.status is not MemberStatus.ACTIVE:
        return RedirectResponse(PATH + "?erreur=code", status.HTTP_303_SEE_OTHER)
    throttle.succeeded(key, address)
    expires = int(clock.time()) + SESSION_MIN * 60
    response = RedirectResponse(PATH, status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        COOKIE,
        member_cookie(settings, member.id, expires),
        max_age=SESSION_MIN * 60,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    log.info("member %d opened their page with a code", member.id)
    return response


@router.post(PATH + "/sortir")
def leave(request: Request) -> Response:
    response = RedirectResponse(PATH, status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")
    return response


@router.get(PATH + "/codes", dependencies=[page(Capability.MEMBERS_READ)])
def codes_page(
    request: Request, db: SessionDep, cfg: PolicyDep, user: PageUser, q: str = ""
) -> Response:
    """Staff: find a member by first name to give them a code."""
    q = q.strip()[:40]
    found = []
    if q:
        rows = db.scalars(
            select(Member)
            .where(func.lower(Member.display_name).startswith(q.lower(), autoescape=True))
            .order_by(Member.display_name)
            .limit(20)
        )
        for m in rows:
            found.append(
                {
                    "id": m.id,
                    "first_name": m.first_name,
                    "group": member_age(m.birth_year, m.birth_month, cfg)[1],
                }
            )
    return render(
        request, "mon_temps_codes.html", {"q": q, "found": found, "code": None}, user=user
    )


@router.post(PATH + "/codes", dependencies=[page(Capability.MEMBERS_READ), CsrfChecked])
def give_code(
    request: Request,
    db: SessionDep,
    user: PageUser,
    member_id: Annotated[int, Form(ge=1)] = 0,
) -> Response:
    member = db.get(Member, member_id)
    if member is None:
        return RedirectResponse(PATH + "/codes", status.HTTP_303_SEE_OTHER)
    code = codes_of(request).issue(member.id)
    log.info("account %d gave a code to member %d", user.account_id, member.id)
    return render(
        request,
        "mon_temps_codes.html",
        {
            "q": "",
            "found": [],
            "code": code,
            "first_name": member.first_name,
            "minutes": int(CODE_TTL_S // 60),
        },
        user=user,
    )
