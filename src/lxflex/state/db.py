"""Opening the database, migrating it, and its two kinds of transaction.

SQLite (the embedded default) runs in WAL mode with foreign keys on; writers of one
process queue on a lock, and their transactions start with ``BEGIN IMMEDIATE``, so a
read-then-write cannot be overtaken by another
writer between its read and its write (SQLite would otherwise fail it with "database is
locked" at the upgrade). Read transactions are deferred and never block writers. The
database file is created readable by its owner only, since pool configs hold the
gateway password. PostgreSQL takes the same schema and queries.

Transactions are short: callers never hold one across a gateway or host call.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

__all__ = ["Database", "normalize_url"]

_MIGRATIONS = Path(__file__).parent / "migrations"
_READ = "lxflex_read"
# The newest migration; a test pins it to Alembic's head. Knowing it lets a database
# that is already current open without importing Alembic (time and memory at start-up).
HEAD_REVISION = "0001"


def normalize_url(url: str) -> str:
    """Accept plain ``sqlite:///``/``postgresql://`` URLs and pick the async drivers."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_file(url: str) -> Path | None:
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix) and ":memory:" not in url:
        return Path(url.removeprefix(prefix).split("?", 1)[0])
    return None


def _current_revision(connection: Connection) -> str | None:
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _run_migrations(connection: Connection) -> None:
    if _current_revision(connection) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class Database:
    """An open lxflex database. Use :meth:`open`, then :meth:`read` and :meth:`write`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite has one writer at a time. Queueing writers here, instead of letting them
        # collide in BEGIN IMMEDIATE, spares them SQLite's busy-wait sleeps (up to 100 ms
        # each) under contention. PostgreSQL needs no such queue.
        self._writer = asyncio.Lock() if self.dialect == "sqlite" else None

    def __repr__(self) -> str:
        return f"Database({self.dialect})"  # the URL may hold a password

    @classmethod
    async def open(cls, url: str) -> Database:
        """Connect, create the file (0600) if needed, and migrate to the newest schema."""
        url = normalize_url(url)
        path = _sqlite_file(url)
        kwargs: dict[str, Any] = {}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            os.chmod(path, 0o600)
            kwargs["pool_size"] = 8
        else:
            kwargs["pool_pre_ping"] = True
        engine = create_async_engine(url, **kwargs)
        if path is not None:
            _setup_sqlite(engine)
        db = cls(engine)
        async with db.write() as conn:
            await conn.run_sync(_run_migrations)
        return db

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction, committed on success and rolled back on error."""
        if self._writer is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._writer, self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (deferred on SQLite)."""
        async with self.engine.connect() as raw:
            conn = await raw.execution_options(**{_READ: True})
            async with conn.begin():
                yield conn

    async def close(self) -> None:
        await self.engine.dispose()


def _setup_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let the "begin" hook below emit BEGIN itself, not the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(_READ, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
