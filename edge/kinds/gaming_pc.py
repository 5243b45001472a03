"""The gaming PC kind: its session is locked and unlocked, the PC is never powered off.

The output is a :class:`~devices.pc.SessionLock` (``[machines.pc]``), optionally
with a plug (``[machines.actuator]``) for the screen or the console. Every message
for the player (grant with its end time, refusal and why, warnings so they can
save, end of session or break) is also a desktop notification, since a PC has no
LED or buzzer at its reader: the same under ``fabrique edge run`` as under
``fabrique pc-agent``. A fault (lost lock agent) is journaled only: cutting a game
in progress helps nobody.
"""

from __future__ import annotations

from typing import Final

from edge.effects import FeedbackKind
from edge.kinds.base import Kind, NoDriver
from edge.sessionconfig import Actuation, SessionConfig
from protocol.kinds import MachineKind

__all__ = ["GAMING_PC"]

GAMING_PC: Final = Kind(
    name=MachineKind.GAMING_PC,
    preset=SessionConfig(actuation=Actuation.LOCK, cut_on_fault=False),
    needs=("pc",),
    accepts=("actuator",),
    follower=NoDriver,
    summary="locked and unlocked, never powered off; a fault is journaled only",
    notify=frozenset(FeedbackKind),
)
