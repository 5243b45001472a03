"""The French words of the hub: what a member reads on the reader's screen, and the
demo console's status line (with French number formatting).

Every refusal tells the member, in plain French and with "tu", what happened and
what to do next, in under 160 characters (the kiosk and reader screens are small).
Keeping the wording here, apart from the rules, lets the animators review it in one
place; tests check every message for length and tone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hub.policy.calendar import format_time, format_when, local_date
from hub.policy.model import PolicyConfig

#: Longest message a reader screen shows comfortably.
MAX_MESSAGE_LEN = 160


def _when(dt: datetime, now: datetime, cfg: PolicyConfig) -> str:
    """``15h20`` today, ``minuit`` at the end of today (not "demain à 0h00"),
    ``demain à 9h30`` or a weekday/date otherwise."""
    local = dt.astimezone(cfg.tz)
    if local_date(dt, cfg.tz) == local_date(now, cfg.tz):
        return format_time(dt, cfg)
    tomorrow = local_date(now, cfg.tz) + timedelta(days=1)
    if (local.hour, local.minute) == (0, 0) and local.date() == tomorrow:
        return "minuit"
    return format_when(dt, now, cfg)


def too_many_attempts() -> str:
    return (
        "Trop d'essais d'affilée : attends une minute. Si ça bloque encore, demande à un animateur."
    )


def reader_cooldown() -> str:
    return (
        "Trop de badges inconnus sur ce lecteur : attends une minute. "
        "Si ça bloque encore, demande à un animateur."
    )


def unknown_machine() -> str:
    return "Cette machine n'est pas reconnue : préviens un animateur."


def unknown_badge() -> str:
    return "Badge inconnu : passe voir un animateur pour l'enregistrer."


def badge_revoked() -> str:
    return "Ce badge est désactivé : passe voir un animateur pour en avoir un nouveau."


def member_suspended() -> str:
    return "Ton compte est suspendu pour le moment : passe voir un animateur pour en parler."


def consent_missing() -> str:
    return "Il manque l'autorisation de tes parents : rapporte-la signée à l'accueil."


def machine_maintenance() -> str:
    return "Cette machine est en maintenance. Choisis-en une autre ou demande à un animateur."


def machine_offline() -> str:
    return "Cette machine ne répond pas pour le moment : préviens un animateur."


def running_without_session() -> str:
    return (
        "Un travail tourne sur cette machine sans session : demande à un fabmanager "
        "de s'en occuper avant de badger."
    )


def machine_busy() -> str:
    return "Cette machine est déjà utilisée par quelqu'un. Choisis-en une autre qui est libre."


def training_missing(training: str) -> str:
    return (
        f"Il te faut la formation « {training[:40]} » pour cette machine : demande à un animateur."
    )


def training_expired(training: str) -> str:
    return f"Ta formation « {training[:40]} » a expiré : demande à un animateur de la renouveler."


def too_young(min_age: int) -> str:
    return (
        f"Cette machine est réservée aux {min_age} ans et plus. "
        "Demande à un animateur ce que tu peux utiliser."
    )


def outside_slot(next_start: datetime | None, now: datetime, cfg: PolicyConfig) -> str:
    if next_start is None:
        return (
            f"Pas de créneau prévu pour toi dans les {cfg.next_slot_horizon_days} "
            "prochains jours : demande à un animateur."
        )
    return f"Ce n'est pas ton créneau. Ton prochain créneau : {format_when(next_start, now, cfg)}."


def animator_required() -> str:
    return "Ce créneau se fait avec un animateur : attends qu'il ou elle arrive dans la salle."


def zone_full(capacity: int) -> str:
    return f"La salle est complète ({capacity} places). Attends qu'une place se libère."


def quota_daily(minutes: int) -> str:
    return f"Tu as utilisé tes {minutes} minutes d'aujourd'hui. Reviens demain !"


def quota_weekly(minutes: int) -> str:
    return f"Tu as utilisé tes {minutes} minutes de la semaine. Reviens lundi !"


def break_required(until: datetime, now: datetime, cfg: PolicyConfig) -> str:
    if local_date(until, cfg.tz) == local_date(now, cfg.tz):
        return f"Pause obligatoire : reviens à {format_time(until, cfg)}."
    return f"Pause obligatoire : reviens {format_when(until, now, cfg)}."


def granted(first_name: str, ends_at: datetime, now: datetime, cfg: PolicyConfig) -> str:
    return f"C'est parti, {first_name[:40]} ! Jusqu'à {_when(ends_at, now, cfg)}."


def granted_staff(first_name: str, ends_at: datetime, now: datetime, cfg: PolicyConfig) -> str:
    return f"Bonjour {first_name[:40]}, machine ouverte jusqu'à {_when(ends_at, now, cfg)}."


def decision_failed() -> str:
    """The answer when the hub could not decide (a bug or bad reference data)."""
    return "Le hub n'a pas pu décider. Réessaie, ou appelle un animateur."


# --------------------------------------------------------------------------- numbers


def french_int(n: int) -> str:
    """An integer with French digit grouping (narrow no-break spaces): 1 204."""
    return f"{n:,}".replace(",", "\u202f")


def plural(n: int, one: str, many: str) -> str:
    """``1 session ouverte``, ``12 sessions ouvertes``: the count and the right form."""
    return f"{french_int(n)} {one if n == 1 else many}"


def hub_status(
    online: int, sessions: int, decisions: int, rejected: int, unattended: int = 0
) -> str:
    """The demo console's one line about the hub; ``unattended`` sessions (a print
    finishing after its member left) are counted apart, not as open sessions."""
    return " · ".join(
        (
            plural(online, "borne en ligne", "bornes en ligne"),
            plural(sessions, "session ouverte", "sessions ouvertes"),
            *(
                (plural(unattended, "travail qui finit seul", "travaux qui finissent seuls"),)
                if unattended
                else ()
            ),
            plural(decisions, "décision", "décisions"),
            plural(rejected, "message rejeté", "messages rejetés"),
        )
    )
