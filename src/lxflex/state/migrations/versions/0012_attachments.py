"""Attachments: a volume in use on a host, kept across restarts. One row per user: the
host itself (an operator's mount or device path) or an instance of that host's LXD or
Incus, with the disk device that gives it the volume.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attachments",
        sa.Column("id", sa.Integer),
        sa.Column("volume_id", sa.Integer, nullable=False),
        sa.Column("server_uuid", sa.String(36), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("instance", sa.String(255), nullable=False, server_default=""),
        sa.Column("instance_project", sa.String(255), nullable=False, server_default=""),
        sa.Column("device", sa.String(255), nullable=False, server_default=""),
        sa.Column("socket", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_attachments"),
        sa.ForeignKeyConstraint(
            ["volume_id"], ["volumes.id"], name="fk_attachments_volume_id", ondelete="RESTRICT"
        ),
        sa.UniqueConstraint(
            "volume_id",
            "server_uuid",
            "instance_project",
            "instance",
            name="uq_attachments_volume_id_server_uuid_instance_project_instance",
        ),
    )
    op.create_index("ix_attachments_server_uuid", "attachments", ["server_uuid"])


def downgrade() -> None:
    op.drop_index("ix_attachments_server_uuid", "attachments")
    op.drop_table("attachments")
