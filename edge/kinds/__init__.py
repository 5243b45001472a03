"""The one table of machine kinds: name -> :class:`~edge.kinds.base.Kind` row.

Each row says how a session drives a machine of that kind (its preset), which
device sections the settings must and may give, and which
:class:`~edge.kinds.base.Follower` follows its driver (faults, telemetry,
commands, run time). Settings validation, the agent's wiring and the session
configuration all read this table; nothing else branches on a kind's name.

Adding a kind is a module here with its row and its follower class, and one
entry in :data:`KINDS` (plus a :class:`protocol.kinds.MachineKind` value when the
hub must know it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Final

from edge.kinds.base import DriverSignal, Follower, Kind, NoDriver, Post, Section, SignalKind
from edge.kinds.gaming_pc import GAMING_PC
from edge.kinds.generic import GENERIC
from edge.kinds.laser import LASER
from edge.kinds.printer import PRINTER
from edge.sessionconfig import SessionConfig

if TYPE_CHECKING:
    from edge.settings import EdgeSettings, MachineSettings

__all__ = [
    "KINDS",
    "DriverSignal",
    "Follower",
    "Kind",
    "NoDriver",
    "Post",
    "Section",
    "SignalKind",
    "get_kind",
    "session_config",
]

#: Every machine kind the edge knows, by name.
KINDS: Final[dict[str, Kind]] = {kind.name: kind for kind in (GENERIC, LASER, PRINTER, GAMING_PC)}


def get_kind(name: str) -> Kind:
    """The row of kind ``name``.

    Raises:
        ValueError: no such kind (the message lists the known ones).
    """
    try:
        return KINDS[name]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise ValueError(f"type de machine inconnu {name!r} (connus : {known})") from None


def session_config(m: MachineSettings, settings: EdgeSettings) -> SessionConfig:
    """The session machine's configuration for one machine: its kind's preset plus options."""
    kind = get_kind(m.kind)
    base = kind.tune(kind.preset, m) if kind.tune is not None else kind.preset
    off = settings.offline
    return replace(
        base,
        link_grace_s=m.link_grace_s,
        warn_before_min=m.warn_before_min,
        decision_timeout_s=off.decision_timeout_s,
        verdict_timeout_s=off.verdict_timeout_s,
        tick_s=m.tick_s,
        offline_break_rule=m.offline_break,
    )
