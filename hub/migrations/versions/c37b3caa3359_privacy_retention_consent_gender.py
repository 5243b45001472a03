"""privacy: retention pseudonyms, guardian consent, declared gender, erasure tombstones

Adds what the retention job and the data-protection duties need (DESIGN §4):

* ``pseudonym_key``: one random key per month; a usage session older than the retention
  period keeps ``participant`` = HMAC(month key, member id) instead of its member id and
  badge hash, and the key is deleted once the month is past retention;
* ``usage_session.gender`` / ``participant`` / ``first_month``: frozen when pseudonymised;
* ``member.first_visit_at`` (first session among the pseudonymised ones),
* ``member.gender`` (declared, optional), ``member.consent_recorded_by`` and
  ``member.consent_scope`` (who recorded a guardian's consent, and what it covers);
* ``erasure_tombstone``: when and by whom a member was erased, naming nobody;
* an index on ``usage_session.started_at`` for reports over a period.

Revision ID: c37b3caa3359
Revises: 6bea45ace78d
Create Date: 2026-12-01 22:35:19.011180
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db.models

revision: str = "c37b3caa3359"
down_revision: str | None = "6bea45ace78d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure_tombstone",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("erased_at", hub.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("erased_by_account", sa.Integer(), nullable=True),
        sa.Column("erased_by_username", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_erasure_tombstone_erased_at", "erasure_tombstone", ["erased_at"])
    op.create_table(
        "pseudonym_key",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("created_at", hub.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("month"),
    )
    with op.batch_alter_table("member") as batch_op:
        batch_op.add_column(sa.Column("consent_recorded_by", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("first_visit_at", hub.db.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("consent_scope", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(
            sa.Column(
                "gender",
                sa.Enum(
                    "femme",
                    "homme",
                    "autre",
                    "non_declare",
                    name="gender",
                    native_enum=False,
                    length=32,
                ),
                server_default="non_declare",
                nullable=False,
            )
        )
    # Existing consents were given before scopes existed: they covered access.
    op.execute("UPDATE member SET consent_scope = '[\"access\"]' WHERE consent_at IS NOT NULL")
    with op.batch_alter_table("member") as batch_op:
        batch_op.alter_column("consent_scope", server_default=None)
    with op.batch_alter_table("usage_session") as batch_op:
        batch_op.add_column(
            sa.Column("gender", sa.String(length=16), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("participant", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("first_month", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_index("ix_usage_session_started", ["started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("usage_session") as batch_op:
        batch_op.drop_index("ix_usage_session_started")
        batch_op.drop_column("first_month")
        batch_op.drop_column("participant")
        batch_op.drop_column("gender")
    with op.batch_alter_table("member") as batch_op:
        batch_op.drop_column("gender")
        batch_op.drop_column("consent_scope")
        batch_op.drop_column("first_visit_at")
        batch_op.drop_column("consent_recorded_by")
    op.drop_table("pseudonym_key")
    op.drop_index("ix_erasure_tombstone_erased_at", table_name="erasure_tombstone")
    op.drop_table("erasure_tombstone")
