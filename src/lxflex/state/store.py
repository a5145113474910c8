"""Reading and writing lxflex's records inside a transaction.

Every function takes the connection of a transaction opened by
:class:`~lxflex.state.db.Database` and returns plain frozen records; configs are loaded
with one extra query per call, never one per row. A unique-name clash raises
:class:`NameTaken`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles

from .db import Conn
from .direct import prepared
from .schema import pool_config, pools, servers, snapshot_config, snapshots, volume_config, volumes

__all__ = [
    "NameTaken",
    "Pool",
    "Snapshot",
    "Volume",
    "now",
]


_BATCH = 900  # IDs per IN (...) list: under SQLite's oldest bound-parameter limit

# The statements of the per-request paths are built once, with bound parameters, and
# executed with parameter dicts: SQLAlchemy builds and keys a statement in about four
# times the time it takes to execute a cached one, and every request runs several. The
# writes among them run on SQLite's driver directly (see direct.py).
_ROW: sa.BindParameter[int] = sa.bindparam("row_id")
_OWNER: sa.BindParameter[int] = sa.bindparam("owner_id")
_TABLES = (pools, volumes, snapshots, servers)
_INSERT = {t.name: prepared(sa.insert(t).returning(t.c.id)) for t in _TABLES}
_UPDATE = {t.name: prepared(sa.update(t).where(t.c.id == _ROW)) for t in _TABLES}
_DELETE = {t.name: prepared(sa.delete(t).where(t.c.id == _ROW)) for t in _TABLES}
_CONFIG_TABLES = (
    (pool_config, "pool_id"),
    (volume_config, "volume_id"),
    (snapshot_config, "snapshot_id"),
)
_CONFIG_OF = {
    t.name: sa.select(t.c.key, t.c.value).where(t.c[o] == _OWNER) for t, o in _CONFIG_TABLES
}
_CONFIG_CLEAR = {t.name: prepared(sa.delete(t).where(t.c[o] == _OWNER)) for t, o in _CONFIG_TABLES}
_CONFIG_ADD = {t.name: prepared(sa.insert(t)) for t, _ in _CONFIG_TABLES}
_POOL_BY_NAME = sa.select(pools).where(pools.c.name == sa.bindparam("name"))
_VOLUME_BY_NAME = sa.select(volumes).where(
    volumes.c.pool_id == sa.bindparam("pool_id"),
    volumes.c.project == sa.bindparam("project"),
    volumes.c.type == sa.bindparam("type"),
    volumes.c.name == sa.bindparam("name"),
)
_SNAPSHOT_BY_ID = sa.select(snapshots).where(snapshots.c.id == _ROW)
_SNAPSHOT_BY_NAME = sa.select(snapshots).where(
    snapshots.c.volume_id == sa.bindparam("volume_id"), snapshots.c.name == sa.bindparam("name")
)


class _ConfigObject(sa.sql.functions.GenericFunction[str]):
    """``key``/``value`` rows aggregated into one JSON object, as text: the configs of a
    list come in the rows of their owners (SQLite builds the objects in C far faster than
    Python folds one row per key)."""

    type = sa.Text()
    inherit_cache = True


@compiles(_ConfigObject, "sqlite")
def _config_object_sqlite(element: _ConfigObject, compiler: Any, **kw: Any) -> str:
    return f"json_group_object({compiler.process(element.clauses, **kw)})"


@compiles(_ConfigObject, "postgresql")
def _config_object_postgresql(element: _ConfigObject, compiler: Any, **kw: Any) -> str:
    return f"CAST(json_object_agg({compiler.process(element.clauses, **kw)}) AS TEXT)"


def _config_of_row(table: sa.Table, owner: str, owner_column: sa.Column[int]) -> Any:
    """A scalar subquery: the config of the row ``owner_column`` names, as JSON text."""
    return (
        sa.select(_ConfigObject(table.c.key, table.c.value))
        .where(table.c[owner] == owner_column)
        .scalar_subquery()
    )


_decode_config = msgspec.json.Decoder(dict[str, str])


def _config_from(doc: str | None) -> dict[str, str]:
    return _decode_config.decode(doc) if doc else {}  # PostgreSQL aggregates none as NULL


def _timestamp(value: datetime.datetime | str | None) -> datetime.datetime:
    """A stored time: SQLite's text (read raw in lists, parsed here far faster than by
    SQLAlchemy's converter), PostgreSQL's datetime; UTC either way."""
    if isinstance(value, str):
        # SQLite's text is naive UTC; naming the zone in it costs a fifth of replace().
        return datetime.datetime.fromisoformat(value + "+00:00")
    return _aware(value) or now()


# Lists read a volume's columns in the table's order, the time as the driver gives it, and
# the config in the same row.
_VOLUME_LIST_COLUMNS = [
    sa.type_coerce(c, sa.String) if c.name == "created_at" else c for c in volumes.c
]
_VOLUME_CONFIG = _config_of_row(volume_config, "volume_id", volumes.c.id)
_SNAPSHOT_CONFIG = _config_of_row(snapshot_config, "snapshot_id", snapshots.c.id)


class NameTaken(Exception):
    """A pool, volume or snapshot of that name exists already."""


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _aware(value: datetime.datetime | None) -> datetime.datetime | None:
    # SQLite returns naive datetimes; everything lxflex stores is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value


class Pool(msgspec.Struct, frozen=True):
    id: int
    name: str
    driver: str
    description: str
    status: str
    created_at: datetime.datetime
    config: Mapping[str, str] = msgspec.field(default_factory=dict)


class Volume(msgspec.Struct, frozen=True):
    id: int
    pool_id: int
    project: str
    name: str
    type: str
    content_type: str
    description: str
    status: str
    array_id: str | None
    created_at: datetime.datetime
    config: Mapping[str, str] = msgspec.field(default_factory=dict)
    fs_array_id: str | None = None  # a virtual machine's filesystem twin


class Snapshot(msgspec.Struct, frozen=True):
    id: int
    volume_id: int
    name: str
    description: str
    status: str
    array_id: str | None
    created_at: datetime.datetime
    expires_at: datetime.datetime | None
    config: Mapping[str, str] = msgspec.field(default_factory=dict)
    fs_array_id: str | None = None  # a virtual machine's filesystem twin


# --- config tables -------------------------------------------------------------------


async def _config(conn: Conn, table: sa.Table, owner_id: int) -> dict[str, str]:
    """The config of one pool, volume or snapshot."""
    rows = await conn.execute(_CONFIG_OF[table.name], {"owner_id": owner_id})
    return {key: value for key, value in rows}


async def _configs(
    conn: Conn, table: sa.Table, owner: str, ids: Sequence[int]
) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {i: {} for i in ids}
    if not ids:
        return found
    column = table.c[owner]
    for start in range(0, len(ids), _BATCH):
        query = sa.select(column, table.c.key, table.c.value).where(
            column.in_(ids[start : start + _BATCH])
        )
        for owner_id, key, value in await conn.execute(query):
            found[owner_id][key] = value
    return found


async def _replace_config(
    conn: Conn, table: sa.Table, owner: str, owner_id: int, config: Mapping[str, str]
) -> None:
    await conn.execute(_CONFIG_CLEAR[table.name], {"owner_id": owner_id})
    if config:
        await conn.execute(
            _CONFIG_ADD[table.name],
            [{owner: owner_id, "key": k, "value": v} for k, v in config.items()],
        )


async def _guarded(conn: Conn, statement: Any, params: Mapping[str, Any]) -> Any:
    """Execute in a savepoint, so a name clash leaves the transaction usable (PostgreSQL
    would otherwise abort it) and raises NameTaken."""
    try:
        async with conn.begin_nested():
            return await conn.execute(statement, params)
    except IntegrityError as exc:
        raise NameTaken(str(params.get("name", ""))) from exc


async def _insert(conn: Conn, table: sa.Table, values: Mapping[str, Any]) -> int:
    result = await _guarded(conn, _INSERT[table.name], values)
    return int(result.scalar_one())


async def _update(conn: Conn, table: sa.Table, row_id: int, values: Mapping[str, Any]) -> None:
    """Set ``values`` (column: value) on one row; a name clash raises NameTaken."""
    await _guarded(conn, _UPDATE[table.name], {**values, "row_id": row_id})


async def _delete(conn: Conn, table: sa.Table, row_id: int) -> None:
    await conn.execute(_DELETE[table.name], {"row_id": row_id})


# --- servers -------------------------------------------------------------------------


async def ensure_server(conn: Conn, server_uuid: str, name: str) -> int:
    row = (await conn.execute(sa.select(servers.c.id).where(servers.c.uuid == server_uuid))).first()
    if row is not None:
        return int(row[0])
    return await _insert(conn, servers, {"uuid": server_uuid, "name": name, "created_at": now()})


# --- pools ---------------------------------------------------------------------------


def _pool(row: Any, config: Mapping[str, str]) -> Pool:
    return Pool(
        row.id,
        row.name,
        row.driver,
        row.description,
        row.status,
        _aware(row.created_at) or now(),
        MappingProxyType(dict(config)),  # read-only: the service may cache pool records
    )


async def create_pool(
    conn: Conn,
    name: str,
    driver: str,
    config: Mapping[str, str],
    *,
    description: str = "",
    status: str = "created",
) -> Pool:
    pool_id = await _insert(
        conn,
        pools,
        {
            "name": name,
            "driver": driver,
            "description": description,
            "status": status,
            "created_at": now(),
        },
    )
    await _replace_config(conn, pool_config, "pool_id", pool_id, config)
    found = await get_pool(conn, name)
    assert found is not None  # noqa: S101 - inserted in this transaction
    return found


async def get_pool(conn: Conn, name: str, *, for_update: bool = False) -> Pool | None:
    """The pool named ``name``; ``for_update`` locks its row until the transaction ends
    (PostgreSQL; SQLite's write transactions are exclusive already)."""
    query = _POOL_BY_NAME.with_for_update() if for_update else _POOL_BY_NAME
    row = (await conn.execute(query, {"name": name})).first()
    if row is None:
        return None
    return _pool(row, await _config(conn, pool_config, row.id))


async def list_pools(conn: Conn) -> list[Pool]:
    rows = (await conn.execute(sa.select(pools).order_by(pools.c.name))).all()
    configs = await _configs(conn, pool_config, "pool_id", [r.id for r in rows])
    return [_pool(r, configs[r.id]) for r in rows]


async def update_pool(
    conn: Conn,
    pool_id: int,
    *,
    config: Mapping[str, str] | None = None,
    description: str | None = None,
    status: str | None = None,
) -> None:
    values = {k: v for k, v in (("description", description), ("status", status)) if v is not None}
    if values:
        await _update(conn, pools, pool_id, values)
    if config is not None:
        await _replace_config(conn, pool_config, "pool_id", pool_id, config)


async def delete_pool(conn: Conn, pool_id: int) -> None:
    await _delete(conn, pools, pool_id)


# --- volumes -------------------------------------------------------------------------


def _volume(row: Any, config: Mapping[str, str]) -> Volume:
    # Positional: the table's columns are the record's fields, in order. Attribute access
    # by name on 10,000 rows costs more than the query itself.
    (vol_id, pool_id, project, name, vtype, content, description, status, array_id, created, fs) = (
        row
    )
    return Volume(
        vol_id,
        pool_id,
        project,
        name,
        vtype,
        content,
        description,
        status,
        array_id,
        _timestamp(created),
        config,
        fs,
    )


async def create_volume(
    conn: Conn,
    pool_id: int,
    project: str,
    name: str,
    volume_type: str,
    content_type: str,
    config: Mapping[str, str],
    *,
    description: str = "",
    status: str = "creating",
) -> Volume:
    created = now()
    vol_id = await _insert(
        conn,
        volumes,
        {
            "pool_id": pool_id,
            "project": project,
            "name": name,
            "type": volume_type,
            "content_type": content_type,
            "description": description,
            "status": status,
            "array_id": None,
            "created_at": created,
        },
    )
    if config:  # a new row has no config to replace
        await conn.execute(
            _CONFIG_ADD[volume_config.name],
            [{"volume_id": vol_id, "key": k, "value": v} for k, v in config.items()],
        )
    return Volume(
        vol_id,
        pool_id,
        project,
        name,
        volume_type,
        content_type,
        description,
        status,
        None,
        created,
        dict(config),
    )


async def get_volume(
    conn: Conn, pool_id: int, project: str, volume_type: str, name: str
) -> Volume | None:
    params = {"pool_id": pool_id, "project": project, "type": volume_type, "name": name}
    row = (await conn.execute(_VOLUME_BY_NAME, params)).first()
    if row is None:
        return None
    return _volume(row, await _config(conn, volume_config, row.id))


async def list_volumes(
    conn: Conn,
    pool_id: int,
    *,
    project: str | None = None,
    volume_type: str | None = None,
) -> list[Volume]:
    """A pool's volumes with their configs: one query, whatever the count."""
    where = [volumes.c.pool_id == pool_id]
    if project is not None:
        where.append(volumes.c.project == project)
    if volume_type is not None:
        where.append(volumes.c.type == volume_type)
    query = (
        sa.select(*_VOLUME_LIST_COLUMNS, _VOLUME_CONFIG)
        .where(*where)
        .order_by(volumes.c.type, volumes.c.name)
    )
    return [_volume(row[:-1], _config_from(row[-1])) for row in (await conn.execute(query)).all()]


async def volume_names(conn: Conn, pool_id: int) -> list[tuple[str, str]]:
    """(project, name) of a pool's created custom volumes: what ``used_by`` lists."""
    query = (
        sa.select(volumes.c.project, volumes.c.name)
        .where(
            volumes.c.pool_id == pool_id, volumes.c.type == "custom", volumes.c.status == "created"
        )
        .order_by(volumes.c.name)
    )
    return [(project, name) for project, name in await conn.execute(query)]


async def count_volumes(conn: Conn, pool_id: int) -> int:
    query = sa.select(sa.func.count()).select_from(volumes).where(volumes.c.pool_id == pool_id)
    return int((await conn.execute(query)).scalar_one())


async def update_volume(
    conn: Conn,
    vol_id: int,
    *,
    config: Mapping[str, str] | None = None,
    **values: Any,
) -> None:
    if values:
        await _update(conn, volumes, vol_id, values)
    if config is not None:
        await _replace_config(conn, volume_config, "volume_id", vol_id, config)


async def delete_volume(conn: Conn, vol_id: int) -> None:
    await _delete(conn, volumes, vol_id)


# --- snapshots -----------------------------------------------------------------------


def _snapshot(row: Any, config: Mapping[str, str]) -> Snapshot:
    return Snapshot(
        row.id,
        row.volume_id,
        row.name,
        row.description,
        row.status,
        row.array_id,
        _aware(row.created_at) or now(),
        _aware(row.expires_at),
        dict(config),
        row.fs_array_id,
    )


async def create_snapshot(
    conn: Conn,
    volume_id: int,
    name: str,
    config: Mapping[str, str],
    *,
    description: str = "",
    expires_at: datetime.datetime | None = None,
    status: str = "creating",
) -> Snapshot:
    snap_id = await _insert(
        conn,
        snapshots,
        {
            "volume_id": volume_id,
            "name": name,
            "description": description,
            "status": status,
            "array_id": None,
            "created_at": now(),
            "expires_at": expires_at,
        },
    )
    await _replace_config(conn, snapshot_config, "snapshot_id", snap_id, config)
    return await snapshot_by_id(conn, snap_id)


async def snapshot_by_id(conn: Conn, snap_id: int) -> Snapshot:
    row = (await conn.execute(_SNAPSHOT_BY_ID, {"row_id": snap_id})).one()
    return _snapshot(row, await _config(conn, snapshot_config, snap_id))


async def list_snapshots(conn: Conn, volume_id: int) -> list[Snapshot]:
    """A volume's snapshots, oldest first."""
    query = (
        sa.select(snapshots)
        .where(snapshots.c.volume_id == volume_id)
        .order_by(snapshots.c.created_at, snapshots.c.id)
    )
    rows = (await conn.execute(query)).all()
    configs = await _configs(conn, snapshot_config, "snapshot_id", [r.id for r in rows])
    return [_snapshot(r, configs[r.id]) for r in rows]


async def list_pool_snapshots(conn: Conn, pool_id: int) -> dict[int, list[Snapshot]]:
    """Every snapshot of a pool's volumes, by volume ID, oldest first: one query."""
    query = (
        sa.select(snapshots, _SNAPSHOT_CONFIG)
        .join(volumes, volumes.c.id == snapshots.c.volume_id)
        .where(volumes.c.pool_id == pool_id)
        .order_by(snapshots.c.created_at, snapshots.c.id)
    )
    found: dict[int, list[Snapshot]] = {}
    for row in (await conn.execute(query)).all():
        found.setdefault(row.volume_id, []).append(_snapshot(row, _config_from(row[-1])))
    return found


async def get_snapshot(conn: Conn, volume_id: int, name: str) -> Snapshot | None:
    params = {"volume_id": volume_id, "name": name}
    row = (await conn.execute(_SNAPSHOT_BY_NAME, params)).first()
    if row is None:
        return None
    return _snapshot(row, await _config(conn, snapshot_config, row.id))


async def update_snapshot(conn: Conn, snap_id: int, **values: Any) -> None:
    await _update(conn, snapshots, snap_id, values)


async def delete_snapshot(conn: Conn, snap_id: int) -> None:
    await _delete(conn, snapshots, snap_id)
