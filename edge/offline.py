"""Offline access decisions from the hub's signed policy snapshot (DESIGN §3).

When the hub does not answer a badge within the decision timeout, or is known to be
offline, the edge decides alone with :func:`decide_offline`, journals the decision as
``offline_decision`` and lets the hub reconcile it later. The function is pure: the
caller passes the retained snapshot, the edge's policy key and the current wall time.

The rules, in order (each refusal has a stable ``offline_*`` code):

1. No snapshot yet: nobody is granted.
2. **Bad signature: nobody is granted, staff included.** A snapshot that fails
   verification was forged or damaged, so its staff list cannot be trusted either;
   the animators then work as they do when the edge is down (hub back, or manual
   override at the machine).
3. Machine absent from the snapshot, or its rule is ``deny``: nobody is granted.
4. Unknown badge: refused (it may have been enrolled after the snapshot).
5. Staff: granted on ``allow`` and ``staff_only`` machines listed in one of their
   windows (the hub leaves machines in maintenance out), for at most ``staff_grant``.
   This also holds for a snapshot past ``valid_until``.
6. Snapshot past ``valid_until``: nobody but staff (revocations may be missing).
7. ``staff_only`` machine: refused to members.
8. ``allow`` machine: granted when a window covering now lists the machine, until the
   window's end, capped by the remaining quota of the machine's zone **minus what the
   badge used on this edge since the snapshot arrived** (``used_s``: the snapshot
   cannot know it, and pulling the network cable must never extend play); refused
   below one minute.

What the snapshot cannot know (animator presence, zone capacity, breaks, busy
machines) is not checked here; the hub reconciles when it is back.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from protocol.messages import OfflineRule, PolicySnapshot, SnapshotEntry, SnapshotWindow
from protocol.signing import verify_snapshot

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_STAFF_GRANT", "OfflineCode", "OfflineVerdict", "decide_offline"]

#: Longest session granted offline to staff (their snapshot window spans days).
DEFAULT_STAFF_GRANT: Final = timedelta(hours=2)
PARIS: Final = ZoneInfo("Europe/Paris")
#: Below this much quota left, a member is refused rather than granted (as the hub does).
MIN_GRANT_S: Final = 60.0


class OfflineCode(enum.StrEnum):
    """Stable reason codes of offline decisions (journaled and shown in the hub)."""

    GRANTED = "offline_granted"
    GRANTED_STAFF = "offline_granted_staff"
    NO_POLICY = "offline_no_policy"
    BAD_SIGNATURE = "offline_bad_signature"
    UNKNOWN_MACHINE = "offline_unknown_machine"
    MACHINE_DENIED = "offline_machine_denied"
    UNKNOWN_BADGE = "offline_unknown_badge"
    NOT_ALLOWED = "offline_not_allowed"
    EXPIRED = "offline_expired"
    STAFF_ONLY = "offline_staff_only"
    OUTSIDE_SLOT = "offline_outside_slot"
    QUOTA_EXHAUSTED = "offline_quota_exhausted"


@dataclass(frozen=True, slots=True)
class OfflineVerdict:
    """What the edge decided alone; ``ends_at`` is set exactly when ``granted``."""

    granted: bool
    code: OfflineCode
    message: str
    ends_at: datetime | None = None
    staff: bool = False
    snapshot_version: int | None = None


# --------------------------------------------------------------------------- texts

_RETRY = "réessaie dans un moment ou demande à un animateur."


def _hhmm(at: datetime, now: datetime, tz: ZoneInfo) -> str:
    """``16h00`` today, ``12/03 à 9h30`` on another local day."""
    local = at.astimezone(tz)
    hour = f"{local.hour}h{local.minute:02d}"
    if local.date() == now.astimezone(tz).date():
        return hour
    return f"{local.day:02d}/{local.month:02d} à {hour}"


def _deny(code: OfflineCode, message: str, snapshot: PolicySnapshot | None) -> OfflineVerdict:
    return OfflineVerdict(
        granted=False,
        code=code,
        message=message,
        snapshot_version=snapshot.version if snapshot is not None else None,
    )


# --------------------------------------------------------------------------- rules


def _window_for(entry: SnapshotEntry, machine: str, now: datetime) -> SnapshotWindow | None:
    """The window of ``entry`` covering ``now`` on ``machine`` that lasts longest."""
    covering = [w for w in entry.windows if machine in w.machines and w.start <= now < w.end]
    return max(covering, key=lambda w: w.end, default=None)


def decide_offline(
    snapshot: PolicySnapshot | None,
    key: bytes,
    machine: str,
    badge: str,
    wall_now: datetime,
    *,
    staff_grant: timedelta = DEFAULT_STAFF_GRANT,
    tz: ZoneInfo = PARIS,
    verified: bool = False,
    used_s: float = 0.0,
) -> OfflineVerdict:
    """Decide whether ``badge`` may start ``machine`` now, from the snapshot alone.

    ``key`` is this edge's policy key (:func:`protocol.signing.policy_key`);
    ``wall_now`` is the edge's wall clock (an estimate: a clock far in the future
    makes the snapshot look expired, which still leaves staff working).
    ``verified`` says the caller already checked this very snapshot's signature with
    ``key`` (the agent does, once, when the snapshot arrives): verifying costs a
    canonical JSON dump of the whole snapshot, milliseconds per thousand badges, on
    the path of a member waiting at the machine.
    ``used_s`` is the time this badge used the machine's zone on this edge since the
    snapshot arrived (:meth:`edge.journal.Journal.badge_usage_after`).
    """
    if snapshot is None:
        return _deny(
            OfflineCode.NO_POLICY,
            f"Le serveur ne répond pas et cette machine n'a pas encore de règles : {_RETRY}",
            None,
        )
    if not verified and not verify_snapshot(snapshot, key):
        logger.error(
            "policy snapshot v%d of edge %s has a bad signature: nobody is granted offline",
            snapshot.version,
            snapshot.edge,
        )
        return _deny(
            OfflineCode.BAD_SIGNATURE,
            f"Le serveur ne répond pas et les règles hors-ligne sont invalides : {_RETRY}",
            snapshot,
        )
    rule = next((m.rule for m in snapshot.machines if m.machine == machine), None)
    zone = next((m.zone for m in snapshot.machines if m.machine == machine), None)
    if rule is None:
        return _deny(
            OfflineCode.UNKNOWN_MACHINE,
            f"Le serveur ne répond pas et cette machine n'est pas dans les règles : {_RETRY}",
            snapshot,
        )
    if rule is OfflineRule.DENY:
        return _deny(
            OfflineCode.MACHINE_DENIED,
            "Le serveur ne répond pas : cette machine ne démarre pas hors-ligne. "
            "Réessaie dans un moment.",
            snapshot,
        )
    entry = next((e for e in snapshot.entries if e.badge == badge), None)
    if entry is None:
        return _deny(
            OfflineCode.UNKNOWN_BADGE,
            f"Le serveur ne répond pas et ce badge n'est pas connu ici : {_RETRY}",
            snapshot,
        )
    if entry.staff:
        return _staff(snapshot, entry, machine, wall_now, staff_grant, tz)
    if wall_now >= snapshot.valid_until:
        return _deny(
            OfflineCode.EXPIRED,
            "Hors-ligne depuis trop longtemps : seuls les animateurs peuvent démarrer "
            "une machine. Demande à un animateur.",
            snapshot,
        )
    if rule is OfflineRule.STAFF_ONLY:
        return _deny(
            OfflineCode.STAFF_ONLY,
            "Hors-ligne, seuls les animateurs peuvent démarrer cette machine.",
            snapshot,
        )
    window = _window_for(entry, machine, wall_now)
    if window is None:
        return _deny(
            OfflineCode.OUTSIDE_SLOT,
            "Le serveur ne répond pas et ce n'est pas ton créneau sur cette machine "
            "d'après les règles hors-ligne.",
            snapshot,
        )
    ends_at = window.end
    quota = entry.quota_min.get(zone) if zone is not None else None
    if quota is not None:
        left_s = quota * 60 - used_s
        if left_s < MIN_GRANT_S:
            return _deny(
                OfflineCode.QUOTA_EXHAUSTED,
                "Tu as utilisé ton temps d'aujourd'hui dans cet espace. Reviens demain !",
                snapshot,
            )
        ends_at = min(ends_at, wall_now + timedelta(seconds=left_s))
    return OfflineVerdict(
        granted=True,
        code=OfflineCode.GRANTED,
        message=(
            "Le serveur ne répond pas : accès hors-ligne accordé jusqu'à "
            f"{_hhmm(ends_at, wall_now, tz)}."
        ),
        ends_at=ends_at,
        snapshot_version=snapshot.version,
    )


def _staff(
    snapshot: PolicySnapshot,
    entry: SnapshotEntry,
    machine: str,
    now: datetime,
    staff_grant: timedelta,
    tz: ZoneInfo,
) -> OfflineVerdict:
    """Staff may open any machine the hub listed for them, even past ``valid_until``."""
    if not any(machine in w.machines for w in entry.windows):
        return _deny(
            OfflineCode.NOT_ALLOWED,
            "Hors-ligne, cette machine n'est pas ouverte (maintenance ?) : "
            "vérifie quand le serveur revient.",
            snapshot,
        )
    ends_at = now + staff_grant
    return OfflineVerdict(
        granted=True,
        code=OfflineCode.GRANTED_STAFF,
        message=f"Hors-ligne : machine ouverte jusqu'à {_hhmm(ends_at, now, tz)}.",
        ends_at=ends_at,
        staff=True,
        snapshot_version=snapshot.version,
    )
