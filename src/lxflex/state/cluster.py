"""Cluster members, inside a transaction (see ``servers`` in schema.py).

A member's heartbeat is written and read by the database's clock, so that members whose
clocks disagree still agree on who is late.
"""

from __future__ import annotations

import datetime

import msgspec
import sqlalchemy as sa

from .db import Conn
from .schema import cluster_certificate, servers
from .store import _aware

__all__ = [
    "Member",
    "MemberTaken",
    "certificate",
    "heartbeat",
    "join",
    "leave",
    "list_members",
    "offer_certificate",
]

_NOW = sa.func.now(type_=sa.DateTime(timezone=True))


class MemberTaken(Exception):
    """The member name is held by another server."""


class Member(msgspec.Struct, frozen=True):
    server_uuid: str
    name: str
    address: str
    certificate: str
    architecture: str
    heartbeat_at: datetime.datetime | None
    silent_for: float | None  # seconds since the heartbeat, by the database's clock


async def join(
    conn: Conn, server_uuid: str, name: str, address: str, certificate: str, architecture: str
) -> None:
    """Make the server (already in ``servers``) the member ``name``, or refresh its
    address and certificate; a name another server holds raises MemberTaken."""
    held = (await conn.execute(sa.select(servers.c.uuid).where(servers.c.member == name))).first()
    if held is not None and held[0] != server_uuid:
        raise MemberTaken(f"cluster member {name!r} is another server ({held[0]})")
    await conn.execute(
        sa.update(servers)
        .where(servers.c.uuid == server_uuid)
        .values(
            member=name,
            address=address,
            certificate=certificate,
            architecture=architecture,
            heartbeat_at=_NOW,
        )
    )


async def heartbeat(conn: Conn, server_uuid: str) -> bool:
    """Record that the member is alive; False when it is no longer a member (removed)."""
    result = await conn.execute(
        sa.update(servers)
        .where(servers.c.uuid == server_uuid, servers.c.member.is_not(None))
        .values(heartbeat_at=_NOW)
    )
    return bool(result.rowcount)


async def list_members(conn: Conn) -> list[Member]:
    """Every member, by name."""
    query = (
        sa.select(
            servers.c.uuid,
            servers.c.member,
            servers.c.address,
            servers.c.certificate,
            servers.c.architecture,
            servers.c.heartbeat_at,
            _NOW.label("now"),
        )
        .where(servers.c.member.is_not(None))
        .order_by(servers.c.member)
    )
    members = []
    for row in await conn.execute(query):
        beat, now = _aware(row.heartbeat_at), _aware(row.now)
        silent = (now - beat).total_seconds() if beat is not None and now is not None else None
        members.append(
            Member(
                row.uuid,
                row.member,
                row.address or "",
                row.certificate or "",
                row.architecture or "",
                beat,
                silent,
            )
        )
    return members


async def leave(conn: Conn, name: str) -> bool:
    """The member ``name`` is one no more (its server row stays: journal entries and
    config name it); False if there was no such member."""
    result = await conn.execute(
        sa.update(servers)
        .where(servers.c.member == name)
        .values(member=None, address=None, certificate=None, architecture=None, heartbeat_at=None)
    )
    return bool(result.rowcount)


async def certificate(conn: Conn) -> tuple[str, str] | None:
    """The cluster certificate and its key (PEM), if a member has offered one."""
    row = (
        await conn.execute(sa.select(cluster_certificate.c.certificate, cluster_certificate.c.key))
    ).first()
    return (row.certificate, row.key) if row is not None else None


async def offer_certificate(conn: Conn, cert: str, key: str) -> tuple[str, str]:
    """Make ``cert`` the cluster certificate unless there is one: the one there is."""
    held = await certificate(conn)
    if held is not None:
        return held
    try:
        async with conn.begin_nested():  # a member starting at the same time may win
            await conn.execute(
                sa.insert(cluster_certificate).values(id=1, certificate=cert, key=key)
            )
    except sa.exc.IntegrityError:
        held = await certificate(conn)
        if held is not None:
            return held
        raise
    return cert, key
