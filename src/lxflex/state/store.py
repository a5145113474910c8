"""Reading and writing lxflex's records inside a transaction.

Every function takes the connection of a transaction opened by
:class:`~lxflex.state.db.Database` and returns plain frozen records; a config comes in
its owner's row (a JSON object). A unique-name clash raises :class:`NameTaken`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..secret import Secret
from .db import Conn
from .direct import prepared
from .schema import backups, pools, servers, snapshots, volumes
from .status import POOL_CREATED, Status, StatusChanged, Step

__all__ = [
    "NameTaken",
    "Pool",
    "Snapshot",
    "Volume",
    "now",
]


# The statements of the per-request paths are built once, with bound parameters, and
# executed with parameter dicts: SQLAlchemy builds and keys a statement in about four
# times the time it takes to execute a cached one, and every request runs several. The
# writes among them run on SQLite's driver directly (see direct.py).
_ROW: sa.BindParameter[int] = sa.bindparam("row_id")
_TABLES = (pools, volumes, snapshots, servers, backups)
_INSERT = {t.name: prepared(sa.insert(t).returning(t.c.id)) for t in _TABLES}
_UPDATE = {t.name: prepared(sa.update(t).where(t.c.id == _ROW)) for t in _TABLES}
_DELETE = {t.name: prepared(sa.delete(t).where(t.c.id == _ROW)) for t in _TABLES}
# A status step: the update matches only while the row reads the step's old status.
_STEP = {
    t.name: prepared(
        sa.update(t)
        .where(t.c.id == _ROW, t.c.status == sa.bindparam("old_status"))
        .returning(t.c.id)
    )
    for t in (pools, volumes, snapshots, backups)
}
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


_decode_config = msgspec.json.Decoder(dict[str, str])
_decode_names = msgspec.json.Decoder(list[str])
_encode_config = msgspec.json.Encoder()


def _config_from(doc: str) -> dict[str, str]:
    """A config from its column: a JSON object, as text."""
    return _decode_config.decode(doc)


def _config_text(config: Mapping[str, str]) -> str:
    return _encode_config.encode(dict(config)).decode()


def _timestamp(value: datetime.datetime | str | None) -> datetime.datetime:
    """A stored time: SQLite's text (read raw in lists, parsed here far faster than by
    SQLAlchemy's converter), PostgreSQL's datetime; UTC either way."""
    if isinstance(value, str):
        # SQLite's text is naive UTC; naming the zone in it costs a fifth of replace().
        return datetime.datetime.fromisoformat(value + "+00:00")
    return _aware(value) or now()


# Lists read a volume's columns in the table's order, the time as the driver gives it.
_VOLUME_LIST_COLUMNS = [
    sa.type_coerce(c, sa.String) if c.name == "created_at" else c for c in volumes.c
]


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
    status: Status
    created_at: datetime.datetime
    config: Mapping[str, str] = msgspec.field(default_factory=dict)
    # The gateway password, apart from the config that callers may be shown.
    password: Secret | None = None
    # A pool ``pending``: the members it was defined on (LXD's ``--target`` step).
    pending_on: tuple[str, ...] = ()


class Volume(msgspec.Struct, frozen=True):
    id: int
    pool_id: int
    project: str
    name: str
    type: str
    content_type: str
    description: str
    status: Status
    array_id: str | None
    created_at: datetime.datetime
    config: Mapping[str, str] = msgspec.field(default_factory=dict)
    fs_array_id: str | None = None  # a virtual machine's filesystem twin


class Snapshot(msgspec.Struct, frozen=True):
    id: int
    volume_id: int
    name: str
    description: str
    status: Status
    array_id: str | None
    created_at: datetime.datetime
    expires_at: datetime.datetime | None
    config: Mapping[str, str] = msgspec.field(default_factory=dict)
    fs_array_id: str | None = None  # a virtual machine's filesystem twin


# --- rows ------------------------------------------------------------------------------


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


async def update_row(
    conn: Conn,
    table: sa.Table,
    row_id: int,
    values: dict[str, Any],
    step: Step | None = None,
) -> None:
    """Set ``values`` (column: value) on one row; a name clash raises NameTaken.

    Its status changes only by ``step``, and only if the row still reads the step's old
    status (see :mod:`lxflex.state.status`); otherwise StatusChanged is raised and the
    row is left as it was."""
    if "status" in values:
        raise TypeError("a row's status changes by a status Step, not by value")
    if step is None:
        await _guarded(conn, _UPDATE[table.name], {**values, "row_id": row_id})
        return
    params = {**values, "status": step.new.value, "old_status": step.old.value, "row_id": row_id}
    if not (await _guarded(conn, _STEP[table.name], params)).all():
        raise StatusChanged(f"{table.name} row {row_id}: {step.name}, but it is not {step.old}")


async def _delete(conn: Conn, table: sa.Table, row_id: int) -> None:
    await conn.execute(_DELETE[table.name], {"row_id": row_id})


# --- servers -------------------------------------------------------------------------


async def ensure_server(conn: Conn, server_uuid: str, name: str) -> int:
    row = (await conn.execute(sa.select(servers.c.id).where(servers.c.uuid == server_uuid))).first()
    if row is not None:
        return int(row[0])
    return await _insert(conn, servers, {"uuid": server_uuid, "name": name, "created_at": now()})


# --- pools ---------------------------------------------------------------------------


def _pool(row: Any) -> Pool:
    return Pool(
        row.id,
        row.name,
        row.driver,
        row.description,
        Status(row.status),
        _aware(row.created_at) or now(),
        # Read-only: the service may cache pool records.
        MappingProxyType(_config_from(row.config)),
        None if row.password is None else Secret(row.password),
        tuple(_decode_names.decode(row.pending_on)) if row.pending_on else (),
    )


async def create_pool(
    conn: Conn,
    name: str,
    driver: str,
    config: Mapping[str, str],
    *,
    password: Secret | None = None,
    description: str = "",
    pending_on: Sequence[str] | None = None,
) -> Pool:
    """A pool, created; or, with ``pending_on``, pending on those members (no config)."""
    await _insert(
        conn,
        pools,
        {
            "name": name,
            "driver": driver,
            "description": description,
            "status": (Status.CREATED if pending_on is None else Status.PENDING).value,
            "created_at": now(),
            "config": _config_text(config),
            "password": None if password is None else password.reveal(),
            "pending_on": None
            if pending_on is None
            else _encode_config.encode(list(pending_on)).decode(),
        },
    )
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
    return _pool(row)


async def list_pools(conn: Conn) -> list[Pool]:
    return [_pool(r) for r in await conn.execute(sa.select(pools).order_by(pools.c.name))]


async def update_pool(
    conn: Conn,
    pool_id: int,
    *,
    config: Mapping[str, str] | None = None,
    description: str | None = None,
    password: Secret | None = None,
) -> None:
    """Set what is given of one pool row (a password not given is kept)."""
    values: dict[str, Any] = {} if description is None else {"description": description}
    if password is not None:
        values["password"] = password.reveal()
    if config is not None:
        values["config"] = _config_text(config)
    if values:
        await update_row(conn, pools, pool_id, values)


async def set_pending_on(conn: Conn, pool_id: int, members: Sequence[str]) -> None:
    """The members a pending pool is defined on."""
    text = _encode_config.encode(list(members)).decode()
    await update_row(conn, pools, pool_id, {"pending_on": text})


async def finish_pool(
    conn: Conn,
    pool_id: int,
    config: Mapping[str, str],
    *,
    password: Secret,
    description: str,
) -> None:
    """Create a pending pool (StatusChanged if it is pending no more)."""
    values = {
        "config": _config_text(config),
        "password": password.reveal(),
        "description": description,
        "pending_on": None,
    }
    await update_row(conn, pools, pool_id, values, step=POOL_CREATED)


async def delete_pool(conn: Conn, pool_id: int) -> None:
    await _delete(conn, pools, pool_id)


# --- volumes -------------------------------------------------------------------------


_STATUS = {s.value: s for s in Status}  # a dict look-up: a tenth of Status(text)


def _volume(row: Any) -> Volume:
    # Positional: attribute access by name on 10,000 rows costs more than the query itself.
    vid, pool, project, name, vtype, content, about, status, array, created, fs, config = row
    when, settings = _timestamp(created), _config_from(config)
    return Volume(
        vid, pool, project, name, vtype, content, about, _STATUS[status], array, when, settings, fs
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
    status: Status = Status.CREATING,
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
            "status": status.value,
            "array_id": None,
            "created_at": created,
            "config": _config_text(config),
        },
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
    return _volume(row)


async def get_volume_by_id(conn: Conn, volume_id: int) -> tuple[str, Volume] | None:
    """The volume with this ID, with its pool's name."""
    query = sa.select(pools.c.name, *volumes.c).join(pools, pools.c.id == volumes.c.pool_id)
    row = (await conn.execute(query.where(volumes.c.id == volume_id))).first()
    return None if row is None else (row[0], _volume(tuple(row)[1:]))


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
    query = sa.select(*_VOLUME_LIST_COLUMNS).where(*where).order_by(volumes.c.type, volumes.c.name)
    return [_volume(row) for row in (await conn.execute(query)).all()]


async def volume_names(conn: Conn, pool_id: int) -> list[tuple[str, str]]:
    """(project, name) of a pool's created custom volumes: what ``used_by`` lists."""
    query = (
        sa.select(volumes.c.project, volumes.c.name)
        .where(
            volumes.c.pool_id == pool_id,
            volumes.c.type == "custom",
            volumes.c.status == Status.CREATED.value,
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
    step: Step | None = None,
    config: Mapping[str, str] | None = None,
    **values: Any,
) -> None:
    """Set columns of one volume row; its status changes only by ``step``."""
    if config is not None:
        values["config"] = _config_text(config)
    if values or step is not None:
        await update_row(conn, volumes, vol_id, values, step)


async def delete_volume(conn: Conn, vol_id: int) -> None:
    await _delete(conn, volumes, vol_id)


# --- snapshots -----------------------------------------------------------------------


def _snapshot(row: Any) -> Snapshot:
    return Snapshot(
        row.id,
        row.volume_id,
        row.name,
        row.description,
        _STATUS[row.status],
        row.array_id,
        _aware(row.created_at) or now(),
        _aware(row.expires_at),
        _config_from(row.config),
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
    status: Status = Status.CREATING,
) -> Snapshot:
    snap_id = await _insert(
        conn,
        snapshots,
        {
            "volume_id": volume_id,
            "name": name,
            "description": description,
            "status": status.value,
            "array_id": None,
            "created_at": now(),
            "expires_at": expires_at,
            "config": _config_text(config),
        },
    )
    return await snapshot_by_id(conn, snap_id)


async def snapshot_by_id(conn: Conn, snap_id: int) -> Snapshot:
    row = (await conn.execute(_SNAPSHOT_BY_ID, {"row_id": snap_id})).one()
    return _snapshot(row)


async def list_snapshots(conn: Conn, volume_id: int, *, whole: bool = False) -> list[Snapshot]:
    """A volume's snapshots, oldest first; ``whole``: only those ``created``."""
    query = (
        sa.select(snapshots)
        .where(snapshots.c.volume_id == volume_id)
        .order_by(snapshots.c.created_at, snapshots.c.id)
    )
    found = [_snapshot(r) for r in await conn.execute(query)]
    return [s for s in found if s.status is Status.CREATED] if whole else found


async def list_pool_snapshots(conn: Conn, pool_id: int) -> dict[int, list[Snapshot]]:
    """Every snapshot of a pool's volumes, by volume ID, oldest first: one query."""
    query = (
        sa.select(snapshots)
        .join(volumes, volumes.c.id == snapshots.c.volume_id)
        .where(volumes.c.pool_id == pool_id)
        .order_by(snapshots.c.created_at, snapshots.c.id)
    )
    found: dict[int, list[Snapshot]] = {}
    for row in (await conn.execute(query)).all():
        found.setdefault(row.volume_id, []).append(_snapshot(row))
    return found


async def get_snapshot(conn: Conn, volume_id: int, name: str) -> Snapshot | None:
    params = {"volume_id": volume_id, "name": name}
    row = (await conn.execute(_SNAPSHOT_BY_NAME, params)).first()
    if row is None:
        return None
    return _snapshot(row)


async def update_snapshot(
    conn: Conn,
    snap_id: int,
    *,
    step: Step | None = None,
    config: Mapping[str, str] | None = None,
    **values: Any,
) -> None:
    """Set columns of one snapshot row; its status changes only by ``step``."""
    if config is not None:
        values["config"] = _config_text(config)
    await update_row(conn, snapshots, snap_id, values, step)


async def delete_snapshot(conn: Conn, snap_id: int) -> None:
    await _delete(conn, snapshots, snap_id)
