"""Backup records of custom volumes, inside a transaction."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .db import Conn
from .schema import backups
from .status import Status, Step
from .store import NameTaken, now, update_row

__all__ = ["Backup"]


@dataclass(frozen=True)
class Backup:
    id: int
    volume_id: int
    name: str
    created_at: datetime.datetime
    expires_at: datetime.datetime | None
    volume_only: bool
    compression: str
    status: Status  # creating, then created
    server_uuid: str | None = None  # whose state directory holds the tarball


def _utc(value: datetime.datetime | None) -> datetime.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value


def _backup(row: Any) -> Backup:
    created = _utc(row.created_at)
    assert created is not None  # noqa: S101 - a NOT NULL column
    return Backup(
        row.id,
        row.volume_id,
        row.name,
        created,
        _utc(row.expires_at),
        bool(row.volume_only),
        row.compression,
        Status(row.status),
        row.server_uuid,
    )


async def list_backups(conn: Conn, volume_id: int) -> list[Backup]:
    query = (
        sa.select(backups)
        .where(backups.c.volume_id == volume_id)
        .order_by(backups.c.created_at, backups.c.id)
    )
    return [_backup(r) for r in await conn.execute(query)]


async def all_backups(conn: Conn) -> list[Backup]:
    return [_backup(r) for r in await conn.execute(sa.select(backups))]


async def expired_backups(conn: Conn, at: datetime.datetime) -> list[Backup]:
    query = sa.select(backups).where(backups.c.expires_at.is_not(None), backups.c.expires_at <= at)
    return [_backup(r) for r in await conn.execute(query)]


async def get_backup(conn: Conn, volume_id: int, name: str) -> Backup | None:
    query = sa.select(backups).where(backups.c.volume_id == volume_id, backups.c.name == name)
    row = (await conn.execute(query)).first()
    return _backup(row) if row is not None else None


async def create_backup(
    conn: Conn,
    volume_id: int,
    name: str,
    *,
    expires_at: datetime.datetime | None,
    volume_only: bool,
    compression: str,
    server_uuid: str | None = None,
) -> Backup:
    values = {
        "server_uuid": server_uuid,
        "volume_id": volume_id,
        "name": name,
        "created_at": now(),
        "expires_at": expires_at,
        "volume_only": volume_only,
        "compression": compression,
        "status": Status.CREATING.value,
    }
    try:
        async with conn.begin_nested():
            await conn.execute(sa.insert(backups), values)
    except IntegrityError as exc:
        raise NameTaken(name) from exc
    found = await get_backup(conn, volume_id, name)
    assert found is not None  # noqa: S101 - inserted in this transaction
    return found


async def update_backup(
    conn: Conn, backup_id: int, *, step: Step | None = None, **values: Any
) -> None:
    """Set columns of one backup row (a clash of names raises NameTaken); its status
    changes only by ``step``."""
    await update_row(conn, backups, backup_id, values, step)


async def delete_backup(conn: Conn, backup_id: int) -> None:
    await conn.execute(sa.delete(backups).where(backups.c.id == backup_id))
