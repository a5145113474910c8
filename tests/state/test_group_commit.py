"""SQLite group commit: the writers of one event-loop turn share a transaction, each in a
savepoint of its own, and none returns before the shared COMMIT."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from lxflex.state import Database, NameTaken
from lxflex.state import store as s


class Statements:
    """Every statement the database's SQLite connections run, as the driver sees them."""

    def __init__(self, db: Database) -> None:
        self.seen: list[str] = []
        assert db.sync_engine is not None
        event.listen(db.sync_engine, "connect", lambda dbapi, _record: self._trace(dbapi))
        for conns in db._idle.values():
            for conn in conns:
                self._trace(conn.connection.driver_connection)

    def _trace(self, driver: Any) -> None:
        driver.set_trace_callback(self.seen.append)

    def count(self, word: str) -> int:
        return sum(1 for sql in self.seen if sql.split()[0].upper() == word)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(f"sqlite:///{tmp_path}/state.db")
    yield database
    await database.close()


def pool_names(db: Database) -> set[str]:
    """The pools committed to the file, read by a connection of its own."""
    assert db.sync_engine is not None
    path = db.sync_engine.url.database
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM pools")}


async def add_pool(db: Database, name: str) -> None:
    async with db.write() as conn:
        await s.create_pool(conn, name, "powerflex", {})


async def test_writers_of_one_loop_turn_share_one_commit(db: Database) -> None:
    trace = Statements(db)
    await asyncio.gather(*(add_pool(db, f"p{i}") for i in range(20)))
    assert pool_names(db) == {f"p{i}" for i in range(20)}
    assert trace.count("BEGIN") == 1
    assert trace.count("COMMIT") == 1
    assert trace.count("SAVEPOINT") == 20
    await add_pool(db, "alone")  # a later writer gets a transaction of its own
    assert trace.count("COMMIT") == 2


async def test_no_writer_returns_before_the_commit(db: Database) -> None:
    async def write_then_look(name: str) -> bool:
        await add_pool(db, name)
        return name in pool_names(db)

    assert await asyncio.gather(*(write_then_look(f"p{i}") for i in range(5))) == [True] * 5


async def test_a_failed_writer_takes_back_its_own_changes_only(db: Database) -> None:
    trace = Statements(db)

    async def failing() -> None:
        async with db.write() as conn:
            await s.create_pool(conn, "undone", "powerflex", {})
            raise ValueError("the writer failed")

    results = await asyncio.gather(
        add_pool(db, "a"), failing(), add_pool(db, "c"), return_exceptions=True
    )
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], ValueError)
    assert pool_names(db) == {"a", "c"}
    assert trace.count("COMMIT") == 1  # the three shared one transaction
    assert trace.count("ROLLBACK") == 1  # ROLLBACK TO its savepoint


async def test_a_name_clash_inside_a_batch_fails_only_the_second_claim(db: Database) -> None:
    trace = Statements(db)
    results = await asyncio.gather(
        add_pool(db, "same"), add_pool(db, "same"), add_pool(db, "other"), return_exceptions=True
    )
    assert results[0] is None
    assert isinstance(results[1], NameTaken)
    assert results[2] is None
    assert pool_names(db) == {"same", "other"}
    assert trace.count("COMMIT") == 1


async def test_a_failed_commit_fails_every_writer_that_shared_it(db: Database) -> None:
    async def dangling_volume() -> None:
        async with db.write() as conn:
            # Checked at COMMIT: the volume names a pool that does not exist.
            await conn.execute(sa.text("PRAGMA defer_foreign_keys=ON"))
            await conn.execute(
                sa.text(
                    "INSERT INTO volumes (pool_id, project, name, type, content_type,"
                    " description, status, created_at, config) VALUES (4242, 'default',"
                    " 'v', 'custom', 'block', '', 'created', '2026-11-26 00:00:00', '{}')"
                )
            )

    results = await asyncio.gather(
        add_pool(db, "a"), dangling_volume(), add_pool(db, "c"), return_exceptions=True
    )
    assert all(isinstance(r, DBAPIError) for r in results), results
    assert "FOREIGN KEY" in str(results[0])
    assert results[0] is not results[2]  # each writer raises an exception of its own
    assert pool_names(db) == set()
    await add_pool(db, "after")  # the database goes on
    assert pool_names(db) == {"after"}


async def test_a_transaction_lost_under_a_writer_fails_the_writers_before_it(
    db: Database,
) -> None:
    async def losing() -> None:
        async with db.write() as conn:
            await conn.run_sync(lambda c: c.connection.driver_connection.execute("ROLLBACK"))
            raise OSError("disk full")

    results = await asyncio.gather(add_pool(db, "a"), losing(), return_exceptions=True)
    assert isinstance(results[0], DBAPIError)  # its change went with the transaction
    assert isinstance(results[1], OSError)
    assert pool_names(db) == set()
    await add_pool(db, "after")
    assert pool_names(db) == {"after"}


async def test_a_writer_that_awaits_keeps_the_batch_uncommitted(db: Database) -> None:
    seen_meanwhile: list[set[str]] = []

    async def slow() -> None:
        async with db.write() as conn:
            await s.create_pool(conn, "first", "powerflex", {})
            await asyncio.sleep(0.05)  # the commit scheduled for this turn must wait
            seen_meanwhile.append(pool_names(db))
            await s.create_pool(conn, "second", "powerflex", {})

    async def later() -> None:
        await asyncio.sleep(0.01)
        await add_pool(db, "queued")

    await asyncio.gather(slow(), later())
    assert seen_meanwhile == [set()]  # nothing half-written was visible
    assert pool_names(db) == {"first", "second", "queued"}


async def test_a_writer_cancelled_while_it_waits_for_the_commit_leaves_the_others(
    db: Database,
) -> None:
    waiting = asyncio.create_task(add_pool(db, "cancelled"))
    others = asyncio.gather(add_pool(db, "b"), add_pool(db, "c"))
    await asyncio.sleep(0)  # all three are inside the batch, waiting for its COMMIT
    waiting.cancel()
    await others
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # The cancelled writer's change was committed with the others (it was done); only its
    # wait for the answer was cut short.
    assert pool_names(db) == {"cancelled", "b", "c"}
