"""machine jobs and session run time

Adds ``usage_session.run_s`` (the machine's own measure of working time, e.g. a
laser's beam-on time) and the ``machine_job`` table, one row per ``job_ended``
journal event (a 3D print), attributed to the session that started it.

Revision ID: 13610834eece
Revises: dd44fad56270
Create Date: 2026-11-26 00:25:40.155502
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db.models

revision: str = "13610834eece"
down_revision: str | None = "dd44fad56270"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "machine_job",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("edge_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("machine_id", sa.String(length=32), nullable=False),
        sa.Column("zone_id", sa.String(length=32), nullable=True),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("age_group", sa.String(length=16), nullable=False),
        sa.Column("job", sa.String(length=200), nullable=False),
        sa.Column(
            "result",
            sa.Enum(
                "done",
                "failed",
                "cancelled",
                "lost",
                name="jobresult",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("filament_mm", sa.Float(), nullable=True),
        sa.Column("ended_at", hub.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("edge_id", "seq"),
    )
    op.create_index("ix_machine_job_ended_at", "machine_job", ["ended_at"])
    op.create_index("ix_machine_job_member_id", "machine_job", ["member_id"])
    op.create_index("ix_machine_job_session_id", "machine_job", ["session_id"])
    # A nullable column without default: a plain ALTER TABLE on both backends.
    op.add_column("usage_session", sa.Column("run_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_session") as batch_op:
        batch_op.drop_column("run_s")
    op.drop_index("ix_machine_job_session_id", table_name="machine_job")
    op.drop_index("ix_machine_job_member_id", table_name="machine_job")
    op.drop_index("ix_machine_job_ended_at", table_name="machine_job")
    op.drop_table("machine_job")
