"""A session machine's configuration and what it reports: states, actuation, status.

:class:`SessionConfig` is the per-machine behaviour of
:class:`~edge.session.SessionMachine`; each machine kind's preset is a row of
:mod:`edge.kinds`, the machine's own options laid over it
(:func:`edge.kinds.session_config`). :class:`SessionStatus` is the machine's
snapshot for the retained state and the floor view.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol.messages import BreakRule

__all__ = ["Actuation", "SessionConfig", "SessionStatus", "State"]


class State(enum.StrEnum):
    """Where a machine's session stands."""

    IDLE = "idle"
    AWAITING_DECISION = "awaiting_decision"
    ACTIVE = "active"
    ENDING = "ending"
    ON_BREAK = "on_break"
    MAINTENANCE = "maintenance"


class Actuation(enum.StrEnum):
    """How a session enables its machine."""

    POWER = "power"  # relay or smart plug: PowerOn / PowerOff
    LOCK = "lock"  # gaming PC: Unlock / Lock, never powered off


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Per-machine behaviour; each machine kind's preset is its row's (:mod:`edge.kinds`).

    Attributes:
        actuation: power the machine, or lock/unlock a PC.
        hold_while_job: never cut while the driver reports a job (3D printers).
        end_on_job_done: end the session when a job is done (a print is a session).
        cut_on_fault: a fault ends the session and cuts power at once (lasers);
            otherwise it is journaled and the session goes on (fail-hold).
        cut_on_link_loss: end a session granted online when the hub has been
            unreachable for ``link_grace_s`` (staff and offline grants excepted).
        warn_before_min: warnings before the end when the hub sends no ``warn_at``,
            and before a forced break.
        decision_timeout_s: how long to wait for the hub before deciding offline.
        verdict_timeout_s: how long to wait for the offline verdict before giving up.
        tick_s: usage tick period (one minute; shorter only in tests).
        offline_break_rule: break rule of members' offline grants (the snapshot has none).
        default_break_min: length of a staff-forced break without ``minutes``.
        cooldown_s: longest wait, once a session ends, for a machine the agent
            reports hot (:meth:`SessionMachine.heat`) to cool before power is cut;
            0 cuts at once whatever the temperature.
        fault_hold_max_s: on a machine that holds on a fault (``cut_on_fault``
            false), the longest a fault may last before power is cut anyway (a
            printer whose OctoPrint is gone may still print from its own buffer,
            but not for ever); ``None``: no limit.
    """

    actuation: Actuation = Actuation.POWER
    hold_while_job: bool = False
    end_on_job_done: bool = False
    cut_on_fault: bool = True
    cut_on_link_loss: bool = False
    link_grace_s: float = 30.0
    warn_before_min: tuple[int, ...] = (10, 2)
    decision_timeout_s: float = 0.5
    verdict_timeout_s: float = 5.0
    tick_s: float = 60.0
    offline_break_rule: BreakRule | None = None
    default_break_min: int = 10
    cooldown_s: float = 0.0
    fault_hold_max_s: float | None = None


@dataclass(frozen=True, slots=True)
class SessionStatus:
    """What the machine is doing, for its retained state and the floor view."""

    machine: str
    state: State
    session_id: str | None = None
    badge: str | None = None
    offline: bool = False
    staff: bool = False
    remaining_s: float | None = None
    job_running: bool = False
    faulted: bool = False
    #: The session has ended but waits for the machine to cool before power off.
    cooling: bool = False
    #: The running job was started with no session open (nobody badged for it).
    foreign_job: bool = False
