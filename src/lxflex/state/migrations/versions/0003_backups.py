"""Backups of custom volumes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.Integer),
        sa.Column("volume_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("volume_only", sa.Boolean, nullable=False),
        sa.Column("compression", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_backups"),
        sa.ForeignKeyConstraint(
            ["volume_id"], ["volumes.id"], name="fk_backups_volume_id", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("volume_id", "name", name="uq_backups_volume_id_name"),
    )


def downgrade() -> None:
    op.drop_table("backups")
