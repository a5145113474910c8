"""Custom volumes and their snapshots as use cases.

Each operation follows one pattern: take the volume's lock; in a short transaction,
check and reserve (a row in status ``creating`` or ``deleting``); do the array and host
work outside any transaction; in a second short transaction, record the result. When
the work fails, what it finished is undone by the driver and the reserved row is removed,
so the state, the array and the host agree again. Names on the array derive from each
volume's ``volatile.uuid``, so renames touch only the state.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..driver import (
    Conflict,
    Content,
    CopyPlan,
    DeleteInterrupted,
    DriverError,
    GuardKept,
    InstanceIds,
    InvalidRequest,
    NotFound,
    PoolDriver,
    Progress,
    RefreshPlan,
    RestoreInterrupted,
    VolumeType,
    copy_volume_config,
    format_size,
    parse_size,
    round_up,
    updated_volume_config,
)
from ..host.fs import is_mounted, used_bytes
from ..locks import KeyedLocks
from ..revert import Reverter
from ..state import (
    CREATE_DONE,
    DELETE_BEGIN,
    DELETE_REFUSED,
    RESTORE_BEGIN,
    RESTORE_DONE,
    Conn,
    Database,
    NameTaken,
    Status,
)
from ..state import attachments as at
from ..state import store as st
from .kinds import CUSTOM as CUSTOM_KIND
from .kinds import Kind, kind_of
from .pools import PoolService
from .recovery import recover_pool, repair_rows
from .rules import add_expiry, check_name, fill_config, next_name
from .specs import snapshot_names, spec_of
from .views import VolumeView, array_of, ids_of, make_view

__all__ = ["NewVolume", "VolumeService", "VolumeView"]

log = logging.getLogger("lxflex.service")

CUSTOM = VolumeType.CUSTOM.value
_CUSTOM = {"type": CUSTOM}  # the context of LXD's created events


@dataclass(frozen=True)
class NewVolume:
    """A volume about to be made: what its row is created with."""

    pool: st.Pool
    project: str
    name: str
    content_type: str
    config: dict[str, str]
    description: str = ""
    volume_type: str = CUSTOM


def _shared_key(pool: str, project: str, key: str) -> str:
    """A volume's lock among the members of a cluster."""
    return f"volume\0{pool}\0{project}\0{key}"


class VolumeService:
    def __init__(self, db: Database, pools: PoolService) -> None:
        self.db = db
        self.pools = pools
        self._locks: KeyedLocks[tuple[str, str, str]] = KeyedLocks()
        # Whether the instances of these uses are all stopped (set by the attachments).
        self.instances_stopped: Callable[[list[at.Attachment]], Awaitable[bool]] | None = None
        # Shift a restored volume's files to the ID map of the instance it is given to.
        self.reshift: Callable[[str, st.Volume], Awaitable[None]] | None = None
        # Move this host's uses of a volume to its new name (its mount, the instances'
        # devices), each step undone by the Reverter if the rename fails.
        self.rename_uses: Callable[[str, st.Volume, str, Reverter], Awaitable[None]] | None = None
        # Move this host's uses of a volume to its copy in another pool (a move).
        self.move_uses: Callable[[str, st.Volume, str, str], Awaitable[None]] | None = None

    def _locked(
        self, pool: str, project: str, name: str, kind: Kind = CUSTOM_KIND
    ) -> AbstractAsyncContextManager[None]:
        return self.lock(pool, project, kind.lock_key(name))

    @asynccontextmanager
    async def lock(self, pool: str, project: str, key: str) -> AsyncIterator[None]:
        """Serialize work on one volume, by its lock key (:meth:`Kind.lock_key`; a custom
        volume's is its name): backups, checks and recovery take the volume's lock too.
        Within this server first, then against the other members of a cluster (the
        state's shared lock; nothing more on a state only this server uses)."""
        async with (
            self._locks.hold((pool, project, key)),
            self.db.shared_lock(_shared_key(pool, project, key)),
        ):
            yield

    @asynccontextmanager
    async def try_lock(self, pool: str, project: str, key: str) -> AsyncIterator[bool]:
        """:meth:`lock`, if no work on the volume runs or waits now, on this server or on
        another member: the block gets whether it holds the lock (and leaves the volume
        alone when not)."""
        if self._locks.held((pool, project, key)):
            yield False
            return
        async with (
            self._locks.hold((pool, project, key)),
            self.db.try_shared_lock(_shared_key(pool, project, key)) as free,
        ):
            yield free

    async def busy(self, pool: str, project: str, key: str) -> bool:
        """Whether work on the volume runs or waits now, here or on another member
        (``key`` as :meth:`lock`'s)."""
        async with self.try_lock(pool, project, key) as free:
            return not free

    def idle(self) -> bool:
        """Whether no work on any volume runs or waits now."""
        return len(self._locks) == 0

    def mount_path(self, pool: str, project: str, name: str, kind: Kind = CUSTOM_KIND) -> Path:
        """Where the volume mounts on this host (a virtual machine: its filesystem twin)."""
        return self.pools.runtimes.host.mounts / pool / kind.directory / f"{project}_{name}"

    async def load(
        self,
        pool_name: str,
        project: str,
        name: str,
        kind: Kind = CUSTOM_KIND,
        *,
        deleting: bool = False,
    ) -> tuple[st.Pool, st.Volume]:
        """The pool and the volume's row; a volume not yet made is not found. A volume
        whose delete is unfinished is given only to reads and to a delete
        (``deleting``): other work on it is refused."""
        pool = await self.pools.record(pool_name)
        async with self.db.read() as conn:
            vol = await st.get_volume(conn, pool.id, project, kind.name, name)
        if vol is None or not vol.status.visible:
            raise NotFound(f"{kind.noun} {name!r} not found in pool {pool_name!r}")
        if vol.status is Status.DELETING and not deleting:
            raise Conflict(
                f"{kind.noun} {name!r} is being deleted: delete it again to finish, or it is "
                "finished when lxflexd next starts"
            )
        return pool, vol

    async def record(
        self, pool_name: str, name: str, *, project: str = "default", kind: Kind = CUSTOM_KIND
    ) -> st.Volume:
        """The stored record of a volume (with its array IDs), for tools and diagnostics."""
        return (await self.load(pool_name, project, name, kind, deleting=True))[1]

    async def _elsewhere(self, vol: st.Volume) -> bool:
        """Whether another host has the volume attached."""
        async with self.db.read() as conn:
            rows = await at.list_attachments(conn, volume_id=vol.id)
        return any(r.server_uuid != self.pools.runtimes.uuid for r in rows)

    async def _one_host_left(self, vol: st.Volume) -> None:
        """A shared volume may stop being shared only when one host uses it at most."""
        async with self.db.read() as conn:
            hosts = {r.server_uuid for r in await at.list_attachments(conn, volume_id=vol.id)}
        if len(hosts) > 1:
            raise Conflict(
                f"storage volume {vol.name!r} is attached on {len(hosts)} hosts: detach it "
                "from all but one before it stops being shared"
            )

    async def refuse_in_use(self, vol: st.Volume, doing: str, *, running: str = "") -> bool:
        """Conflict when the volume is attached anywhere (see :mod:`.attachments`):
        ``doing`` it would pull it from under its users. With ``running`` (LXD's refusal
        then), uses by instances of this host that are stopped do not count (as LXD
        restores and renames a custom volume of stopped instances; they are told by
        :attr:`instances_stopped`, when it is set). Whether it is in use so."""
        async with self.db.read() as conn:
            rows = await at.list_attachments(conn, volume_id=vol.id)
        if rows and running and self.instances_stopped is not None:
            if all(r.instance for r in rows) and await self.instances_stopped(rows):
                return True
            if all(r.instance for r in rows):
                raise Conflict(running)
        if rows:
            first = rows[0]
            user = f"instance {first.instance!r}" if first.instance else f"the host at {first.path}"
            more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
            raise Conflict(
                f"storage volume {vol.name!r} is attached for {user}{more}: detach it "
                f"before you {doing}"
            )
        return False

    async def _view(self, pool: st.Pool, vol: st.Volume) -> VolumeView:
        async with self.db.read() as conn:
            snaps = await st.list_snapshots(conn, vol.id)
            uses = await at.list_attachments(conn, volume_id=vol.id)
        return make_view(pool, vol, snaps, uses)

    # --- create / read ----------------------------------------------------------------

    async def create(
        self,
        pool_name: str,
        name: str,
        *,
        content_type: str = "filesystem",
        config: Mapping[str, str] | None = None,
        description: str = "",
        project: str = "default",
    ) -> VolumeView:
        if content_type not in (Content.FILESYSTEM, Content.BLOCK):
            raise InvalidRequest(
                f"content type {content_type!r}: filesystem or block (iso: import)"
            )
        check_name(name)
        pool = await self.pools.record(pool_name)
        runtime = await self.pools.runtime(pool)
        filled = fill_config(pool, content_type, config or {}, runtime.volumes.granularity)
        spec = spec_of(content_type, filled)
        new = NewVolume(pool, project, name, content_type, filled, description)
        row = await self.provision(new, lambda: runtime.volumes.create(spec))
        return make_view(pool, row, [])

    async def provision(
        self,
        new: NewVolume,
        build: Callable[[], Awaitable[str | InstanceIds]],
        *,
        on_created: Callable[[Conn, int], Awaitable[None]] | None = None,
    ) -> st.Volume:
        """Record a new volume, run ``build`` (which makes it on the array and returns
        its IDs), and mark it created, with ``on_created(conn, row_id)`` in the same
        transaction (to record what else the build made); a failure at any step leaves
        neither row nor array volume. The name is claimed first, so a clash costs no
        array work."""
        pool = new.pool
        async with self._locked(pool.name, new.project, new.name, kind_of(new.volume_type)):
            try:
                async with self.db.write() as conn:
                    row = await st.create_volume(
                        conn,
                        pool.id,
                        new.project,
                        new.name,
                        new.volume_type,
                        new.content_type,
                        new.config,
                        description=new.description,
                    )
            except NameTaken:
                raise Conflict(
                    f"storage volume {new.name!r} already exists in pool {pool.name!r}"
                ) from None
            async with Reverter() as revert:
                revert.add(lambda: self._forget(row.id), f"the record of volume {new.name!r}")
                built = await build()
                ids = built if isinstance(built, InstanceIds) else InstanceIds(built)
                runtime = await self.pools.runtime(pool)
                for array_id in ids.all():
                    revert.add(
                        functools.partial(runtime.volumes.remove_quietly, array_id),
                        f"array volume {array_id}",
                    )
                async with self.db.write() as conn:
                    await st.update_volume(
                        conn, row.id, step=CREATE_DONE, array_id=ids.root, fs_array_id=ids.fs
                    )
                    if on_created is not None:
                        await on_created(conn, row.id)
                revert.success()
        if new.volume_type == CUSTOM:
            self.pools.events.volume("created", pool.name, new.name, new.project, context=_CUSTOM)
        return row

    async def provision_copy(
        self,
        new: NewVolume,
        snapshots: list[st.Snapshot],
        copy: Callable[[list[uuid.UUID]], Awaitable[tuple[InstanceIds, list[InstanceIds]]]],
    ) -> st.Volume:
        """:meth:`provision` for a copy: ``copy(uuids)`` makes the new volume and the
        copies of ``snapshots`` (named after ``uuids``) and returns their IDs; the
        snapshots' rows are recorded with the volume, and a failure leaves none of it.
        The snapshots' array names are journaled before the copy starts, so that a crash
        or a refused cleanup cannot orphan them."""
        uuids = [uuid.uuid4() for _ in snapshots]
        made: list[InstanceIds] = []
        runtime = await self.pools.runtime(new.pool)
        names = snapshot_names(runtime, new.volume_type, new.content_type, uuids)
        journal = self.pools.journal
        intents = await journal.intend(new.pool.id, names, f"a snapshot of copy {new.name!r}")

        async def build() -> InstanceIds:
            ids, snapshot_ids = await copy(uuids)
            made.extend(snapshot_ids)
            return ids

        async def record(conn: Conn, row_id: int) -> None:
            for snap, snap_uuid, ids in zip(snapshots, uuids, made, strict=True):
                row = await st.create_snapshot(
                    conn,
                    row_id,
                    snap.name,
                    {**snap.config, "volatile.uuid": str(snap_uuid)},
                    description=snap.description,
                    status=Status.CREATED,
                )
                await st.update_snapshot(conn, row.id, array_id=ids.root, fs_array_id=ids.fs)
            await journal.settle(conn, intents)

        try:
            return await self.provision(new, build, on_created=record)
        except BaseException:
            # What the copy made of the snapshots and could not remove, found by name.
            await journal.repair(new.pool.id, runtime.volumes, intents)
            raise

    async def _forget(
        self, vol_id: int, delete: Callable[[Conn, int], Awaitable[None]] = st.delete_volume
    ) -> None:
        """Drop a reserved row (a volume's, or with ``delete`` a snapshot's); if that
        fails, it stays ``creating`` and start-up recovery removes it (with any array
        volume its name finds)."""
        try:
            async with self.db.write() as conn:
                await delete(conn, vol_id)
        except Exception:
            log.exception("cleanup: cannot remove the reserved row %d", vol_id)

    async def get(
        self, pool_name: str, name: str, *, project: str = "default", kind: Kind = CUSTOM_KIND
    ) -> VolumeView:
        pool, vol = await self.load(pool_name, project, name, kind, deleting=True)
        return await self._view(pool, vol)

    async def all(self, pool_name: str, *, project: str | None = None) -> list[VolumeView]:
        """Every custom volume of the pool, with its snapshots and attachments: three
        queries in all."""
        pool = await self.pools.record(pool_name)
        async with self.db.read() as conn:
            vols = await st.list_volumes(conn, pool.id, project=project, volume_type=CUSTOM)
            snaps = await st.list_pool_snapshots(conn, pool.id)
            uses: dict[int, list[at.Attachment]] = {}
            for use in await at.list_attachments(conn, pool_id=pool.id):
                uses.setdefault(use.volume_id, []).append(use)
        return [
            make_view(pool, v, snaps.get(v.id, []), uses.get(v.id))
            for v in vols
            if v.status.visible
        ]

    async def names(self, pool_name: str) -> list[tuple[str, str]]:
        """(project, name) of the pool's custom volumes, without loading them."""
        pool = await self.pools.record(pool_name)
        async with self.db.read() as conn:
            return await st.volume_names(conn, pool.id)

    # --- update, rename, delete -------------------------------------------------------

    async def update(
        self,
        pool_name: str,
        name: str,
        config: Mapping[str, str],
        *,
        description: str | None = None,
        project: str = "default",
    ) -> VolumeView:
        """Apply config changes; a new ``size`` grows the volume (and its filesystem)."""
        async with self._locked(pool_name, project, name):
            pool, vol = await self.load(pool_name, project, name)
            new = updated_volume_config(vol.config, config, vol.content_type, pool.config)
            if vol.config.get("security.shared") == "true" and new.get("security.shared") != "true":
                await self._one_host_left(vol)
            if parse_size(new["size"]) != parse_size(vol.config["size"]):
                if vol.content_type == Content.ISO:
                    raise InvalidRequest("an ISO volume is read-only: its size cannot change")
                runtime = await self.pools.runtime(pool)
                mounted = self.mount_path(pool_name, project, name)
                grown = await runtime.volumes.resize(
                    spec_of(vol.content_type, vol.config),
                    array_of(vol),
                    parse_size(new["size"]),
                    mounted,
                )
                new["size"] = format_size(grown)
            async with self.db.write() as conn:
                values: dict[str, Any] = {} if description is None else {"description": description}
                await st.update_volume(conn, vol.id, config=new, **values)
        self.pools.events.volume("updated", pool_name, name, project)
        return await self.get(pool_name, name, project=project)

    def _event(
        self, kind: Kind, action: str, pool: str, name: str, project: str, **extra: Any
    ) -> None:
        """LXD's lifecycle event of a custom volume (instance volumes have instance
        events, which lxflex does not serve)."""
        if kind is CUSTOM_KIND:
            self.pools.events.volume(action, pool, name, project, **extra)

    async def rename(
        self,
        pool_name: str,
        name: str,
        new_name: str,
        *,
        project: str = "default",
        kind: Kind = CUSTOM_KIND,
    ) -> VolumeView:
        """Rename a volume of any kind (both of a pair): array names follow the UUID, so
        only the state changes. A volume in use by instances that are all stopped is
        renamed as LXD renames it, its uses following (its mount moved to the path of
        the new name, the instances' devices pointed there); one otherwise mounted is
        refused: its mount path has its name."""
        check_name(new_name)
        async with self._locked(pool_name, project, name, kind):
            _, vol = await self.load(pool_name, project, name, kind)
            stopped = await self.refuse_in_use(
                vol, "rename it", running="Volume is still in use by running instances"
            )
            if not stopped and is_mounted(self.mount_path(pool_name, project, name, kind)):
                raise Conflict(f"{kind.noun} {name!r} is mounted; unmount it before renaming")
            async with Reverter() as revert:
                if stopped and self.rename_uses is not None:
                    await self.rename_uses(pool_name, vol, new_name, revert)
                try:
                    async with self.db.write() as conn:
                        await st.update_volume(conn, vol.id, name=new_name)
                except NameTaken:
                    raise Conflict(f"{kind.noun} {new_name!r} already exists") from None
                revert.success()
        self._event(kind, "renamed", pool_name, new_name, project, context={"old_name": name})
        return await self.get(pool_name, new_name, project=project, kind=kind)

    async def delete(
        self, pool_name: str, name: str, *, project: str = "default", kind: Kind = CUSTOM_KIND
    ) -> None:
        """Delete a volume of any kind, its snapshots first, on the array and in the state.

        All or nothing where the array allows it (one removal of a volume with its
        snapshots; a virtual machine's disk first, then its filesystem twin). When the
        array refuses, the volume stays as it was, usable; only the snapshots the array
        did remove (a volume with clones goes one by one) lose their records, and the
        error says so. When it refuses a virtual machine's twin after removing its disk,
        or a crash comes midway, the row stays ``deleting``, which start-up recovery (and
        ``storage check --repair``) finishes."""
        async with self._locked(pool_name, project, name, kind):
            pool, vol = await self.load(pool_name, project, name, kind, deleting=True)
            await self.refuse_in_use(vol, "delete it")
            runtime = await self.pools.runtime(pool)
            path = self.mount_path(pool_name, project, name, kind)
            await runtime.volumes.unmount(vol.fs_array_id or array_of(vol), path)
            async with self.db.write() as conn:
                if vol.status is not Status.DELETING:  # else a delete cut short: finish it
                    await st.update_volume(conn, vol.id, step=DELETE_BEGIN)
                snaps = await st.list_snapshots(conn, vol.id)
            made = [InstanceIds(s.array_id, s.fs_array_id) for s in snaps if s.array_id]
            try:
                await runtime.instances.delete_with_snapshots(vol.array_id, vol.fs_array_id, made)
            except BaseException as exc:
                if isinstance(exc, DeleteInterrupted) or not await self._still_there(runtime, vol):
                    raise  # gone but for a part: the row stays "deleting", finished later
                lost = await self._keep_after_failed_delete(runtime, vol, snaps)
                if isinstance(exc, DriverError):
                    kept = f"{kind.noun} {name!r} is kept"
                    if lost:
                        kept += f" without {lost} of its {len(snaps)} snapshot(s), removed already"
                    raise type(exc)(f"{exc}; {kept}") from exc
                raise
            async with self.db.write() as conn:
                for snap in snaps:
                    await st.delete_snapshot(conn, snap.id)
                await st.delete_volume(conn, vol.id)
            with contextlib.suppress(OSError):
                path.rmdir()
        self._event(kind, "deleted", pool_name, name, project)

    @staticmethod
    async def _still_there(runtime: PoolDriver, vol: st.Volume) -> bool:
        """Whether the array still has a volume whose delete failed (when it cannot be
        asked, it is taken to)."""
        return vol.array_id is None or await runtime.volumes.exists(vol.array_id)

    async def _keep_after_failed_delete(
        self, runtime: PoolDriver, vol: st.Volume, snaps: list[st.Snapshot]
    ) -> int:
        """After the array refused a delete: the volume is ``created`` again, and the
        snapshots the array removed lose their rows (with their twins, of which a
        snapshot without its disk is no use). Return how many did."""
        gone = [s for s in snaps if s.array_id and not await runtime.volumes.exists(s.array_id)]
        await runtime.instances.drop(*(s.fs_array_id for s in gone))
        async with self.db.write() as conn:
            for snap in gone:
                await st.delete_snapshot(conn, snap.id)
            await st.update_volume(conn, vol.id, step=DELETE_REFUSED)
        return len(gone)

    async def usage(self, pool_name: str, name: str, *, project: str = "default") -> dict[str, int]:
        """``total`` bytes, and ``used`` bytes when the filesystem is mounted here."""
        _, vol = await self.load(pool_name, project, name)
        result = {"total": parse_size(vol.config.get("size", "0"))}
        used = used_bytes(self.mount_path(pool_name, project, name))
        if used is not None:
            result["used"] = used
        return result

    # --- mount ------------------------------------------------------------------------

    async def mount(self, pool_name: str, name: str, *, project: str = "default") -> Path:
        """Mount a filesystem volume at its path on this host (idempotent)."""
        async with self._locked(pool_name, project, name):
            pool, vol = await self.load(pool_name, project, name)
            if vol.content_type != Content.FILESYSTEM:
                raise InvalidRequest(f"storage volume {name!r} is a {vol.content_type} volume")
            path = self.mount_path(pool_name, project, name)
            runtime = await self.pools.runtime(pool)
            await runtime.volumes.mount(spec_of(vol.content_type, vol.config), array_of(vol), path)
            return path

    async def unmount(self, pool_name: str, name: str, *, project: str = "default") -> None:
        async with self._locked(pool_name, project, name):
            pool, vol = await self.load(pool_name, project, name)
            runtime = await self.pools.runtime(pool)
            await runtime.volumes.unmount(array_of(vol), self.mount_path(pool_name, project, name))

    # --- snapshots --------------------------------------------------------------------

    async def check_snapshot(
        self, pool_name: str, name: str, snapshot: str, *, project: str = "default"
    ) -> None:
        """Refuse at once what :meth:`snapshot` would refuse of this name, as LXD answers
        before any work: a bad name, a name taken (Conflict), a volume that takes none."""
        check_name(snapshot)
        _, vol = await self.load(pool_name, project, name)
        _snapshottable(vol)
        async with self.db.read() as conn:
            taken = {s.name for s in await st.list_snapshots(conn, vol.id)}
        if snapshot in taken:
            raise Conflict(f"snapshot {snapshot!r} of {name!r} already exists")

    async def snapshot(
        self,
        pool_name: str,
        name: str,
        snapshot: str | None = None,
        *,
        project: str = "default",
        description: str = "",
        expires_at: datetime.datetime | Literal["default"] | None = "default",
        kind: Kind = CUSTOM_KIND,
    ) -> str:
        """Snapshot a volume of any kind (a pair as one consistent set, its filesystem
        frozen while mounted); return the snapshot's name.

        Without a name, the volume's ``snapshots.pattern`` (``snap%d``) picks the next
        free one. ``expires_at`` defaults to now + ``snapshots.expiry`` (none if unset);
        None means no expiry.
        """
        async with self._locked(pool_name, project, name, kind):
            pool, vol = await self.load(pool_name, project, name, kind)
            _snapshottable(vol)
            runtime = await self.pools.runtime(pool)
            if not snapshot:  # the next free name of the volume's pattern
                async with self.db.read() as conn:
                    taken = {s.name for s in await st.list_snapshots(conn, vol.id)}
                snapshot = next_name(vol.config.get("snapshots.pattern") or "snap%d", taken)
            check_name(snapshot)
            if expires_at == "default":
                expiry = vol.config.get("snapshots.expiry", "")
                expires_at = add_expiry(st.now(), expiry) if expiry else None
            config = {**vol.config, "volatile.uuid": str(uuid.uuid4())}
            try:
                async with self.db.write() as conn:
                    row = await st.create_snapshot(
                        conn,
                        vol.id,
                        snapshot,
                        config,
                        description=description,
                        expires_at=expires_at,
                    )
            except NameTaken:
                raise Conflict(f"snapshot {snapshot!r} of {name!r} already exists") from None
            async with Reverter() as revert:
                revert.add(
                    lambda: self._forget(row.id, st.delete_snapshot),
                    f"the record of snapshot {snapshot!r}",
                )
                made = await runtime.instances.snapshot(
                    spec_of(vol.content_type, vol.config, kind.name),
                    ids_of(vol),
                    uuid.UUID(config["volatile.uuid"]),
                    self.mount_path(pool_name, project, name, kind),
                )
                for array_id in made.all():
                    revert.add(
                        functools.partial(runtime.volumes.remove_quietly, array_id),
                        f"array snapshot {array_id}",
                    )
                # The array's size, not the row's: they differ after a grow whose
                # filesystem step failed, and a copy of the snapshot needs the true one.
                size = format_size(await runtime.volumes.size_of(made.root))
                async with self.db.write() as conn:
                    await st.update_snapshot(
                        conn,
                        row.id,
                        step=CREATE_DONE,
                        array_id=made.root,
                        fs_array_id=made.fs,
                        config={**config, "size": size},
                    )
                revert.success()
        self._event(kind, "created", pool_name, name, project, snapshot=snapshot, context=_CUSTOM)
        return snapshot

    async def snapshot_record(
        self,
        pool_name: str,
        name: str,
        snapshot: str,
        *,
        project: str = "default",
        kind: Kind = CUSTOM_KIND,
    ) -> st.Snapshot:
        _, vol = await self.load(pool_name, project, name, kind, deleting=True)
        return await self.snapshot_of(vol, snapshot)

    async def update_snapshot(
        self,
        pool_name: str,
        name: str,
        snapshot: str,
        *,
        description: str,
        expires_at: datetime.datetime | None,
        project: str = "default",
    ) -> None:
        async with self._locked(pool_name, project, name):
            _, vol = await self.load(pool_name, project, name)
            snap = await self.snapshot_of(vol, snapshot)
            async with self.db.write() as conn:
                await st.update_snapshot(
                    conn, snap.id, description=description, expires_at=expires_at
                )
        self.pools.events.volume("updated", pool_name, name, project, snapshot=snapshot)

    async def snapshot_of(self, vol: st.Volume, snapshot: str) -> st.Snapshot:
        """The created snapshot ``snapshot`` of a volume record; NotFound otherwise."""
        async with self.db.read() as conn:
            snap = await st.get_snapshot(conn, vol.id, snapshot)
        if snap is None or snap.status != Status.CREATED:
            raise NotFound(f"snapshot {snapshot!r} of {vol.name!r} not found")
        return snap

    async def snapshots(
        self, pool_name: str, name: str, *, project: str = "default"
    ) -> list[st.Snapshot]:
        _, vol = await self.load(pool_name, project, name, deleting=True)
        async with self.db.read() as conn:
            return await st.list_snapshots(conn, vol.id, whole=True)

    async def rename_snapshot(
        self, pool_name: str, name: str, snapshot: str, new_name: str, *, project: str = "default"
    ) -> None:
        check_name(new_name)
        async with self._locked(pool_name, project, name):
            _, vol = await self.load(pool_name, project, name)
            snap = await self.snapshot_of(vol, snapshot)
            try:
                async with self.db.write() as conn:
                    await st.update_snapshot(conn, snap.id, name=new_name)
            except NameTaken:
                raise Conflict(f"snapshot {new_name!r} already exists") from None
        self.pools.events.volume(
            "renamed", pool_name, name, project, snapshot=new_name, context={"old_name": snapshot}
        )

    async def delete_snapshot(
        self,
        pool_name: str,
        name: str,
        snapshot: str,
        *,
        project: str = "default",
        kind: Kind = CUSTOM_KIND,
    ) -> None:
        async with self._locked(pool_name, project, name, kind):
            pool, vol = await self.load(pool_name, project, name, kind)
            snap = await self.snapshot_of(vol, snapshot)
            if snap.array_id:
                await (await self.pools.runtime(pool)).instances.delete(ids_of(snap))
            async with self.db.write() as conn:
                await st.delete_snapshot(conn, snap.id)
        self._event(kind, "deleted", pool_name, name, project, snapshot=snapshot)

    async def restore(
        self,
        pool_name: str,
        name: str,
        snapshot: str,
        *,
        project: str = "default",
        kind: Kind = CUSTOM_KIND,
    ) -> None:
        """Put a snapshot's content back (both volumes of a pair, or neither). While a
        pair is restored its row reads ``restoring``; it is left so only when the restore
        could not be undone, for recovery to finish."""
        async with self._locked(pool_name, project, name, kind):
            pool, vol = await self.load(pool_name, project, name, kind)
            snap = await self.snapshot_of(vol, snapshot)
            await self.refuse_in_use(
                vol, "restore it", running="Cannot restore custom volume used by running instances"
            )
            runtime = await self.pools.runtime(pool)
            async with self._restoring(vol):
                await runtime.instances.restore(
                    spec_of(vol.content_type, vol.config, kind.name),
                    ids_of(vol),
                    ids_of(snap),
                    self.mount_path(pool_name, project, name, kind),
                )
            # The content's ownership is the snapshot's: shifted as it was then.
            shift = "volatile.idmap.last"
            if snap.config.get(shift) != vol.config.get(shift):
                config = {k: v for k, v in vol.config.items() if k != shift}
                if snap.config.get(shift):
                    config[shift] = snap.config[shift]
                async with self.db.write() as conn:
                    await st.update_volume(conn, vol.id, config=config)
                if self.reshift is not None:
                    await self.reshift(pool_name, (await self.load(pool_name, project, name))[1])
        self._event(kind, "restored", pool_name, name, project, context={"snapshot": snapshot})

    @asynccontextmanager
    async def _restoring(self, vol: st.Volume) -> AsyncIterator[None]:
        if vol.fs_array_id is None:  # one volume: a failed overwrite changed nothing
            yield
            return
        async with self.db.write() as conn:
            await st.update_volume(conn, vol.id, step=RESTORE_BEGIN)
        try:
            yield
        except RestoreInterrupted:
            raise
        except BaseException:
            await self._restored(vol.id)
            raise
        await self._restored(vol.id)

    async def _restored(self, vol_id: int) -> None:
        async with self.db.write() as conn:
            await st.update_volume(conn, vol_id, step=RESTORE_DONE)

    # --- copy -------------------------------------------------------------------------

    async def copy(
        self,
        source_pool: str,
        source: str,
        target_pool: str,
        target: str,
        *,
        with_snapshots: bool = True,
        config: Mapping[str, str] | None = None,
        project: str = "default",
        target_project: str | None = None,
        source_snapshot: str | None = None,
        progress: Progress | None = None,
        kind: Kind = CUSTOM_KIND,
    ) -> VolumeView:
        """Copy a volume of any kind (and, unless told otherwise, its snapshots), or one
        snapshot of it (``source_snapshot``) into a new volume with the snapshot's config
        (a pair whole, in the ways of :mod:`lxflex.driver.copies`). ``config`` may set
        what a copy may differ in (a larger ``size``, rounded up to the array's step)."""
        check_name(target)
        dest_project = target_project or project
        src_pool, vol = await self.load(source_pool, project, source, kind)
        snap_source = await self.snapshot_of(vol, source_snapshot) if source_snapshot else None
        dst_pool = await self.pools.record(target_pool)
        if src_pool.id != dst_pool.id and src_pool.config.get(
            "powerflex.gateway"
        ) != dst_pool.config.get("powerflex.gateway"):
            raise InvalidRequest("copies between pools of different gateways are not supported yet")
        runtime = await self.pools.runtime(dst_pool)
        source_config = snap_source.config if snap_source else vol.config
        filled = {**copy_volume_config(source_config, config or {})}
        size = round_up(parse_size(filled["size"]), runtime.volumes.granularity)
        filled.update({"size": format_size(size), "volatile.uuid": str(uuid.uuid4())})
        async with (
            self._locked(source_pool, project, source, kind),
            self._still(src_pool, vol, kind, runtime, snap_source) as read_from,
        ):
            async with self.db.read() as conn:
                snaps = await st.list_snapshots(conn, vol.id, whole=True)
            snaps = snaps if with_snapshots and snap_source is None else []

            async def copy(uuids: list[uuid.UUID]) -> tuple[InstanceIds, list[InstanceIds]]:
                result = await runtime.instances.copy(
                    spec_of(vol.content_type, source_config, kind.name),
                    read_from,
                    spec_of(vol.content_type, filled, kind.name),
                    [ids_of(s) for s in snaps],
                    uuids,
                    progress,
                    [parse_size(s.config["size"]) for s in snaps],
                )
                return result.ids, result.snapshots

            new = NewVolume(
                dst_pool, dest_project, target, vol.content_type, filled, vol.description, kind.name
            )
            await self.provision_copy(new, snaps, copy)
        return await self.get(target_pool, target, project=dest_project, kind=kind)

    @asynccontextmanager
    async def _still(
        self,
        pool: st.Pool,
        vol: st.Volume,
        kind: Kind,
        runtime: PoolDriver,
        snap: st.Snapshot | None,
    ) -> AsyncIterator[InstanceIds]:
        """What a copy reads: a snapshot, or the volume; a volume in use is read from
        one instant of it, a temporary snapshot (journaled by name first, removed after
        the copy), never from blocks that change under the copy: taken with the
        filesystem frozen when it is mounted here; as a crash would leave it when
        another host has it (this host may not map it: one host at a time)."""
        stable = self.mount_path(pool.name, vol.project, vol.name, kind)
        mounted = is_mounted(stable)
        if snap is not None or vol.fs_array_id or not (mounted or await self._elsewhere(vol)):
            yield ids_of(snap or vol)
            return
        view = uuid.uuid4()
        journal = self.pools.journal
        names = snapshot_names(runtime, vol.type, vol.content_type, [view])
        intents = await journal.intend(pool.id, names, f"a still view of {vol.name!r} to copy")
        try:
            spec = spec_of(vol.content_type, vol.config, kind.name)
            frozen = stable if mounted else None
            yield InstanceIds(await runtime.volumes.snapshot(spec, array_of(vol), view, frozen))
        finally:
            await journal.repair(pool.id, runtime.volumes, intents)  # the view goes

    async def refresh(
        self,
        source_pool: str,
        source: str,
        target_pool: str,
        target: str,
        *,
        project: str = "default",
        target_project: str | None = None,
        progress: Progress | None = None,
    ) -> VolumeView:
        """Bring the existing volume ``target`` up to ``source`` (``lxc storage volume
        copy --refresh``), as LXD does: the source's snapshots the target lacks (by
        name) are copied into it oldest first, then the volume itself; the target's
        snapshots the source lacks are deleted. The target keeps its name, UUID and
        config; it grows if the source is larger. All or nothing (see
        :mod:`lxflex.driver.refresh`)."""
        dest_project = target_project or project
        keys = sorted({(source_pool, project, source), (target_pool, dest_project, target)})
        async with contextlib.AsyncExitStack() as held:
            for key in keys:  # in one order, so two refreshes cannot deadlock
                await held.enter_async_context(self._locked(*key))
            src_pool, vol = await self.load(source_pool, project, source)
            dst_pool, dst = await self.load(target_pool, dest_project, target)
            if vol.id == dst.id:
                raise InvalidRequest("a volume cannot be refreshed from itself")
            await self.refuse_in_use(dst, "refresh it")
            if vol.content_type != dst.content_type:
                raise InvalidRequest(
                    f"cannot refresh a {dst.content_type} volume from a {vol.content_type} one"
                )
            src_spec, target_spec = (
                spec_of(vol.content_type, vol.config),
                spec_of(dst.content_type, dst.config),
            )
            if src_spec.is_filesystem and src_spec.filesystem != target_spec.filesystem:
                raise InvalidRequest(
                    f"cannot refresh {target!r} ({target_spec.filesystem}) from {source!r} "
                    f"({src_spec.filesystem}): a refresh copies blocks, so both need the "
                    f"same block.filesystem; delete {target!r} and copy it again"
                )
            if src_pool.config.get("powerflex.gateway") != dst_pool.config.get("powerflex.gateway"):
                raise InvalidRequest(
                    "refreshes between pools of different gateways are not supported yet"
                )
            async with self.db.read() as conn:
                src_snaps = await st.list_snapshots(conn, vol.id, whole=True)
                dst_snaps = await st.list_snapshots(conn, dst.id, whole=True)
            have = {s.name for s in dst_snaps}
            missing = [s for s in src_snaps if s.name not in have]
            extra = [s for s in dst_snaps if s.name not in {s.name for s in src_snaps}]
            runtime = await self.pools.runtime(dst_pool)
            uuids = [uuid.uuid4() for _ in missing]
            guard = uuid.uuid4()
            journal = self.pools.journal
            names = snapshot_names(runtime, CUSTOM, dst.content_type, [*uuids, guard])
            intents = await journal.intend(dst_pool.id, names, f"the refresh of {target!r}")
            still = await held.enter_async_context(
                self._still(src_pool, vol, CUSTOM_KIND, runtime, None)
            )
            plan = RefreshPlan(
                CopyPlan(
                    src_spec,
                    still.root,
                    target_spec,
                    [array_of(s) for s in missing],
                    uuids,
                    [parse_size(s.config["size"]) for s in missing],
                ),
                array_of(dst),
                guard,
            )
            try:
                made = await runtime.volumes.refresh(plan, progress)
            except GuardKept as exc:
                kept = await self._keep_guard(dst, exc.guard_id, guard, intents)
                raise DriverError(
                    f"{exc}; the content of {target!r} before the refresh is in its snapshot "
                    f"{kept!r}: restore it with lxc storage volume restore {target_pool} "
                    f"{target} {kept}"
                ) from exc
            except BaseException:
                await journal.repair(dst_pool.id, runtime.volumes, intents)
                raise
            size = format_size(await runtime.volumes.size_of(array_of(dst)))
            async with self.db.write() as conn:
                for snap, snap_uuid, array_id in zip(missing, uuids, made, strict=True):
                    row = await st.create_snapshot(
                        conn,
                        dst.id,
                        snap.name,
                        {
                            **dst.config,
                            "size": snap.config["size"],
                            "volatile.uuid": str(snap_uuid),
                        },
                        description=snap.description,
                        expires_at=snap.expires_at,
                        status=Status.CREATED,
                    )
                    await st.update_snapshot(conn, row.id, array_id=array_id)
                await st.update_volume(conn, dst.id, config={**dst.config, "size": size})
                await journal.settle(conn, intents)
        for snap in extra:  # as LXD: what the source no longer has goes
            await self.delete_snapshot(target_pool, target, snap.name, project=dest_project)
        for snap in missing:
            self.pools.events.volume(
                "created", target_pool, target, dest_project, snapshot=snap.name, context=_CUSTOM
            )
        self.pools.events.volume("updated", target_pool, target, dest_project)
        return await self.get(target_pool, target, project=dest_project)

    async def _keep_guard(
        self, vol: st.Volume, guard_id: str, guard_uuid: uuid.UUID, intents: list[int]
    ) -> str:
        """A refresh could not put its target back: its guard becomes a snapshot of the
        target, visible and restorable. Return the snapshot's name."""
        async with self.db.write() as conn:
            taken = {s.name for s in await st.list_snapshots(conn, vol.id)}
            name = next_name("before-refresh%d", taken)
            row = await st.create_snapshot(
                conn,
                vol.id,
                name,
                {**vol.config, "volatile.uuid": str(guard_uuid)},
                description="the volume before a refresh that failed",
                status=Status.CREATED,
            )
            await st.update_snapshot(conn, row.id, array_id=guard_id)
            await self.pools.journal.settle(conn, intents)
        return name

    async def recover(self, pool_name: str, *, shared: bool = False) -> int:
        """Undo creates and finish deletes (and VM restores) that a crash cut short, in
        one pool; see :func:`lxflex.service.recovery.recover_pool`."""
        return await recover_pool(self.db, self.pools, self.try_lock, pool_name, shared=shared)

    async def repair_rows(self, pool_name: str) -> int:
        """Finish or undo the work cut short on the pool's volumes whose locks nobody
        holds (see :func:`lxflex.service.recovery.repair_rows`)."""
        return await repair_rows(self.db, self.pools, self.try_lock, pool_name)

    async def move(
        self,
        pool_name: str,
        name: str,
        target_pool: str,
        target: str,
        *,
        project: str = "default",
        progress: Progress | None = None,
    ) -> VolumeView:
        """Rename within a pool; across pools, copy with snapshots and delete the source.
        A volume in use by instances that are all stopped moves as LXD moves it: its uses
        go to the copy before the source is deleted (a failure then deletes the copy)."""
        if target_pool == pool_name:
            return await self.rename(pool_name, name, target, project=project)
        _, vol = await self.load(pool_name, project, name)
        stopped = await self.refuse_in_use(  # before the copy, not after
            vol, "move it", running="Volume is still in use by running instances"
        )
        view = await self.copy(
            pool_name, name, target_pool, target, project=project, progress=progress
        )
        if stopped and self.move_uses is not None:
            try:
                await self.move_uses(pool_name, vol, target_pool, target)
            except BaseException:
                await self.delete(target_pool, target, project=project)
                raise
        await self.delete(pool_name, name, project=project)
        return view


def _snapshottable(vol: st.Volume) -> None:
    if vol.content_type == Content.ISO:
        raise InvalidRequest("an ISO volume is read-only: it has no snapshots")
