"""The SQLite engine of the state: one server's database, in a file only it opens.

SQLite runs in WAL mode with foreign keys on; writers of one process queue on a lock,
and their transactions start with ``BEGIN IMMEDIATE``, so a read-then-write cannot be
overtaken by another writer between its read and its write (SQLite would otherwise fail
it with "database is locked" at the upgrade). The writers of one event-loop turn share a
transaction, each in its own savepoint (group commit, see :meth:`SqliteDatabase.write`).
Read transactions are deferred and never block writers. The database file is created
readable by its owner only, since it holds the gateway password, and one process at a
time has it open (an exclusive lock on ``<file>.lock``): SQLite serves one server, so
that process may cache what it wrote.
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
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from . import direct
from .db import Conn, Database, DatabaseBusy

__all__ = ["SqliteDatabase"]

_T = TypeVar("_T")

_READ = "lxflex_read"  # execution option of read-only connections (the begin hook)
_IDLE_MAX = 4  # idle connections kept per kind


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


class SqliteDatabase(Database):
    """The state in one SQLite file, opened by this process alone."""

    dialect = "sqlite"
    exclusive = True

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        self._lock_fd: int | None = _lock(path)
        self.sync_engine = create_engine(f"sqlite:///{path}", pool_size=4)
        _setup_sqlite(self.sync_engine)
        # One writer at a time: writers queue here, never in BEGIN IMMEDIATE's busy-wait.
        self._writer = asyncio.Lock()
        # The write transaction open for this loop turn's writers, if any.
        self._batch: _Batch | None = None
        # Connections between transactions, read-only ones and writers apart: reusing
        # one costs a third of checking it out of SQLAlchemy's pool each time.
        self._idle: dict[bool, list[Connection]] = {True: [], False: []}

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Conn]:
        """A read-write transaction, committed on success and rolled back on error.

        The writers of one event-loop turn share a transaction (group commit):
        each runs in a savepoint of its own, so a failure takes back its changes alone,
        and none returns before the shared COMMIT is done; if that fails, all of them
        raise. A burst of requests pays for one BEGIN and one COMMIT, not one per write.
        """
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
        """A read-only transaction, deferred: it never blocks a writer."""
        with self._sqlite(read_only=True) as sync_conn, sync_conn.begin():
            yield _SyncConn(sync_conn)

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
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
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
