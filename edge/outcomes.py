"""What the edge answers to each hub command: the stable codes and their French reasons.

Every ``cmd/session`` and ``cmd/machine`` command gets one
:class:`~protocol.messages.CommandOutcome` on ``outcome`` (a duplicate delivery
excepted): ``applied``, ``expired`` (it arrived after its ``not_after``), or
``refused`` with one of the codes below and a sentence for the staff member who sent
it. The session machine answers what it decides itself; a machine's kind
(:mod:`edge.kinds`) answers what its driver does (pause, resume, cancel, re-arm).
"""

from __future__ import annotations

from typing import Final

from edge.effects import Answer
from protocol.messages import Outcome

__all__ = [
    "CMD_EXPIRED",
    "Refusal",
    "applied",
    "refused",
]

CMD_EXPIRED: Final = "Commande arrivée trop tard : rien n'a été fait."

#: code -> French reason, for the codes that always mean the same thing.
REASONS: Final[dict[str, str]] = {
    "unknown_session": "Cette session n'est pas (ou plus) en cours sur cette machine.",
    "not_active": "La session est déjà en train de se terminer.",
    "bad_command": "Commande incomplète : rien n'a été fait.",
    "unknown_machine": "Cette machine n'est pas gérée par ce poste.",
    "no_driver": "Cette machine n'a pas de pilote : la commande est sans effet.",
    "unsupported": "Cette machine ne sait pas faire ça.",
    "no_job": "Aucun travail en cours sur cette machine.",
    "not_paused": "Le travail n'est pas en pause : rien à reprendre.",
    "driver_unreachable": "Le contrôleur de la machine ne répond pas : rien n'a été fait.",
    "driver_refused": "Le contrôleur de la machine a refusé la commande.",
    "driver_error": "Le contrôleur de la machine a répondu une erreur : rien n'a été fait.",
}


class Refusal(Exception):
    """A kind refuses a command: ``code`` (stable) and ``reason`` (French).

    Raised by the coroutine a kind submits to the drivers' loop, or returned by a
    kind's ``command`` when it refuses at once.
    """

    def __init__(self, code: str, reason: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.reason = reason or REASONS.get(code, "Commande refusée.")


def refused(cmd_id: str, code: str, reason: str = "") -> Answer:
    """The refusal of ``cmd_id`` with ``code`` (its usual reason unless given)."""
    return Answer(cmd_id, Outcome.REFUSED, code, reason or REASONS.get(code, "Commande refusée."))


def applied(cmd_id: str) -> Answer:
    """``cmd_id`` was carried out."""
    return Answer(cmd_id, Outcome.APPLIED)
