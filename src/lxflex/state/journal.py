"""Entries of the intent journal, inside a transaction (see ``journal`` in schema.py)."""

from __future__ import annotations

import datetime
from collections.abc import Collection, Iterable
from typing import Any

import msgspec
import sqlalchemy as sa

from .db import Conn
from .schema import journal
from .store import _aware, now

__all__ = ["Entry", "NewEntry"]


class NewEntry(msgspec.Struct, frozen=True):
    """An entry to add: ``kind`` ``volume`` (an array volume or snapshot, by ID or array
    name) or ``unmap`` (a volume's mapping to ``server``'s host), and why."""

    kind: str
    array_id: str | None = None
    name: str | None = None
    reason: str = ""


class Entry(msgspec.Struct, frozen=True):
    id: int
    pool_id: int
    server: str
    kind: str
    array_id: str | None
    name: str | None
    reason: str
    created_at: datetime.datetime


def _entry(row: Any) -> Entry:
    created = _aware(row.created_at) or now()
    return Entry(
        row.id, row.pool_id, row.server, row.kind, row.array_id, row.name, row.reason, created
    )


async def add_entries(
    conn: Conn, pool_id: int, server: str, entries: Iterable[NewEntry]
) -> list[int]:
    """Add entries; their IDs, in order."""
    ids = []
    when = now()
    for entry in entries:
        result = await conn.execute(
            sa.insert(journal).returning(journal.c.id),
            {
                "pool_id": pool_id,
                "server": server,
                "kind": entry.kind,
                "array_id": entry.array_id,
                "name": entry.name,
                "reason": entry.reason,
                "created_at": when,
            },
        )
        ids.append(int(result.scalar_one()))
    return ids


async def delete_entries(conn: Conn, ids: Iterable[int]) -> None:
    wanted = list(ids)
    if wanted:
        await conn.execute(sa.delete(journal).where(journal.c.id.in_(wanted)))


async def list_entries(
    conn: Conn, pool_id: int | None = None, ids: Collection[int] | None = None
) -> list[Entry]:
    """Entries (of one pool, or all; of ``ids`` only, if given), newest first: the
    order to undo them in."""
    query = sa.select(journal).order_by(journal.c.id.desc())
    if pool_id is not None:
        query = query.where(journal.c.pool_id == pool_id)
    if ids is not None:
        query = query.where(journal.c.id.in_(list(ids)))
    return [_entry(r) for r in await conn.execute(query)]


async def count_entries(conn: Conn, pool_id: int) -> int:
    query = sa.select(sa.func.count()).select_from(journal).where(journal.c.pool_id == pool_id)
    return int((await conn.execute(query)).scalar_one())
