"""Pools pending on members: LXD's two-step creation of a cluster pool records, before
the pool is created, the members it was defined on (``--target``), as a JSON list.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.add_column(sa.Column("pending_on", sa.Text, nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM pools WHERE status = 'pending'")
    with op.batch_alter_table("pools") as batch:
        batch.drop_column("pending_on")
