"""machine kind 'printer' (one spelling with the edge); drop machine.power_policy

The hub spelled a 3D printer's kind ``printer_3d`` where the edge spells
``printer``; both now take their names from ``protocol.kinds.MachineKind``, so
stored values are renamed: ``machine.kind`` and the denormalised
``usage_session.machine_kind`` (reports group by it). ``machine.power_policy`` was
stored and never acted on (a machine's power follows its kind, on the edge): dropped.

Revision ID: 6bea45ace78d
Revises: 13610834eece
Create Date: 2026-12-01 22:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6bea45ace78d"
down_revision: str | None = "13610834eece"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KIND_TABLES = (("machine", "kind"), ("usage_session", "machine_kind"))


def _rename_kind(old: str, new: str) -> None:
    for table, column in _KIND_TABLES:
        t = sa.table(table, sa.column(column, sa.String(32)))
        op.execute(t.update().where(t.c[column] == old).values({column: new}))


def upgrade() -> None:
    _rename_kind("printer_3d", "printer")
    with op.batch_alter_table("machine") as batch_op:
        batch_op.drop_column("power_policy")


def downgrade() -> None:
    with op.batch_alter_table("machine") as batch_op:
        batch_op.add_column(
            sa.Column(
                "power_policy",
                sa.Enum(
                    "follow_session",
                    "keep_while_job",
                    "lock_only",
                    name="powerpolicy",
                    native_enum=False,
                    length=32,
                ),
                nullable=False,
                server_default="follow_session",
            )
        )
    # Restore what each kind implied (DESIGN §4, machine power).
    m = sa.table(
        "machine", sa.column("kind", sa.String(32)), sa.column("power_policy", sa.String(32))
    )
    op.execute(m.update().where(m.c.kind == "printer").values(power_policy="keep_while_job"))
    op.execute(m.update().where(m.c.kind == "gaming_pc").values(power_policy="lock_only"))
    _rename_kind("printer", "printer_3d")
