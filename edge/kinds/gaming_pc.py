"""The gaming PC kind: its session is locked and unlocked, the PC is never powered off.

The output is a :class:`~devices.pc.SessionLock` (``[machines.pc]``), optionally
with a plug (``[machines.actuator]``) for the screen or the console. Warnings are
also shown as desktop notifications so players can save. A fault (lost lock agent)
is journaled only: cutting a game in progress helps nobody.
"""

from __future__ import annotations

from typing import Final

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
)
