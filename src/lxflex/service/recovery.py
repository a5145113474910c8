"""Repairing what a crash cut short: the journal, rows left ``creating``, ``deleting`` or
``restoring``, mappings nothing uses, and the scratch directory."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from ..driver import Content, InstanceIds, PoolDriver, format_size, parse_size
from ..host.fs import Filesystems, mounted_under
from ..state import RESTORE_DONE, Database, Status
from ..state import attachments as at
from ..state import store as st
from .kinds import kind_of
from .pools import PoolService
from .specs import array_names, spec_of

__all__ = [
    "clear_scratch_entry",
    "finish_grow",
    "recover_pool",
    "recover_volume",
    "repair_rows",
    "sweep_scratch",
]

log = logging.getLogger("lxflex.service")

Lock = Callable[[str, str, str], AbstractAsyncContextManager[None]]
# A volume's lock if nobody holds it now: the block gets whether it holds it.
TryLock = Callable[[str, str, str], AbstractAsyncContextManager[bool]]


async def recover_pool(
    db: Database, pools: PoolService, try_lock: TryLock, pool_name: str, *, shared: bool = False
) -> int:
    """At start, before serving: finish the pool's journal (array objects made without a
    row, leftovers of failed cleanups), then the rows whose work was cut short
    (:func:`repair_rows`), then unmap this host's mappings of the pool's volumes that
    nothing uses (those attached here stay, for :class:`AttachmentService` to take up).
    Return the repairs made.

    A ``shared`` state (a cluster) may hold the work of other members under way now:
    only this server's journal entries are finished (a peer's are finished when it is
    removed), and rows whose locks a peer holds are left to it."""
    pool = await pools.record(pool_name)
    runtime = await pools.runtime(pool)
    journal = await pools.journal.repair(pool.id, runtime.volumes, mine_only=shared)
    repaired = len(journal.done) + await repair_rows(db, pools, try_lock, pool_name)
    async with db.read() as conn:
        vols = await st.list_volumes(conn, pool.id)
        snaps = await st.list_pool_snapshots(conn, pool.id)
        attached = await at.list_attachments(conn, pool_id=pool.id, server_uuid=pools.runtimes.uuid)
    records: list[st.Volume | st.Snapshot] = [*vols]
    records.extend(s for group in snaps.values() for s in group)
    ours = {i for r in records for i in (r.array_id, r.fs_array_id) if i}
    # A volume attached here stays mapped: AttachmentService.restore takes it up again.
    in_use = {v.array_id for v in vols if v.id in {a.volume_id for a in attached}}
    attacher = runtime.volumes.attacher
    unmapped = await attacher.sweep(ours - in_use)
    await attacher.disconnect_if_unused()
    repaired += len(unmapped)
    if repaired:
        log.warning(
            "pool %s: repaired %d thing(s) left by interrupted operations (%d unmapped)",
            pool_name,
            repaired,
            len(unmapped),
        )
    return repaired


async def repair_rows(db: Database, pools: PoolService, try_lock: TryLock, pool_name: str) -> int:
    """Undo creates and finish deletes that were cut short (rows left ``creating`` or
    ``deleting``; a VM left ``restoring`` is put back), finding what they made by name,
    and finish grows cut short after the array grew (filesystem and row follow the
    array). Every operation holds its volume's lock while it runs, so a row under way
    whose lock is free is work that was cut short; one whose lock is held (a member's
    work now) is left alone. Return the repairs made."""
    pool = await pools.record(pool_name)
    runtime = await pools.runtime(pool)
    async with db.read() as conn:
        vols = await st.list_volumes(conn, pool.id)
        snaps = await st.list_pool_snapshots(conn, pool.id)
    listed = {v.id: v.size_bytes for v in await runtime.volumes.listed()}
    repaired, busy = 0, []
    for vol in vols:
        pending = vol.status != Status.CREATED or any(
            s.status != Status.CREATED for s in snaps.get(vol.id, [])
        )
        if not pending and not _grown(vol, listed):
            continue
        async with try_lock(pool_name, vol.project, kind_of(vol.type).lock_key(vol.name)) as free:
            if not free:
                busy.append(vol.name)
                continue
            async with db.read() as conn:  # as it is now that nobody works on it
                fresh = await st.get_volume(conn, vol.pool_id, vol.project, vol.type, vol.name)
                fresh_snaps = await st.list_snapshots(conn, fresh.id) if fresh else []
            if fresh is None or fresh.id != vol.id:
                continue
            repaired += await recover_volume(db, runtime, fresh, fresh_snaps)
            if fresh.status == Status.CREATED and _grown(fresh, listed):
                try:
                    await finish_grow(db, runtime, fresh, listed[fresh.array_id or ""])
                    repaired += 1
                except Exception as exc:
                    log.warning(
                        "pool %s: cannot finish the grow of %s: %s", pool_name, vol.name, exc
                    )
    if busy:
        log.info(
            "pool %s: left %d volume(s) with work under way now: %s",
            pool_name,
            len(busy),
            ", ".join(sorted(busy)),
        )
    return repaired


def _grown(vol: st.Volume, sizes: dict[str, int]) -> bool:
    """Whether the array volume is larger than its row says: a grow cut short after the
    array grew (an ISO never grows)."""
    size = vol.config.get("size")
    if not vol.array_id or not size or vol.content_type == Content.ISO:
        return False
    return sizes.get(vol.array_id, 0) > parse_size(size)


async def finish_grow(db: Database, runtime: PoolDriver, vol: st.Volume, size: int) -> None:
    """Finish a grow cut short after the array grew: grow the filesystem (or move a
    virtual machine disk's GPT backup header) to the array's ``size``, and record it."""
    spec = spec_of(vol.content_type, vol.config, vol.type)
    grown = await runtime.volumes.resize(spec, vol.array_id or "", size)
    async with db.write() as conn:
        await st.update_volume(conn, vol.id, config={**vol.config, "size": format_size(grown)})


async def sweep_scratch(fs: Filesystems, scratch: Path) -> int:
    """At start, before serving: clear what is in the scratch directory (everything
    there belongs to work a crash cut short). Return the entries removed."""
    if not scratch.is_dir():
        return 0
    removed = 0
    for entry in scratch.iterdir():
        try:
            await clear_scratch_entry(fs, entry)
        except Exception as exc:
            log.warning("cannot clear %s left by an interrupted operation: %s", entry, exc)
            continue
        removed += 1
    if removed:
        log.warning("removed %d scratch entr(ies) left by interrupted operations", removed)
    return removed


async def clear_scratch_entry(fs: Filesystems, entry: Path) -> None:
    """Unmount what is mounted at or under a scratch entry (deepest first), then remove
    it; an entry that stays mounted raises and is never removed through its mount."""
    for target in mounted_under(entry):  # deepest first
        await fs.unmount(target)
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink(missing_ok=True)


async def _array_ids(
    runtime: PoolDriver, vol: st.Volume, record: st.Volume | st.Snapshot, *, snapshot: bool
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
    db: Database, runtime: PoolDriver, vol: st.Volume, snaps: list[st.Snapshot]
) -> int:
    """Finish or undo what a crash interrupted on one volume; return the rows repaired."""
    repaired = 0
    for snap in snaps:
        if snap.status == Status.CREATED and vol.status != Status.DELETING:
            continue
        for array_id in await _array_ids(runtime, vol, snap, snapshot=True):
            await runtime.volumes.delete(array_id)
        async with db.write() as conn:
            await st.delete_snapshot(conn, snap.id)
        repaired += 1
    if vol.status in (Status.CREATING, Status.DELETING):
        for array_id in await _array_ids(runtime, vol, vol, snapshot=False):
            await runtime.volumes.delete(array_id)
        async with db.write() as conn:
            await st.delete_volume(conn, vol.id)
        repaired += 1
    elif vol.status == Status.RESTORING and vol.array_id:
        spec = spec_of(vol.content_type, vol.config, vol.type)
        await runtime.instances.recover_restore(spec, InstanceIds(vol.array_id, vol.fs_array_id))
        async with db.write() as conn:
            await st.update_volume(conn, vol.id, step=RESTORE_DONE)
        repaired += 1
    return repaired
