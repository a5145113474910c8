"""Attachments of volumes to hosts (see ``attachments`` in schema.py), inside a
transaction."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .db import Conn
from .schema import attachments, volumes
from .store import NameTaken, _aware, now

__all__ = ["Attachment", "add", "forget_server", "list_attachments", "remove", "rename_instance"]


@dataclass(frozen=True)
class Attachment:
    id: int
    volume_id: int
    server_uuid: str
    path: str  # the mount point, or the block device
    instance: str  # "" for the host's own use
    instance_project: str
    device: str  # the instance's disk device
    socket: str  # the LXD or Incus API of the instance's host
    created_at: datetime.datetime

    @property
    def for_host(self) -> bool:
        return not self.instance


def _attachment(row: Any) -> Attachment:
    created = _aware(row.created_at)
    assert created is not None  # noqa: S101 - a NOT NULL column
    return Attachment(
        row.id,
        row.volume_id,
        row.server_uuid,
        row.path,
        row.instance,
        row.instance_project,
        row.device,
        row.socket,
        created,
    )


async def add(
    conn: Conn,
    volume_id: int,
    server_uuid: str,
    path: str,
    *,
    instance: str = "",
    instance_project: str = "",
    device: str = "",
    socket: str = "",
) -> Attachment:
    """Record a use of the volume on the server's host; NameTaken when that user (the
    host, or the instance) has it already."""
    values = {
        "volume_id": volume_id,
        "server_uuid": server_uuid,
        "path": path,
        "instance": instance,
        "instance_project": instance_project,
        "device": device,
        "socket": socket,
        "created_at": now(),
    }
    try:
        async with conn.begin_nested():
            result = await conn.execute(sa.insert(attachments).values(**values))
    except IntegrityError:
        who = f"instance {instance!r}" if instance else "this host"
        raise NameTaken(f"the volume is attached for {who} already") from None
    key = result.inserted_primary_key
    assert key is not None  # noqa: S101 - an insert has one
    row = (await conn.execute(sa.select(attachments).where(attachments.c.id == key[0]))).one()
    return _attachment(row)


async def remove(conn: Conn, attachment_id: int) -> bool:
    result = await conn.execute(sa.delete(attachments).where(attachments.c.id == attachment_id))
    return bool(result.rowcount)


async def forget_server(conn: Conn, server_uuid: str) -> int:
    """Every use on that server's host is gone (the server was removed, fenced)."""
    result = await conn.execute(
        sa.delete(attachments).where(attachments.c.server_uuid == server_uuid)
    )
    return int(result.rowcount)


async def rename_instance(
    conn: Conn, server_uuid: str, socket: str, project: str, old: str, new: str
) -> int:
    """The instance ``old`` of the daemon at ``socket`` is ``new`` now: its rows follow."""
    result = await conn.execute(
        sa.update(attachments)
        .where(
            attachments.c.server_uuid == server_uuid,
            attachments.c.socket == socket,
            attachments.c.instance_project == project,
            attachments.c.instance == old,
        )
        .values(instance=new)
    )
    return int(result.rowcount)


async def move_path(
    conn: Conn, attachment_id: int, path: str, *, volume_id: int | None = None
) -> None:
    """The use is at ``path`` now (its volume was renamed, and its mount moved), of the
    volume ``volume_id`` when given (its volume was moved to another pool: a copy)."""
    values: dict[str, object] = {"path": path}
    if volume_id is not None:
        values["volume_id"] = volume_id
    await conn.execute(
        sa.update(attachments).where(attachments.c.id == attachment_id).values(**values)
    )


async def list_attachments(
    conn: Conn,
    *,
    volume_id: int | None = None,
    server_uuid: str | None = None,
    pool_id: int | None = None,
) -> list[Attachment]:
    """The attachments of one volume, of one server's host, of one pool's volumes, or
    all of them (what is given narrows), oldest first."""
    query = sa.select(attachments).order_by(attachments.c.created_at, attachments.c.id)
    if volume_id is not None:
        query = query.where(attachments.c.volume_id == volume_id)
    if server_uuid is not None:
        query = query.where(attachments.c.server_uuid == server_uuid)
    if pool_id is not None:
        query = query.join(volumes, volumes.c.id == attachments.c.volume_id).where(
            volumes.c.pool_id == pool_id
        )
    return [_attachment(row) for row in await conn.execute(query)]
