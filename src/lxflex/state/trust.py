"""The HTTPS trust store and the server config, inside a transaction.

Certificates are found by their SHA-256 fingerprint (lower-case hex) or a unique prefix of
it, as LXD does. Server keys are stored per server UUID; an empty UUID holds the keys
shared by every server of a cluster.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .db import Conn
from .schema import certificates, server_config
from .store import NameTaken, now

__all__ = ["AmbiguousPrefix", "Certificate"]


class AmbiguousPrefix(Exception):
    """More than one certificate starts with the fingerprint prefix given."""


@dataclass(frozen=True)
class Certificate:
    fingerprint: str
    type: str
    name: str
    certificate: str  # PEM
    restricted: bool
    projects: tuple[str, ...]
    created_at: datetime.datetime


def _certificate(row: Any) -> Certificate:
    created = row.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=datetime.UTC)
    return Certificate(
        row.fingerprint,
        row.type,
        row.name,
        row.certificate,
        bool(row.restricted),
        tuple(p for p in row.projects.split(",") if p),
        created,
    )


async def list_certificates(conn: Conn) -> list[Certificate]:
    rows = await conn.execute(sa.select(certificates).order_by(certificates.c.fingerprint))
    return [_certificate(r) for r in rows]


async def find_certificate(conn: Conn, prefix: str) -> Certificate | None:
    """The certificate whose fingerprint is ``prefix`` or starts with it."""
    if not prefix or not all(c in "0123456789abcdef" for c in prefix):
        return None
    query = sa.select(certificates).where(certificates.c.fingerprint.startswith(prefix)).limit(2)
    rows = (await conn.execute(query)).all()
    if len(rows) > 1:
        raise AmbiguousPrefix(prefix)
    return _certificate(rows[0]) if rows else None


async def add_certificate(
    conn: Conn,
    fingerprint: str,
    cert_type: str,
    name: str,
    pem: str,
    *,
    restricted: bool = False,
    projects: Sequence[str] = (),
) -> Certificate:
    values = {
        "fingerprint": fingerprint,
        "type": cert_type,
        "name": name,
        "certificate": pem,
        "restricted": restricted,
        "projects": ",".join(projects),
        "created_at": now(),
    }
    try:
        async with conn.begin_nested():
            await conn.execute(sa.insert(certificates), values)
    except IntegrityError as exc:
        raise NameTaken(fingerprint) from exc
    found = await find_certificate(conn, fingerprint)
    assert found is not None  # noqa: S101 - inserted in this transaction
    return found


async def update_certificate(
    conn: Conn,
    fingerprint: str,
    *,
    name: str,
    cert_type: str,
    restricted: bool,
    projects: Sequence[str],
) -> None:
    await conn.execute(
        sa.update(certificates)
        .where(certificates.c.fingerprint == fingerprint)
        .values(name=name, type=cert_type, restricted=restricted, projects=",".join(projects))
    )


async def delete_certificate(conn: Conn, fingerprint: str) -> None:
    await conn.execute(sa.delete(certificates).where(certificates.c.fingerprint == fingerprint))


async def get_server_config(conn: Conn, server_uuid: str) -> dict[str, str]:
    """The keys of one server: its own over those shared by all."""
    query = sa.select(server_config.c.server, server_config.c.key, server_config.c.value).where(
        server_config.c.server.in_(["", server_uuid])
    )
    shared: dict[str, str] = {}
    own: dict[str, str] = {}
    for server, key, value in await conn.execute(query):
        (own if server else shared)[key] = value
    return {**shared, **own}


async def set_server_config(conn: Conn, server_uuid: str, config: dict[str, str]) -> None:
    """Replace the server's own keys with ``config``."""
    await conn.execute(sa.delete(server_config).where(server_config.c.server == server_uuid))
    if config:
        await conn.execute(
            sa.insert(server_config),
            [{"server": server_uuid, "key": k, "value": v} for k, v in config.items()],
        )
