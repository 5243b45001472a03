"""The generic kind: a machine on a relay or a plug, switched on and off with its session.

No driver follows it (:class:`~edge.kinds.base.NoDriver`); with a metering plug and
``busy_above_w`` its power says whether it is busy, and ``idle_timeout_min`` ends a
forgotten session (:class:`edge.power.PowerWatch`).
"""

from __future__ import annotations

from typing import Final

from edge.kinds.base import Kind, NoDriver
from edge.sessionconfig import SessionConfig
from protocol.kinds import MachineKind

__all__ = ["GENERIC"]

GENERIC: Final = Kind(
    name=MachineKind.GENERIC,
    preset=SessionConfig(),
    needs=("actuator",),
    follower=NoDriver,
    summary="switched on and off with its session; a fault cuts it",
)
