"""What a machine or session command answers to the API caller: the edge's outcome.

A route sends the command through :class:`~hub.control.HubControl`, then
:func:`await_outcome` waits (``command_outcome_wait_s``, about 5 s) for the edge's
:class:`~protocol.messages.CommandOutcome` and turns it into the HTTP answer:

==================  ======  ===========================================================
outcome             status  body
==================  ======  ===========================================================
applied             200     the route's result
refused             409     ``detail`` (French reason), ``code`` (stable, machines.md)
expired             409     ``code`` ``expired``: it reached the edge too late, nothing
                            was done
no answer in time   504     ``code`` ``no_answer``: the edge may still carry it out
                            before its ``not_after``; look at the machine
not sent            503     the edge or its session is unknown, or the broker is down
==================  ======  ===========================================================
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import HTTPException, status

from hub.control import CommandWait
from protocol.messages import CommandOutcome, Outcome

__all__ = ["NO_ANSWER", "CommandFailed", "await_outcome", "error_body"]

NO_ANSWER: Final = (
    "La machine n'a pas répondu à temps : la commande sera peut-être appliquée, "
    "vérifie l'état de la machine"
)


class CommandFailed(HTTPException):
    """An HTTP error that carries a stable ``code`` beside its French ``detail``."""

    def __init__(self, status_code: int, detail: str, code: str) -> None:
        super().__init__(status_code, detail=detail)
        self.code = code


def await_outcome(pending: CommandWait | None, unreachable: str) -> CommandOutcome:
    """The edge's ``applied`` outcome; raises the HTTP error of any other (see above).

    Args:
        pending: what the control returned (``None``: the command was not sent).
        unreachable: the French detail of the 503 when it was not sent.
    """
    if pending is None:
        raise CommandFailed(status.HTTP_503_SERVICE_UNAVAILABLE, unreachable, "not_sent")
    outcome = pending.wait()
    if outcome is None:
        raise CommandFailed(status.HTTP_504_GATEWAY_TIMEOUT, NO_ANSWER, "no_answer")
    if outcome.outcome is Outcome.APPLIED:
        return outcome
    code = outcome.code or ("expired" if outcome.outcome is Outcome.EXPIRED else "refused")
    raise CommandFailed(status.HTTP_409_CONFLICT, outcome.reason or "Commande refusée", code)


def error_body(exc: Exception, detail: Any) -> dict[str, Any]:
    """The JSON body of an HTTP error: ``detail``, and ``code`` when it has one."""
    body: dict[str, Any] = {"detail": detail}
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        body["code"] = code
    return body
