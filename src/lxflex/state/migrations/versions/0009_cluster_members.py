"""Cluster members: a server that joined a cluster has a member name, the address its
peers reach it at, its own server certificate, its architecture, and a heartbeat.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        batch.add_column(sa.Column("member", sa.String(63), nullable=True))
        batch.add_column(sa.Column("address", sa.String(255), nullable=True))
        batch.add_column(sa.Column("certificate", sa.Text, nullable=True))
        batch.add_column(sa.Column("architecture", sa.String(32), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_unique_constraint("uq_servers_member", ["member"])


def downgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        batch.drop_constraint("uq_servers_member", type_="unique")
        for column in ("heartbeat_at", "architecture", "certificate", "address", "member"):
            batch.drop_column(column)
