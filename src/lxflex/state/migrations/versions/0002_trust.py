"""HTTPS trust store and server config.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("certificate", sa.Text, nullable=False),
        sa.Column("restricted", sa.Boolean, nullable=False),
        sa.Column("projects", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_certificates"),
        sa.UniqueConstraint("fingerprint", name="uq_certificates_fingerprint"),
    )
    op.create_table(
        "server_config",
        sa.Column("server", sa.String(36), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("server", "key", name="pk_server_config"),
    )


def downgrade() -> None:
    op.drop_table("server_config")
    op.drop_table("certificates")
