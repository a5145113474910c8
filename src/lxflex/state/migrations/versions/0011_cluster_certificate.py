"""The cluster certificate: the one every member serves over HTTPS (what clients pin),
with its private key; access to the database is the cluster's trust.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_certificate",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("certificate", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_cluster_certificate_one"),
    )


def downgrade() -> None:
    op.drop_table("cluster_certificate")
