"""Projects: named sets of storage volumes, with the ``default`` project made here.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import datetime
import json

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DEFAULT_CONFIG = {
    "features.images": "true",
    "features.networks": "true",
    "features.profiles": "true",
    "features.storage.volumes": "true",
}


def upgrade() -> None:
    table = op.create_table(
        "projects",
        sa.Column("id", sa.Integer),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("config", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.UniqueConstraint("name", name="uq_projects_name"),
    )
    op.bulk_insert(
        table,
        [
            {
                "name": "default",
                "description": "Default LXD project",
                "config": json.dumps(DEFAULT_CONFIG),
                "created_at": datetime.datetime.now(datetime.UTC),
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("projects")
