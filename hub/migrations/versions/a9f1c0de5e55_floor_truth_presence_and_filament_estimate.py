"""the floor tells the truth: a session's presence apart from its machine time; filament
estimates flagged

``usage_session.present_s``: the member's presence (start until the session was asked
to end), apart from ``used_s``, the time the session held the machine (a print's end
and its cool-down after the member left); funders' hours count presence (issue 9).
``machine_job.filament_estimated``: the filament of a job that did not finish is
scaled from its progress, and reports say so.

Revision ID: a9f1c0de5e55
Revises: 9872177624ab
Create Date: 2026-12-08 05:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a9f1c0de5e55"
down_revision: str | None = "9872177624ab"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("present_s", sa.Float(), nullable=True))
    with op.batch_alter_table("machine_job", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("filament_estimated", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("machine_job", schema=None) as batch_op:
        batch_op.drop_column("filament_estimated")
    with op.batch_alter_table("usage_session", schema=None) as batch_op:
        batch_op.drop_column("present_s")
