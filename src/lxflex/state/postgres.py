"""The PostgreSQL engine of the state: one database that a cluster's members share.

Every member writes, so nothing read is cached (``exclusive`` is False), and writers run
at once: the store orders those that must not overlap with row locks
(``SELECT ... FOR UPDATE``). A failed statement aborts its whole transaction here, which
is why the store guards a statement that may clash in a savepoint. Work that spans many
transactions (an operation on one volume) is serialized across members by
:meth:`shared_lock`: a session advisory lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import psycopg
import psycopg.sql
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .db import NOTICE_LIMIT, Conn, Database

__all__ = ["PostgresDatabase"]

log = logging.getLogger("lxflex.state")


class PostgresDatabase(Database):
    """The state in a PostgreSQL database, through the async psycopg driver."""

    dialect = "postgresql"
    exclusive = False

    def __init__(self, url: str) -> None:
        self.engine = create_async_engine(url, pool_pre_ping=True)
        # The same database for psycopg's own connections (LISTEN needs one of its own).
        self._conninfo = (
            sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)
        )
        self._locks = _AdvisoryLocks(self.engine)

    def shared_lock(self, key: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(key)

    def try_shared_lock(self, key: str) -> AbstractAsyncContextManager[bool]:
        return self._locks.try_hold(key)

    async def notify(self, channel: str, payload: str) -> None:
        if len(payload.encode()) > NOTICE_LIMIT:
            raise ValueError(f"a notice is at most {NOTICE_LIMIT} bytes")
        async with self.engine.begin() as conn:  # delivered at commit
            await conn.execute(
                sa.text("SELECT pg_notify(:channel, :payload)"),
                {"channel": channel, "payload": payload},
            )

    async def notices(self, channel: str) -> AsyncIterator[str]:
        """LISTEN on a connection of its own; when it is lost, listen again (what was
        said meanwhile is missed, as with any NOTIFY)."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            except psycopg.OperationalError as exc:
                log.warning("cannot listen for %s: %s; retrying", channel, exc)
                await asyncio.sleep(1.0)
                continue
            try:
                await conn.execute(
                    psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel))
                )
                async for notice in conn.notifies():
                    yield notice.payload
            except psycopg.OperationalError as exc:
                log.warning("listening for %s stopped: %s; listening again", channel, exc)
                await asyncio.sleep(1.0)
            finally:
                await conn.close()

    async def url_for_members(self) -> str:
        """This URL with the password of a connection made from it (given in the URL or
        found by libpq: PGPASSWORD, ~/.pgpass), which the joiner may not have."""
        conn = await psycopg.AsyncConnection.connect(self._conninfo)
        try:
            password = conn.info.password
        finally:
            await conn.close()
        url = sa.engine.make_url(self._conninfo)
        if password and not url.password:
            url = url.set(password=password)
        return url.render_as_string(hide_password=False)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Conn]:
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Conn]:
        async with self.engine.connect() as conn, conn.begin():
            yield conn

    async def close(self) -> None:
        await self._locks.close()
        await self.engine.dispose()


def _lock_id(key: str) -> int:
    """The advisory lock of a key: 64 bits of its hash, signed as PostgreSQL's bigint."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), signed=True)


class _AdvisoryLocks:
    """Session advisory locks on one connection of this process, taken with
    ``pg_try_advisory_lock`` and retried while another session holds them. They go when
    released, or when the session ends: a member that dies (kill -9 included) lets go of
    every lock it held, and its peers go on."""

    RETRY = 0.05  # seconds between tries while another member holds the lock

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._guard = asyncio.Lock()  # one statement at a time on the connection

    async def _execute(self, statement: str, lock: int) -> bool:
        async with self._guard:
            if self._conn is None or self._conn.closed:
                conn = await self._engine.connect()
                self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            result = await self._conn.execute(sa.text(statement), {"lock": lock})
            return bool(result.scalar())

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = _lock_id(key)
        # The holder is another process: there is no event to wait for, only retries.
        while not await self._execute("SELECT pg_try_advisory_lock(:lock)", lock):  # noqa: ASYNC110
            await asyncio.sleep(self.RETRY)
        try:
            yield
        finally:
            await asyncio.shield(self._execute("SELECT pg_advisory_unlock(:lock)", lock))

    @asynccontextmanager
    async def try_hold(self, key: str) -> AsyncIterator[bool]:
        lock = _lock_id(key)
        held = await self._execute("SELECT pg_try_advisory_lock(:lock)", lock)
        try:
            yield held
        finally:
            if held:
                await asyncio.shield(self._execute("SELECT pg_advisory_unlock(:lock)", lock))

    async def close(self) -> None:
        async with self._guard:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None
