"""Initial schema: servers, pools, volumes, snapshots and their config.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_servers"),
        sa.UniqueConstraint("uuid", name="uq_servers_uuid"),
    )
    op.create_table(
        "pools",
        sa.Column("id", sa.Integer),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("driver", sa.String(32), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pools"),
        sa.UniqueConstraint("name", name="uq_pools_name"),
    )
    op.create_table(
        "pool_config",
        sa.Column("pool_id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("pool_id", "key", name="pk_pool_config"),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name="fk_pool_config_pool_id", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "volumes",
        sa.Column("id", sa.Integer),
        sa.Column("pool_id", sa.Integer, nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("content_type", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("array_id", sa.String(32), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_volumes"),
        sa.ForeignKeyConstraint(
            ["pool_id"], ["pools.id"], name="fk_volumes_pool_id", ondelete="RESTRICT"
        ),
        sa.UniqueConstraint(
            "pool_id", "project", "type", "name", name="uq_volumes_pool_id_project_type_name"
        ),
    )
    op.create_table(
        "volume_config",
        sa.Column("volume_id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("volume_id", "key", name="pk_volume_config"),
        sa.ForeignKeyConstraint(
            ["volume_id"], ["volumes.id"], name="fk_volume_config_volume_id", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer),
        sa.Column("volume_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("array_id", sa.String(32), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
        sa.ForeignKeyConstraint(
            ["volume_id"], ["volumes.id"], name="fk_snapshots_volume_id", ondelete="RESTRICT"
        ),
        sa.UniqueConstraint("volume_id", "name", name="uq_snapshots_volume_id_name"),
    )
    op.create_table(
        "snapshot_config",
        sa.Column("snapshot_id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("snapshot_id", "key", name="pk_snapshot_config"),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name="fk_snapshot_config_snapshot_id",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    for table in (
        "snapshot_config",
        "snapshots",
        "volume_config",
        "volumes",
        "pool_config",
        "pools",
        "servers",
    ):
        op.drop_table(table)
