"""Machine kind names: one spelling shared by the hub and the edge.

A kind says what a machine is (a 3D printer, a laser, a gaming PC, anything else on
a plug). The hub stores it with each machine, reports and dashboards group by it,
and the edge picks the kind's row in its table (:mod:`edge.kinds`) to know how a
session drives and follows the machine. The names are the values stored and sent;
changing one is a contract change (and a database migration on the hub).
"""

from __future__ import annotations

import enum

__all__ = ["MachineKind"]


class MachineKind(enum.StrEnum):
    """What a machine is; the edge's table of kinds has one row per value."""

    PRINTER = "printer"
    LASER = "laser"
    GAMING_PC = "gaming_pc"
    GENERIC = "generic"
