"""The gateway password in a column of its own, out of the pool's config.

A pool's ``config`` is what callers may be shown; the password is not. In its own
column it is read into a :class:`~lxflex.secret.Secret` and never travels as one more
key of a plain mapping.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_KEY = "powerflex.user.password"


def upgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.add_column(sa.Column("password", sa.Text, nullable=True))
    bind = op.get_bind()
    update = sa.text("UPDATE pools SET config = :config, password = :password WHERE id = :id")
    for pool_id, text in bind.execute(sa.text("SELECT id, config FROM pools")).all():
        config = json.loads(text)
        password = config.pop(_KEY, None)
        bind.execute(update, {"config": json.dumps(config), "password": password, "id": pool_id})


def downgrade() -> None:
    bind = op.get_bind()
    update = sa.text("UPDATE pools SET config = :config WHERE id = :id")
    rows = bind.execute(sa.text("SELECT id, config, password FROM pools")).all()
    for pool_id, text, password in rows:
        config = json.loads(text)
        if password is not None:
            config[_KEY] = password
        bind.execute(update, {"config": json.dumps(config), "id": pool_id})
    with op.batch_alter_table("pools") as batch:
        batch.drop_column("password")
