"""kiosk tokens and alert seen

Adds kiosk_token (a kiosk screen paired with one machine; only the token's keyed
hash is stored, revocable) and alert.seen_at (staff saw the alert on the floor).

Revision ID: 268d2d130666
Revises: c37b3caa3359
Create Date: 2026-12-01 22:13:29.886122
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db.models

revision: str = "268d2d130666"
down_revision: str | None = "c37b3caa3359"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kiosk_token",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("machine_id", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("created_at", hub.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", hub.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["machine_id"], ["machine.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("kiosk_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kiosk_token_machine_id"), ["machine_id"], unique=False)

    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("seen_at", hub.db.models.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_column("seen_at")

    with op.batch_alter_table("kiosk_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kiosk_token_machine_id"))

    op.drop_table("kiosk_token")
