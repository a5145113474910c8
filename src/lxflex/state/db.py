"""Opening the database and migrating it; what every engine offers the store.

lxflex's state lives in SQLite (the embedded default, one server) or PostgreSQL (a
cluster's members share it). Both take the same schema and the same queries, through
:class:`Conn`; the store never asks which engine it runs on. They differ in how a
transaction is made, and each engine is a class of its own:

=====================  ==============================  ==============================
                       SQLite (:mod:`.sqlite`)         PostgreSQL (:mod:`.postgres`)
=====================  ==============================  ==============================
writers                one at a time, queued in this   many at once; the row locks
                       process; the writers of one     and ``SELECT ... FOR UPDATE``
                       event-loop turn share a         of the store order them
                       transaction (group commit)
other processes        none: the file is locked at     every member of the cluster
                       open, so what this process      writes, so nothing read may
                       wrote may be cached             be cached (``exclusive``)
a failed statement     undone by SQLite alone; the     aborts the transaction; the
                       transaction goes on             store guards it in a savepoint
statements             on the event loop's thread      async, on psycopg
                       (microseconds each)
=====================  ==============================  ==============================

Transactions are short: callers never hold one across a gateway or host call.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["Conn", "Database", "DatabaseBusy", "normalize_url"]

_T = TypeVar("_T")

_MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration; a test pins it to Alembic's head. Knowing it lets a database
# that is already current open without importing Alembic (time and memory at start-up).
HEAD_REVISION = "0013"
NOTICE_LIMIT = 7900  # bytes of a notice (PostgreSQL's NOTIFY takes at most 8,000)


class DatabaseBusy(Exception):
    """Another process has the SQLite database open."""


class Conn(Protocol):
    """What the store needs of a connection in a transaction (async on both engines)."""

    async def execute(self, statement: Any, parameters: Any = None) -> Any: ...

    def begin_nested(self) -> AbstractAsyncContextManager[Any]: ...

    async def run_sync(self, fn: Callable[[Connection], _T]) -> _T: ...


def normalize_url(url: str) -> str:
    """Accept plain ``sqlite:///``/``postgresql://`` URLs; PostgreSQL goes through the
    async psycopg driver, SQLite through the standard library's."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for any other URL)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and ":memory:" not in url:
        return Path(url.removeprefix(prefix).split("?", 1)[0])
    return None


def _current_revision(connection: Connection) -> str | None:
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def run_migrations(connection: Connection) -> None:
    """Bring the schema to the newest revision (nothing to do on a current one)."""
    if _current_revision(connection) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class Database(abc.ABC):
    """An open lxflex database. Use :meth:`open`, then :meth:`read` and :meth:`write`."""

    dialect: str
    exclusive: bool
    """True when no other process writes this database, so what it wrote may be cached."""

    @staticmethod
    async def open(url: str) -> Database:
        """Connect (SQLite: create the file, 0600, if needed) and migrate to the newest
        schema."""
        url = normalize_url(url)
        path = sqlite_file(url)
        database: Database
        if path is not None:
            from .sqlite import SqliteDatabase

            database = SqliteDatabase(path)
        elif url.startswith("postgresql"):
            from .postgres import PostgresDatabase

            database = PostgresDatabase(url)
        else:
            raise ValueError("the state is a sqlite:/// file or a postgresql:// database")
        try:
            async with database.write() as conn:
                await conn.run_sync(run_migrations)
        except BaseException:
            await database.close()
            raise
        return database

    @abc.abstractmethod
    def write(self) -> AbstractAsyncContextManager[Conn]:
        """A read-write transaction, committed on success and rolled back on error."""

    @abc.abstractmethod
    def read(self) -> AbstractAsyncContextManager[Conn]:
        """A read-only transaction."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Let go of every connection (writers waiting for a commit get it first)."""

    async def notify(self, channel: str, payload: str) -> None:
        """Tell every other process of this database (the members of a cluster) about
        ``payload`` (at most NOTICE_LIMIT bytes) on ``channel``; a database only one process
        uses has nobody to tell."""
        return

    async def notices(self, channel: str) -> AsyncIterator[str]:
        """What the processes of this database say on ``channel`` (this one's too), for
        as long as the caller listens; nothing on a database only one process uses."""
        await asyncio.Event().wait()  # never set: nobody else speaks
        yield ""  # pragma: no cover - unreachable; makes this an async generator

    def shared_lock(self, key: str) -> AbstractAsyncContextManager[None]:
        """Hold ``key`` against every other process of this database (the members of a
        cluster) for as long as the block runs; the caller serializes its own tasks. A
        database only one process uses (SQLite) needs nothing."""
        return contextlib.nullcontext()

    def try_shared_lock(self, key: str) -> AbstractAsyncContextManager[bool]:
        """Hold ``key`` for the block if no other process holds it now, without waiting:
        the block gets whether it holds it. A process's own holds do not exclude it
        (the caller serializes its own tasks)."""
        return contextlib.nullcontext(True)

    async def url_for_members(self) -> str:
        """The URL another server joins this database with (a new cluster member): this
        one's, with the password this server's connections use. ValueError for a
        database only one process uses."""
        raise ValueError(f"a {self.dialect} database is not shared with other servers")

    def __repr__(self) -> str:
        return f"Database({self.dialect})"  # the URL may hold a password
