"""Backup records on SQLite and PostgreSQL: which have expired."""

from __future__ import annotations

import datetime

from lxflex.state import Database
from lxflex.state import backups as b
from lxflex.state import store as s


async def test_expired_backups_query(db: Database) -> None:
    now = datetime.datetime.now(datetime.UTC)
    async with db.write() as conn:
        pool = await s.create_pool(conn, "p", "powerflex", {})
        vol = await s.create_volume(conn, pool.id, "default", "v", "custom", "block", {})
        for name, delta in (("old", -60), ("new", 60)):
            await b.create_backup(
                conn,
                vol.id,
                name,
                expires_at=now + datetime.timedelta(seconds=delta),
                volume_only=False,
                compression="none",
            )
        await b.create_backup(
            conn, vol.id, "forever", expires_at=None, volume_only=False, compression="none"
        )
    async with db.read() as conn:
        assert [x.name for x in await b.expired_backups(conn, now)] == ["old"]
