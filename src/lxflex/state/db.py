"""Opening the database, migrating it, and its two kinds of transaction.

SQLite (the embedded default) runs in WAL mode with foreign keys on; writers of one
process queue on a lock, and their transactions start with ``BEGIN IMMEDIATE``, so a
read-then-write cannot be overtaken by another writer between its read and its write
(SQLite would otherwise fail it with "database is locked" at the upgrade). The writers
of one event-loop turn share a transaction, each in its own savepoint (group commit, see
:meth:`Database.write`). Read transactions are deferred and never block writers. The
database file is created readable by its owner only, since pool configs hold the
gateway password, and one process at a time has it open (an exclusive lock on
``<file>.lock``): SQLite serves one server, so that process may cache what it wrote.
PostgreSQL takes the same schema and queries, and serves a cluster.

Transactions are short: callers never hold one across a gateway or host call.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from . import direct

__all__ = ["Conn", "Database", "DatabaseBusy", "normalize_url"]

_T = TypeVar("_T")

_MIGRATIONS = Path(__file__).parent / "migrations"
_READ = "lxflex_read"
# The newest migration; a test pins it to Alembic's head. Knowing it lets a database
# that is already current open without importing Alembic (time and memory at start-up).
HEAD_REVISION = "0007"
_IDLE_MAX = 4  # idle SQLite connections kept per kind


class DatabaseBusy(Exception):
    """Another process has the SQLite database open."""


def normalize_url(url: str) -> str:
    """Accept plain ``sqlite:///``/``postgresql://`` URLs; PostgreSQL goes through the
    async psycopg driver, SQLite through the standard library's (see :class:`_SyncConn`)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_file(url: str) -> Path | None:
    prefix = "sqlite:///"
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


class Conn(Protocol):
    """What the store needs of a connection in a transaction (async on both engines)."""

    async def execute(self, statement: Any, parameters: Any = None) -> Any: ...

    def begin_nested(self) -> AbstractAsyncContextManager[Any]: ...

    async def run_sync(self, fn: Callable[[Connection], _T]) -> _T: ...


class _NoSavepoint(AbstractAsyncContextManager[None]):
    async def __aexit__(self, *_: object) -> None:
        return None


_NO_SAVEPOINT = _NoSavepoint()


class _SyncConn:
    """An async face on a synchronous SQLite connection.

    SQLite statements take tens of microseconds; running them on the event loop's thread
    costs less than aiosqlite's thread round trip per statement, which made every
    transaction several milliseconds long and serialized the daemon's writes. Callers
    hold no transaction across other awaits (a rule of the service layer), so a
    transaction here runs without yielding.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.driver = cast(sqlite3.Connection, conn.connection.driver_connection)

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        rows = direct.run(self.driver, self._conn.dialect, statement, parameters)
        return rows if rows is not None else self._conn.execute(statement, parameters)

    def begin_nested(self) -> AbstractAsyncContextManager[None]:
        """No savepoint: the store guards single statements with it, and SQLite undoes a
        failed statement by itself while the transaction goes on (PostgreSQL aborts the
        whole transaction, hence the savepoint there)."""
        return _NO_SAVEPOINT

    async def run_sync(self, fn: Callable[[Connection], _T]) -> _T:
        return fn(self._conn)


class _Batch:
    """A SQLite write transaction, shared by the writers of one event-loop turn.

    It is begun and ended on the driver: prepared writes (direct.py) need no more, and
    SQLAlchemy's transaction around them cost as much as they do. A statement that goes
    through SQLAlchemy makes it begin its own transaction, which joins this one (the begin
    hook sees it open) and is committed with it.
    """

    __slots__ = ("conn", "driver", "face", "loop", "scheduled", "waiters")

    def __init__(self, conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
        self.conn = conn
        self.face = _SyncConn(conn)
        self.driver = self.face.driver
        self.loop = loop
        self.scheduled = False  # its COMMIT is due at the next loop turn
        self.waiters: list[asyncio.Future[None]] = []  # writers done, awaiting the COMMIT


class Database:
    """An open lxflex database. Use :meth:`open`, then :meth:`read` and :meth:`write`."""

    def __init__(
        self,
        engine: AsyncEngine | None,
        sync_engine: Engine | None = None,
        lock_fd: int | None = None,
    ) -> None:
        self.engine = engine
        self.sync_engine = sync_engine
        self._lock_fd = lock_fd
        # True when no other process writes this database (SQLite, locked at open).
        self.exclusive = lock_fd is not None
        self.dialect = (
            "sqlite" if sync_engine is not None else (engine.dialect.name if engine else "")
        )
        # SQLite has one writer at a time: writers queue here, never in BEGIN IMMEDIATE's
        # busy-wait. PostgreSQL needs no such queue.
        self._writer = asyncio.Lock() if sync_engine is not None else None
        # The SQLite write transaction open for this loop turn's writers, if any.
        self._batch: _Batch | None = None
        # SQLite connections between transactions, read-only ones and writers apart:
        # reusing one costs a third of checking it out of SQLAlchemy's pool each time.
        self._idle: dict[bool, list[Connection]] = {True: [], False: []}

    def __repr__(self) -> str:
        return f"Database({self.dialect})"  # the URL may hold a password

    @classmethod
    async def open(cls, url: str) -> Database:
        """Connect, create the file (0600) if needed, and migrate to the newest schema."""
        url = normalize_url(url)
        path = _sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            os.chmod(path, 0o600)
            lock_fd = _lock(path)
            sync_engine = create_engine(f"sqlite:///{path}", pool_size=4)
            _setup_sqlite(sync_engine)
            db = cls(None, sync_engine, lock_fd)
        else:
            db = cls(create_async_engine(url, pool_pre_ping=True))
        async with db.write() as conn:
            await conn.run_sync(_run_migrations)
        return db

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Conn]:
        """A read-write transaction, committed on success and rolled back on error.

        On SQLite the writers of one event-loop turn share a transaction (group commit):
        each runs in a savepoint of its own, so a failure takes back its changes alone,
        and none returns before the shared COMMIT is done; if that fails, all of them
        raise. A burst of requests pays for one BEGIN and one COMMIT, not one per write.
        """
        if self._writer is None:
            assert self.engine is not None  # noqa: S101 - one of the two engines is set
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._writer:
            batch = self._batch or self._open_batch()
            batch.driver.execute("SAVEPOINT writer")
            try:
                yield batch.face
                batch.driver.execute("RELEASE writer")
            except BaseException as exc:
                self._undo(batch, exc)
                raise
            done = batch.loop.create_future()
            batch.waiters.append(done)
            self._schedule(batch)
        await done

    def _open_batch(self) -> _Batch:
        conn = self._checkout(read_only=False)
        batch = _Batch(conn, asyncio.get_running_loop())
        try:
            batch.driver.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._checkin(conn, read_only=False, ok=False)
            raise
        self._batch = batch
        return batch

    def _schedule(self, batch: _Batch) -> None:
        """Commit ``batch`` once the writers queued in this loop turn have joined it."""
        if not batch.scheduled:
            batch.scheduled = True
            batch.loop.call_soon(self._commit, batch)

    def _commit(self, batch: _Batch) -> None:
        batch.scheduled = False
        if self._batch is not batch:  # ended already (closed, or lost with a failed writer)
            return
        assert self._writer is not None  # noqa: S101 - batches are SQLite's
        if self._writer.locked():  # a writer is inside (awaiting): it reschedules on leaving
            return
        self._batch = None
        try:
            if batch.conn.in_transaction():  # a statement went through SQLAlchemy
                batch.conn.commit()
            else:
                batch.driver.commit()
        except Exception as exc:
            self._end_lost(batch, exc)
            return
        self._checkin(batch.conn, read_only=False, ok=True)
        for waiter in batch.waiters:
            if not waiter.done():  # else its writer was cancelled while it waited
                waiter.set_result(None)

    def _undo(self, batch: _Batch, error: BaseException) -> None:
        """Take back a failed writer's changes, leaving those of the writers before it."""
        if batch.driver.in_transaction:
            try:
                batch.driver.execute("ROLLBACK TO writer")
                batch.driver.execute("RELEASE writer")
            except sqlite3.Error as exc:
                self._end_lost(batch, exc)
            else:
                self._schedule(batch)  # the writers before it still wait for the COMMIT
        else:  # SQLite rolled the whole transaction back (a full disk, an I/O error)
            self._end_lost(batch, error)

    def _end_lost(self, batch: _Batch, error: BaseException) -> None:
        """Roll ``batch`` back and fail every writer waiting for it with ``error``."""
        if self._batch is batch:
            self._batch = None
        with contextlib.suppress(Exception):
            if batch.conn.in_transaction():
                batch.conn.rollback()
            elif batch.driver.in_transaction:
                batch.driver.rollback()
        self._checkin(batch.conn, read_only=False, ok=False)
        orig = getattr(error, "orig", None) or error
        for waiter in batch.waiters:
            if not waiter.done():  # one exception each, so no traceback mixes two tasks'
                waiter.set_exception(_commit_error(orig))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Conn]:
        """A read-only transaction (deferred on SQLite)."""
        if self.sync_engine is not None:
            with self._sqlite(read_only=True) as sync_conn, sync_conn.begin():
                yield _SyncConn(sync_conn)
            return
        assert self.engine is not None  # noqa: S101 - one of the two engines is set
        async with self.engine.connect() as raw_async:
            conn = await raw_async.execution_options(**{_READ: True})
            async with conn.begin():
                yield conn

    @contextmanager
    def _sqlite(self, *, read_only: bool) -> Iterator[Connection]:
        conn = self._checkout(read_only=read_only)
        try:
            yield conn
        except BaseException:
            self._checkin(conn, read_only=read_only, ok=False)
            raise
        self._checkin(conn, read_only=read_only, ok=True)

    def _checkout(self, *, read_only: bool) -> Connection:
        """An idle SQLite connection of the kind asked for, or a new one."""
        assert self.sync_engine is not None  # noqa: S101 - only called on SQLite
        idle = self._idle[read_only]
        conn = idle.pop() if idle else self.sync_engine.connect()
        if read_only:
            conn.execution_options(**{_READ: True})  # the begin hook reads it
        return conn

    def _checkin(self, conn: Connection, *, read_only: bool, ok: bool) -> None:
        """Keep ``conn`` for reuse; after a failure, give it back to the engine's pool,
        which resets it."""
        idle = self._idle[read_only]
        if not ok or conn.invalidated or len(idle) >= _IDLE_MAX:
            conn.close()
        else:
            idle.append(conn)

    async def close(self) -> None:
        if self._batch is not None:  # writers waiting for their commit get it now
            self._commit(self._batch)
        if self.engine is not None:
            await self.engine.dispose()
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        if self.sync_engine is not None:
            self.sync_engine.dispose()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _commit_error(orig: BaseException) -> sa.exc.StatementError:
    """What a writer raises when its transaction did not commit: SQLAlchemy's class for
    SQLite's error (IntegrityError for a constraint checked at COMMIT), else an
    OperationalError naming what took the transaction down."""
    if isinstance(orig, sqlite3.Error):
        return DBAPIError.instance("COMMIT", None, orig, sqlite3.Error)
    return sa.exc.OperationalError("COMMIT", None, orig)


def _lock(path: Path) -> int:
    """Hold ``<path>.lock`` exclusively for as long as the returned descriptor is open."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DatabaseBusy(
            f"the database {path} is in use by another process (it holds {lock_path}); "
            "stop it first, or give this one its own --state-dir"
        ) from None
    return fd


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let the "begin" hook below emit BEGIN itself, not the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(_READ, False)
        # Straight to the driver: SQLAlchemy's statement path would cost more than BEGIN.
        driver = conn.connection.driver_connection
        assert driver is not None  # noqa: S101 - a connection in use has its driver's
        if not driver.in_transaction:  # else a write batch began it (Database.write)
            driver.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")
