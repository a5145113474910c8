"""Instance volumes, of containers and virtual machines, as use cases.

An instance volume is one row of type ``container`` (content filesystem) or
``virtual-machine`` (content block). A virtual machine's row keeps both array IDs of its
pair, ``array_id`` for the root disk and ``fs_array_id`` for its filesystem twin, and so
does each of its snapshots; the pair is handled whole by
:class:`~lxflex.driver.InstanceVolumes`. The rules every kind of volume shares (lock,
lookup, rename, delete, snapshots, restore, copy) are :class:`VolumeService`'s, given
the kind; what is here is the instances' own: a volume filled from a local LXD image,
the growth of a pair, the mount of a virtual machine's twin, the listing of both kinds.

The REST endpoints of instances are not served yet: these use cases are what they call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from ..driver import (
    Conflict,
    Content,
    InvalidRequest,
    PowerFlexVolumes,
    Progress,
    VolumeType,
    format_size,
    parse_size,
    round_up,
)
from ..host.lxdimage import ImageFiles, InstanceImage
from ..state import Database
from ..state import store as st
from .kinds import INSTANCE_KINDS, Kind
from .pools import PoolService
from .rules import check_name, fill_config
from .specs import spec_of
from .views import VolumeView, array_of, make_view
from .volumes import NewVolume, VolumeService

__all__ = ["InstanceService"]

_KINDS = {k.name: k for k in INSTANCE_KINDS}


def _kind(kind: str) -> Kind:
    if kind not in _KINDS:
        raise InvalidRequest(f"instance volume type {kind!r}: {' or '.join(_KINDS)}")
    return _KINDS[kind]


class InstanceService:
    def __init__(self, db: Database, pools: PoolService, volumes: VolumeService) -> None:
        self.db = db
        self.pools = pools
        self.volumes = volumes  # provisioning, config rules and locks are shared

    def _locked(
        self, pool: str, kind: str, project: str, name: str
    ) -> AbstractAsyncContextManager[None]:
        return self.volumes.lock(pool, project, _kind(kind).lock_key(name))

    def mount_path(self, pool: str, kind: str, name: str, *, project: str = "default") -> Path:
        """Where a container's volume, or a virtual machine's filesystem twin, mounts."""
        return self.volumes.mount_path(pool, project, name, _kind(kind))

    async def _load(
        self, pool_name: str, kind: str, name: str, project: str
    ) -> tuple[st.Pool, st.Volume]:
        return await self.volumes.load(pool_name, project, name, _kind(kind))

    async def record(
        self, pool_name: str, kind: str, name: str, *, project: str = "default"
    ) -> st.Volume:
        """The stored record of an instance volume (with its array IDs)."""
        return await self.volumes.record(pool_name, name, project=project, kind=_kind(kind))

    async def snapshot_record(
        self, pool_name: str, kind: str, name: str, snapshot: str, *, project: str = "default"
    ) -> st.Snapshot:
        return await self.volumes.snapshot_record(
            pool_name, name, snapshot, project=project, kind=_kind(kind)
        )

    # --- create / read ----------------------------------------------------------------

    async def create(
        self,
        pool_name: str,
        kind: str,
        name: str,
        *,
        image: ImageFiles | None = None,
        config: Mapping[str, str] | None = None,
        description: str = "",
        project: str = "default",
        progress: Progress | None = None,
    ) -> VolumeView:
        """An instance volume, empty or filled from a local LXD image (always a full copy
        of it). Without a ``size``, a volume too small for the image grows to the next
        size that holds it; an explicit size too small is refused."""
        content = _kind(kind).content
        assert content is not None  # noqa: S101 - an instance kind's is fixed
        check_name(name)
        pool = await self.pools.record(pool_name)
        async with self.db.read() as conn:
            if await st.get_volume(conn, pool.id, project, kind, name) is not None:
                raise Conflict(f"{kind} volume {name!r} already exists in pool {pool_name!r}")
        runtime = await self.pools.runtime(pool)
        step = runtime.volumes.granularity
        async with contextlib.AsyncExitStack() as stack:
            opened = None
            if image is not None:
                opened = await stack.enter_async_context(runtime.instances.open_image(image))
            filled = self._config(pool, content, config or {}, step, opened)
            spec = spec_of(content, filled, kind)
            new = NewVolume(pool, project, name, content, filled, description, kind)
            row = await self.volumes.provision(
                new, lambda: runtime.instances.create(spec, opened, progress)
            )
        return make_view(pool, row, [])

    def _config(
        self,
        pool: st.Pool,
        content: Content,
        config: Mapping[str, str],
        step: int,
        image: InstanceImage | None,
    ) -> dict[str, str]:
        filled = fill_config(pool, content, config, step)
        if image is not None and image.needed_bytes > parse_size(filled["size"]):
            if config.get("size"):
                raise InvalidRequest(
                    f"the image needs {format_size(image.needed_bytes)}; size "
                    f"{config['size']} cannot hold it"
                )
            filled["size"] = format_size(round_up(image.needed_bytes, step))
        return filled

    async def get(
        self, pool_name: str, kind: str, name: str, *, project: str = "default"
    ) -> VolumeView:
        return await self.volumes.get(pool_name, name, project=project, kind=_kind(kind))

    async def all(
        self, pool_name: str, kind: str | None = None, *, project: str | None = None
    ) -> list[VolumeView]:
        """The pool's instance volumes (of one kind, or both), with their snapshots."""
        pool = await self.pools.record(pool_name)
        async with self.db.read() as conn:
            vols = await st.list_volumes(conn, pool.id, project=project, volume_type=kind)
            snaps = await st.list_pool_snapshots(conn, pool.id)
        return [
            make_view(pool, v, snaps.get(v.id, []))
            for v in vols
            if v.type in _KINDS and v.status.visible
        ]

    async def resize(
        self, pool_name: str, kind: str, name: str, size: str, *, project: str = "default"
    ) -> VolumeView:
        """Grow the volume to ``size`` (rounded up): a container's filesystem grows with
        it; of a virtual machine, the root disk grows (its GPT's backup header moved to
        the end) and the filesystem twin keeps its size."""
        async with self._locked(pool_name, kind, project, name):
            pool, vol = await self._load(pool_name, kind, name, project)
            runtime = await self.pools.runtime(pool)
            mounted = self.mount_path(pool_name, kind, name, project=project)
            grown = await runtime.volumes.resize(
                spec_of(vol.content_type, vol.config, kind),
                array_of(vol),
                parse_size(size),
                mounted if kind == VolumeType.CONTAINER else None,
            )
            async with self.db.write() as conn:
                await st.update_volume(
                    conn, vol.id, config={**vol.config, "size": format_size(grown)}
                )
        return await self.get(pool_name, kind, name, project=project)

    # --- rename, delete, mount --------------------------------------------------------

    async def rename(
        self, pool_name: str, kind: str, name: str, new_name: str, *, project: str = "default"
    ) -> VolumeView:
        """Rename the volume (both of a pair)."""
        return await self.volumes.rename(
            pool_name, name, new_name, project=project, kind=_kind(kind)
        )

    async def delete(
        self, pool_name: str, kind: str, name: str, *, project: str = "default"
    ) -> None:
        """Delete the volume with its snapshots (both of a pair), as custom volumes are:
        see :meth:`VolumeService.delete`."""
        await self.volumes.delete(pool_name, name, project=project, kind=_kind(kind))

    def _fs_of(self, vol: st.Volume, twin: bool) -> str:
        """The array ID of the filesystem that mounts: the container's volume, or the
        virtual machine's twin."""
        if not twin:
            return array_of(vol)
        if not vol.fs_array_id:
            raise Conflict(f"{vol.name!r} has no filesystem volume recorded")
        return vol.fs_array_id

    async def _unmount(self, volumes: PowerFlexVolumes, vol: st.Volume, path: Path) -> None:
        await volumes.unmount(vol.fs_array_id or array_of(vol), path)  # if mounted

    async def mount(
        self, pool_name: str, kind: str, name: str, *, project: str = "default"
    ) -> Path:
        """Mount a container's volume (or a virtual machine's filesystem twin) at its
        path on this host (idempotent); return the path."""
        async with self._locked(pool_name, kind, project, name):
            pool, vol = await self._load(pool_name, kind, name, project)
            runtime = await self.pools.runtime(pool)
            spec = spec_of(vol.content_type, vol.config, kind)
            is_vm = kind == VolumeType.VIRTUAL_MACHINE
            fs_spec = runtime.instances.twin(spec) if is_vm else spec
            path = self.mount_path(pool_name, kind, name, project=project)
            await runtime.volumes.mount(fs_spec, self._fs_of(vol, is_vm), path)
            return path

    async def unmount(
        self, pool_name: str, kind: str, name: str, *, project: str = "default"
    ) -> None:
        async with self._locked(pool_name, kind, project, name):
            pool, vol = await self._load(pool_name, kind, name, project)
            runtime = await self.pools.runtime(pool)
            path = self.mount_path(pool_name, kind, name, project=project)
            await self._unmount(runtime.volumes, vol, path)

    # --- snapshots and restore --------------------------------------------------------

    async def snapshot(
        self,
        pool_name: str,
        kind: str,
        name: str,
        snapshot: str | None = None,
        *,
        description: str = "",
        project: str = "default",
    ) -> str:
        """Snapshot the volume (a pair as one consistent set); return the snapshot's
        name (the next free one of ``snapshots.pattern`` when none is given)."""
        return await self.volumes.snapshot(
            pool_name, name, snapshot, description=description, project=project, kind=_kind(kind)
        )

    async def delete_snapshot(
        self, pool_name: str, kind: str, name: str, snapshot: str, *, project: str = "default"
    ) -> None:
        await self.volumes.delete_snapshot(
            pool_name, name, snapshot, project=project, kind=_kind(kind)
        )

    async def restore(
        self, pool_name: str, kind: str, name: str, snapshot: str, *, project: str = "default"
    ) -> None:
        """Put a snapshot's content back (both volumes of a pair, or neither)."""
        await self.volumes.restore(pool_name, name, snapshot, project=project, kind=_kind(kind))

    # --- copy -------------------------------------------------------------------------

    async def copy(
        self,
        pool_name: str,
        kind: str,
        source: str,
        target: str,
        *,
        with_snapshots: bool = True,
        config: Mapping[str, str] | None = None,
        project: str = "default",
        progress: Progress | None = None,
    ) -> VolumeView:
        """Copy an instance volume (with its snapshots unless told otherwise) into a new
        one of the same pool: see :meth:`VolumeService.copy`."""
        return await self.volumes.copy(
            pool_name,
            source,
            pool_name,
            target,
            with_snapshots=with_snapshots,
            config=config,
            project=project,
            progress=progress,
            kind=_kind(kind),
        )
