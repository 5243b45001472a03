"""job controller user

Adds ``machine_job.controller_user`` (issue 9): OctoPrint's user who started a job (a
print started from OctoPrint's own page), staff-only.

Revision ID: 5e1b7c9d2a40
Revises: a9f1c0de5e55
Create Date: 2026-12-08 05:25:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e1b7c9d2a40"
down_revision: str | None = "a9f1c0de5e55"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("machine_job") as batch:
        batch.add_column(sa.Column("controller_user", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("machine_job") as batch:
        batch.drop_column("controller_user")
