"""Instance volumes: the array ID of a virtual machine's filesystem twin.

A virtual machine's volume is a pair on the array, the root disk (``v_<uuid>.b``) and a
small filesystem volume (``v_<uuid>``) for its configuration; the record keeps both IDs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("volumes", "snapshots"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("fs_array_id", sa.String(32), nullable=True))


def downgrade() -> None:
    for table in ("volumes", "snapshots"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("fs_array_id")
