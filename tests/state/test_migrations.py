"""Migrations carry existing state forward (and back): configs into their JSON columns."""

from __future__ import annotations

import datetime
import json

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from lxflex.secret import Secret
from lxflex.state import Database
from lxflex.state import store as s
from lxflex.state.db import _MIGRATIONS, normalize_url

WHEN = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)


def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(_MIGRATIONS))
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


async def test_configs_move_into_their_rows_and_back(db_url: str) -> None:
    _migrate(db_url, "0004")
    engine = sa.create_engine(normalize_url(db_url))
    with engine.begin() as c:
        c.execute(
            sa.text(
                "INSERT INTO pools (id, name, driver, status, created_at) "
                "VALUES (1, 'p', 'powerflex', 'created', :t)"
            ),
            {"t": WHEN},
        )
        c.execute(
            sa.text(
                "INSERT INTO volumes (id, pool_id, project, name, type, content_type, status, "
                "created_at) VALUES (7, 1, 'default', 'v', 'custom', 'block', 'created', :t)"
            ),
            {"t": WHEN},
        )
        c.execute(
            sa.text(
                "INSERT INTO volumes (id, pool_id, project, name, type, content_type, status, "
                "created_at) VALUES (8, 1, 'default', 'bare', 'custom', 'block', 'created', :t)"
            ),
            {"t": WHEN},
        )
        c.execute(
            sa.text(
                "INSERT INTO snapshots (id, volume_id, name, status, created_at) "
                "VALUES (3, 7, 'snap0', 'created', :t)"
            ),
            {"t": WHEN},
        )
        for table, owner, owner_id, config in (
            ("pool_config", "pool_id", 1, {"powerflex.pool": "sp1", "volume.size": "8GiB"}),
            ("volume_config", "volume_id", 7, {"size": "8GiB", "user.quote": 'say "hi"\n'}),
            ("snapshot_config", "snapshot_id", 3, {"size": "8GiB"}),
        ):
            for key, value in config.items():
                insert = f'INSERT INTO {table} ({owner}, "key", value) VALUES (:o, :k, :v)'  # noqa: S608
                c.execute(sa.text(insert), {"o": owner_id, "k": key, "v": value})
    engine.dispose()

    db = await Database.open(db_url)  # upgrades to the head
    try:
        async with db.read() as conn:
            pool = await s.get_pool(conn, "p")
            assert pool is not None
            volume = await s.get_volume(conn, pool.id, "default", "custom", "v")
            bare = await s.get_volume(conn, pool.id, "default", "custom", "bare")
            snapshot = await s.get_snapshot(conn, 7, "snap0")
    finally:
        await db.close()
    assert dict(pool.config) == {"powerflex.pool": "sp1", "volume.size": "8GiB"}
    assert volume is not None
    assert volume.config == {"size": "8GiB", "user.quote": 'say "hi"\n'}
    assert bare is not None
    assert bare.config == {}
    assert snapshot is not None
    assert snapshot.config == {"size": "8GiB"}

    _migrate(db_url, "0004", down=True)
    engine = sa.create_engine(normalize_url(db_url))
    with engine.begin() as c:
        back = sorted(c.execute(sa.text('SELECT volume_id, "key", value FROM volume_config')))
    engine.dispose()
    assert back == [(7, "size", "8GiB"), (7, "user.quote", 'say "hi"\n')]


async def test_the_gateway_password_moves_out_of_the_config_and_back(db_url: str) -> None:
    _migrate(db_url, "0007")
    engine = sa.create_engine(normalize_url(db_url))
    config = {"powerflex.pool": "sp1", "powerflex.user.password": "Sim-Passw0rd!"}
    with engine.begin() as c:
        c.execute(
            sa.text(
                "INSERT INTO pools (id, name, driver, status, created_at, config) "
                "VALUES (1, 'p', 'powerflex', 'created', :t, :c)"
            ),
            {"t": WHEN, "c": json.dumps(config)},
        )
    engine.dispose()

    db = await Database.open(db_url)  # upgrades to the head
    try:
        async with db.read() as conn:
            pool = await s.get_pool(conn, "p")
    finally:
        await db.close()
    assert pool is not None
    assert dict(pool.config) == {"powerflex.pool": "sp1"}
    assert pool.password == Secret("Sim-Passw0rd!")

    _migrate(db_url, "0007", down=True)
    engine = sa.create_engine(normalize_url(db_url))
    with engine.begin() as c:
        (back,) = c.execute(sa.text("SELECT config FROM pools")).one()
    engine.dispose()
    assert json.loads(back) == config
