"""Repairing what a crash cut short: rows left ``creating``, ``deleting`` or ``restoring``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager

from ..driver.instances import InstanceIds
from ..driver.naming import VolumeType
from ..state import Database
from ..state import store as st
from .pools import PoolService
from .rules import lock_name
from .runtime import PoolRuntime
from .specs import spec_of

__all__ = ["array_names", "recover_pool", "recover_volume"]

log = logging.getLogger("lxflex.service")

Lock = Callable[[str, str, str], AbstractAsyncContextManager[None]]


async def recover_pool(db: Database, pools: PoolService, lock: Lock, pool_name: str) -> int:
    """Undo creates and finish deletes that a crash cut short (rows left ``creating`` or
    ``deleting``; a VM left ``restoring`` is put back), each under its volume's ``lock``;
    array objects they may have made are found by their names. Return the rows repaired."""
    pool = await pools.record(pool_name)
    async with db.read() as conn:
        vols = await st.list_volumes(conn, pool.id)
        snaps = await st.list_pool_snapshots(conn, pool.id)
    pending = [
        v
        for v in vols
        if v.status != "created" or any(s.status != "created" for s in snaps.get(v.id, []))
    ]
    if not pending:
        return 0
    runtime = await pools.runtime(pool)
    repaired = 0
    for vol in pending:
        async with lock(pool_name, vol.project, lock_name(vol.type, vol.name)):
            repaired += await recover_volume(db, runtime, vol, snaps.get(vol.id, []))
    if repaired:
        log.warning(
            "pool %s: repaired %d record(s) left by an interrupted operation", pool_name, repaired
        )
    return repaired


def array_names(
    runtime: PoolRuntime,
    volume_type: str,
    content: str,
    config: Mapping[str, str],
    *,
    snapshot: bool = True,
) -> list[str]:
    """The array names of a volume's (or, with ``snapshot``, a snapshot's) array
    volumes: one, or a virtual machine's root disk and filesystem twin."""
    spec = spec_of(content, config, volume_type)
    specs = [spec]
    if spec.volume_type is VolumeType.VIRTUAL_MACHINE:
        specs.append(runtime.instances.twin(spec))
    return [runtime.volumes.array_name(s, snapshot=snapshot) for s in specs]


async def _array_ids(
    runtime: PoolRuntime, vol: st.Volume, record: st.Volume | st.Snapshot, *, snapshot: bool
) -> list[str]:
    """The array volumes of a record: the IDs it keeps, or those its name finds (an
    operation cut short before it recorded them)."""
    known = [i for i in (record.array_id, record.fs_array_id) if i]
    if known:
        return known
    names = array_names(runtime, vol.type, vol.content_type, record.config, snapshot=snapshot)
    found = [await runtime.volumes.lookup(name) for name in names]
    return [i for i in found if i]


async def recover_volume(
    db: Database, runtime: PoolRuntime, vol: st.Volume, snaps: list[st.Snapshot]
) -> int:
    """Finish or undo what a crash interrupted on one volume; return the rows repaired."""
    repaired = 0
    for snap in snaps:
        if snap.status == "created" and vol.status != "deleting":
            continue
        for array_id in await _array_ids(runtime, vol, snap, snapshot=True):
            await runtime.volumes.delete(array_id)
        async with db.write() as conn:
            await st.delete_snapshot(conn, snap.id)
        repaired += 1
    if vol.status in ("creating", "deleting"):
        for array_id in await _array_ids(runtime, vol, vol, snapshot=False):
            await runtime.volumes.delete(array_id)
        async with db.write() as conn:
            await st.delete_volume(conn, vol.id)
        repaired += 1
    elif vol.status == "restoring" and vol.array_id:
        spec = spec_of(vol.content_type, vol.config, vol.type)
        await runtime.instances.recover_restore(spec, InstanceIds(vol.array_id, vol.fs_array_id))
        async with db.write() as conn:
            await st.update_volume(conn, vol.id, status="created")
        repaired += 1
    return repaired
