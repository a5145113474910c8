"""Configs as a JSON column of their pool, volume or snapshot.

A config is always read and written whole, so a key per row bought nothing and cost a
subquery per row in every list (10,000 volumes: half the list's database time) and an
extra statement in every create. ``config`` holds the object as JSON text; the rows of
``pool_config``, ``volume_config`` and ``snapshot_config`` move into it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import json
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (owner table, config table, owner column)
_CONFIGS = (
    ("pools", "pool_config", "pool_id"),
    ("volumes", "volume_config", "volume_id"),
    ("snapshots", "snapshot_config", "snapshot_id"),
)


def upgrade() -> None:
    bind = op.get_bind()
    for owner, table, column in _CONFIGS:
        with op.batch_alter_table(owner) as batch:
            batch.add_column(sa.Column("config", sa.Text, nullable=False, server_default="{}"))
        configs: dict[int, dict[str, str]] = defaultdict(dict)
        rows = bind.execute(sa.text(f'SELECT {column}, "key", value FROM {table}'))  # noqa: S608 - names from _CONFIGS
        for owner_id, key, value in rows:
            configs[owner_id][key] = value
        update = sa.text(f"UPDATE {owner} SET config = :config WHERE id = :id")  # noqa: S608
        for owner_id, config in configs.items():
            bind.execute(update, {"config": json.dumps(config), "id": owner_id})
        op.drop_table(table)


def downgrade() -> None:
    bind = op.get_bind()
    for owner, table, column in _CONFIGS:
        op.create_table(
            table,
            sa.Column(column, sa.Integer, nullable=False),
            sa.Column("key", sa.String(255), nullable=False),
            sa.Column("value", sa.Text, nullable=False),
            sa.PrimaryKeyConstraint(column, "key", name=f"pk_{table}"),
            sa.ForeignKeyConstraint(
                [column], [f"{owner}.id"], name=f"fk_{table}_{column}", ondelete="CASCADE"
            ),
        )
        insert = sa.text(f'INSERT INTO {table} ({column}, "key", value) VALUES (:o, :k, :v)')  # noqa: S608
        for owner_id, text in bind.execute(sa.text(f"SELECT id, config FROM {owner}")):  # noqa: S608
            for key, value in json.loads(text).items():
                bind.execute(insert, {"o": owner_id, "k": key, "v": value})
        with op.batch_alter_table(owner) as batch:
            batch.drop_column("config")
