"""The PostgreSQL engine of the state: one database that a cluster's members share.

Every member writes, so nothing read is cached (``exclusive`` is False), and writers run
at once: the store orders those that must not overlap with row locks
(``SELECT ... FOR UPDATE``). A failed statement aborts its whole transaction here, which
is why the store guards a statement that may clash in a savepoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import create_async_engine

from .db import Conn, Database

__all__ = ["PostgresDatabase"]


class PostgresDatabase(Database):
    """The state in a PostgreSQL database, through the async psycopg driver."""

    dialect = "postgresql"
    exclusive = False

    def __init__(self, url: str) -> None:
        self.engine = create_async_engine(url, pool_pre_ping=True)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Conn]:
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Conn]:
        async with self.engine.connect() as conn, conn.begin():
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()
