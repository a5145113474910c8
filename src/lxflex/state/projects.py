"""Projects, inside a transaction (see ``projects`` in schema.py)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .db import Conn
from .schema import projects, volumes
from .store import NameTaken, _aware, _config_from, _config_text, _guarded, now

__all__ = ["Project"]


class Project(msgspec.Struct, frozen=True):
    id: int
    name: str
    description: str
    config: Mapping[str, str]
    created_at: datetime.datetime


def _project(row: Any) -> Project:
    return Project(
        row.id, row.name, row.description, _config_from(row.config), _aware(row.created_at) or now()
    )


async def create_project(
    conn: Conn, name: str, config: Mapping[str, str], description: str = ""
) -> None:
    """Add a project; NameTaken if the name is."""
    values = {
        "name": name,
        "description": description,
        "config": _config_text(config),
        "created_at": now(),
    }
    await _guarded(conn, sa.insert(projects), values)


async def get_project(conn: Conn, name: str) -> Project | None:
    row = (await conn.execute(sa.select(projects).where(projects.c.name == name))).first()
    return None if row is None else _project(row)


async def list_projects(conn: Conn) -> list[Project]:
    rows = await conn.execute(sa.select(projects).order_by(projects.c.name))
    return [_project(r) for r in rows]


async def update_project(
    conn: Conn,
    project_id: int,
    *,
    name: str | None = None,
    config: Mapping[str, str] | None = None,
    description: str | None = None,
) -> None:
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = name
    if config is not None:
        values["config"] = _config_text(config)
    if description is not None:
        values["description"] = description
    if not values:
        return
    try:  # in a savepoint: a taken name leaves the transaction usable
        async with conn.begin_nested():
            await conn.execute(sa.update(projects).where(projects.c.id == project_id), values)
    except IntegrityError as exc:
        raise NameTaken(name or "") from exc


async def delete_project(conn: Conn, project_id: int) -> None:
    await conn.execute(sa.delete(projects).where(projects.c.id == project_id))


async def project_volumes(conn: Conn, name: str) -> list[tuple[int, str, str]]:
    """(pool ID, volume type, name) of the volumes stored under a project's name."""
    query = (
        sa.select(volumes.c.pool_id, volumes.c.type, volumes.c.name)
        .where(volumes.c.project == name)
        .order_by(volumes.c.pool_id, volumes.c.name)
    )
    return [(r.pool_id, r.type, r.name) for r in await conn.execute(query)]
