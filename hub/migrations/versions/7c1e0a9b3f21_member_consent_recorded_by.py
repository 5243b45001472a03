"""member consent recorded by

Adds ``member.consent_by``: the username of the staff account that recorded a
guardian's consent (shown beside its date on the members page).

Revision ID: 7c1e0a9b3f21
Revises: 6bea45ace78d
Create Date: 2026-12-01 22:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c1e0a9b3f21"
down_revision: str | None = "6bea45ace78d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("member") as batch:
        batch.add_column(
            sa.Column("consent_by", sa.String(length=64), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("member") as batch:
        batch.drop_column("consent_by")
