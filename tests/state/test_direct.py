"""Prepared writes on SQLite's driver store exactly what SQLAlchemy's path stores."""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from lxflex.state import Database, NameTaken
from lxflex.state import store as s
from lxflex.state.schema import volumes

WHEN = datetime.datetime(2026, 11, 25, 21, 31, 44, 123456, tzinfo=datetime.UTC)


def _row(name: str, pool_id: int) -> dict[str, object]:
    return {
        "pool_id": pool_id,
        "project": "default",
        "name": name,
        "type": "custom",
        "content_type": "block",
        "description": "",
        "status": "creating",
        "array_id": None,
        "created_at": WHEN,
        "config": "{}",
    }


def _raw(path: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchall()


async def test_prepared_and_plain_writes_store_the_same(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite:///{tmp_path}/x.db")
    through_engine: list[str] = []
    event.listen(
        db.sync_engine, "before_cursor_execute", lambda *a: through_engine.append(a[2].split()[0])
    )
    try:
        async with db.write() as conn:
            pool = await s.create_pool(conn, "p", "powerflex", {})
            through_engine.clear()
            fast = (await conn.execute(s._INSERT["volumes"], _row("fast", pool.id))).scalar_one()
            assert through_engine == []  # prepared: the driver ran it
            # The same INSERT, built anew: not prepared, so SQLAlchemy runs it.
            plain = sa.insert(volumes).returning(volumes.c.id)
            slow = (await conn.execute(plain, _row("slow", pool.id))).scalar_one()
            assert through_engine == ["INSERT"]
            done = {"status": "created", "config": '{"a":"1"}'}
            await conn.execute(s._UPDATE["volumes"], {**done, "row_id": fast})
            await conn.execute(sa.update(volumes).where(volumes.c.id == slow), done)
            assert through_engine == ["INSERT", "UPDATE"]
    finally:
        await db.close()
    fast_row, slow_row = _raw(
        tmp_path / "x.db",
        "SELECT project, type, content_type, description, status, array_id, config, "
        "created_at FROM volumes ORDER BY name",
    )
    assert fast_row == slow_row
    assert fast_row[-2:] == ('{"a":"1"}', "2026-11-25 21:31:44.123456")  # SQLAlchemy's time


async def test_a_clash_is_sqlalchemys_integrity_error_and_the_transaction_goes_on(
    tmp_path: Path,
) -> None:
    db = await Database.open(f"sqlite:///{tmp_path}/x.db")
    try:
        async with db.write() as conn:
            pool = await s.create_pool(conn, "p", "powerflex", {})
            await conn.execute(s._INSERT["volumes"], _row("v", pool.id))
            with pytest.raises(IntegrityError):
                await conn.execute(s._INSERT["volumes"], _row("v", pool.id))
            with pytest.raises(NameTaken):
                await s.create_volume(conn, pool.id, "default", "v", "custom", "block", {})
            await s.create_volume(conn, pool.id, "default", "w", "custom", "block", {"k": "v"})
        async with db.read() as conn:
            names = [v.name for v in await s.list_volumes(conn, pool.id)]
    finally:
        await db.close()
    assert names == ["v", "w"]


@pytest.mark.parametrize("through_sqlalchemy", [False, True])
async def test_a_failed_write_leaves_nothing(tmp_path: Path, through_sqlalchemy: bool) -> None:
    db = await Database.open(f"sqlite:///{tmp_path}/x.db")
    try:
        async with db.write() as conn:
            pool = await s.create_pool(conn, "p", "powerflex", {})

        async def failing() -> None:
            async with db.write() as conn:
                await conn.execute(s._INSERT["volumes"], _row("direct", pool.id))
                if through_sqlalchemy:  # SQLAlchemy joins the transaction, then rolls it back
                    await conn.execute(sa.insert(volumes), _row("engine", pool.id))
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await failing()
        async with db.write() as conn:  # the next transaction starts clean
            await conn.execute(sa.insert(volumes), _row("after", pool.id))
            await conn.execute(s._INSERT["volumes"], _row("later", pool.id))
        async with db.read() as conn:
            names = [v.name for v in await s.list_volumes(conn, pool.id)]
    finally:
        await db.close()
    assert names == ["after", "later"]
