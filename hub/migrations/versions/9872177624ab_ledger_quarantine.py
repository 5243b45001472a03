"""ledger quarantine

Adds ``edge_quarantine`` (issue 12): journal events the ledger could not apply, kept
(without badge hash or job file name) and acknowledged so the edge's journal moves on.

Revision ID: 9872177624ab
Revises: 880a85cb959b
Create Date: 2026-12-08 05:03:42.709044
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db.models

revision: str = "9872177624ab"
down_revision: str | None = "880a85cb959b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "edge_quarantine",
        sa.Column("edge_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("ts", hub.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", hub.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("edge_id", "seq"),
    )


def downgrade() -> None:
    op.drop_table("edge_quarantine")
