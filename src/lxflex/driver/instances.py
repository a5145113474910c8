"""Instance volumes on the array: containers and virtual machines.

Theory of operation: a container's volume is one filesystem volume (``c_<uuid>``). A
virtual machine's is a pair that shares one UUID: its root disk (``v_<uuid>.b``, block)
and a filesystem volume for its configuration (``v_<uuid>``) of the array's smallest size
(8 GiB on PowerFlex 4, so a VM occupies 16 GiB at least, thin by default). Every
operation here treats the pair as one volume:

- create: the filesystem twin, then the root disk; if the second fails, the first is
  removed, so a failure leaves neither;
- snapshot: one array call (snapshotVolumes, or createSnapshot on PowerFlex 5) names both
  volumes, and the array snapshots them as one consistent set, or neither;
- restore: a temporary snapshot pair (named after :func:`restore_guard_uuid`) is taken
  first; if overwriting either volume fails, both are put back from it, then it is
  removed. A crash in between leaves it on the array for recovery to put back the same way;
- copy: each volume of the pair is copied with its snapshots (in one of the ways of
  :mod:`lxflex.driver.copies`); if the second copy fails, the first is removed;
- delete: the root disk with its snapshots first, then the twin with its snapshots. If the
  array refuses the first, nothing of the volume is gone (but what that refusal says);
  if it refuses the second, the disk is gone and :class:`DeleteInterrupted` says the rest
  is to be finished (recovery and ``storage check --repair`` do).

Images never live on the array (the VTree limit would cap the instances of one image):
each instance volume is filled from a local image, a full copy whatever ``clone_copy``
says. A container gets the image's tree; a virtual machine gets the metadata on its
filesystem twin and the disk on its root.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from ..host.images import ImageError
from ..host.lxdimage import ImageFiles, ImageKind, InstanceImage, LxdImages
from .errors import DriverError, InvalidRequest, Unavailable
from .naming import Content, VolumeType
from .volumes import CopyPlan, PowerFlexVolumes, Progress, VolumeSpec

__all__ = [
    "DeleteInterrupted",
    "InstanceCopy",
    "InstanceIds",
    "InstanceVolumes",
    "RestoreInterrupted",
    "restore_guard_uuid",
    "twin_of",
]

log = logging.getLogger("lxflex.driver")

_Unpack = Callable[[Path], Awaitable[None]]


@dataclass(frozen=True)
class InstanceIds:
    """The array IDs of an instance volume (or snapshot): the root, and for a virtual
    machine its filesystem twin."""

    root: str
    fs: str | None = None

    def all(self) -> list[str]:
        return [self.root] if self.fs is None else [self.root, self.fs]


@dataclass(frozen=True)
class InstanceCopy:
    ids: InstanceIds
    snapshots: list[InstanceIds]  # in the order of the plan's snapshots
    bytes_written: int


class DeleteInterrupted(Unavailable):
    """A virtual machine's delete removed its root disk, and the array refused to remove
    its filesystem twin: the volume is gone in all but that, which is finished later."""


class RestoreInterrupted(Unavailable):
    """A pair's restore failed half done and could not be undone; its guard snapshot
    pair is kept for recovery to put the previous content back."""


def twin_of(spec: VolumeSpec, size: int) -> VolumeSpec:
    """A virtual machine's filesystem volume: same UUID and provisioning, ext4 always."""
    return VolumeSpec(
        uuid=spec.uuid,
        volume_type=VolumeType.VIRTUAL_MACHINE,
        content=Content.FILESYSTEM,
        size=size,
        thin=spec.thin,
    )


def restore_guard_uuid(volume_uuid: uuid.UUID) -> uuid.UUID:
    """The UUID naming the temporary snapshot pair that guards a restore of a virtual
    machine: derived from the volume's, so recovery finds it after a crash."""
    return uuid.uuid5(volume_uuid, "lxflex-restore-guard")


def _is_vm(spec: VolumeSpec) -> bool:
    return spec.volume_type is VolumeType.VIRTUAL_MACHINE


class InstanceVolumes:
    def __init__(self, volumes: PowerFlexVolumes) -> None:
        self.volumes = volumes
        self.images = LxdImages(volumes.fs.runner)

    @asynccontextmanager
    async def open_image(self, files: ImageFiles) -> AsyncIterator[InstanceImage]:
        """An image from local files for :meth:`create` (see :meth:`LxdImages.open`);
        :class:`InvalidRequest` when the files are not an LXD image."""
        scratch = self.volumes.scratch / f"image-{uuid.uuid4().hex}"
        try:
            async with self.images.open(files, scratch) as image:
                yield image
        except ImageError as exc:
            raise InvalidRequest(str(exc)) from exc

    def twin(self, spec: VolumeSpec) -> VolumeSpec:
        return twin_of(spec, self.volumes.granularity)

    def _members(self, spec: VolumeSpec, ids: InstanceIds) -> list[tuple[VolumeSpec, str]]:
        if ids.fs is None:
            return [(spec, ids.root)]
        return [(spec, ids.root), (self.twin(spec), ids.fs)]

    # --- create and delete ------------------------------------------------------------

    async def create(
        self, spec: VolumeSpec, image: InstanceImage | None = None, progress: Progress | None = None
    ) -> InstanceIds:
        """Make the instance volume, empty or filled from ``image``; a failure leaves
        nothing on the array."""
        kind = ImageKind.VIRTUAL_MACHINE if _is_vm(spec) else ImageKind.CONTAINER
        if image is not None and image.kind is not kind:
            raise InvalidRequest(f"a {image.kind} image cannot fill a {kind} volume")
        if not _is_vm(spec):
            if image is None:
                return InstanceIds(await self.volumes.create(spec))
            return InstanceIds(await self._fill_tree(spec, image))
        twin = self.twin(spec)
        if image is None:
            fs_id = await self.volumes.create(twin)
        else:
            fs_id = await self._fill(twin, lambda into: self.images.unpack_metadata(image, into))
        try:
            if image is None:
                root = await self.volumes.create(spec)
            else:
                if image.disk is None:
                    raise InvalidRequest("the image holds no disk for the virtual machine")
                root = await self.volumes.create_from_disk_image(spec, image.disk, progress)
        except BaseException:
            await self.drop(fs_id)
            raise
        return InstanceIds(root, fs_id)

    async def _fill_tree(self, spec: VolumeSpec, image: InstanceImage) -> str:
        return await self._fill(spec, lambda into: self.images.unpack_tree(image, into))

    async def _fill(self, spec: VolumeSpec, unpack: _Unpack) -> str:
        async def fill(into: Path) -> None:
            try:
                await unpack(into)
            except ImageError as exc:
                raise InvalidRequest(str(exc)) from exc
            except DriverError:
                raise
            except Exception as exc:
                raise InvalidRequest(
                    f"the image cannot be unpacked onto the volume: {exc}"
                ) from exc

        return await self.volumes.create_filled(spec, fill)

    async def delete(self, ids: InstanceIds) -> None:
        """Remove the volume's array volumes (the caller removes its snapshots first)."""
        for vol_id in ids.all():
            await self.volumes.delete(vol_id)

    async def delete_with_snapshots(
        self, root: str | None, fs: str | None, snapshots: Sequence[InstanceIds]
    ) -> None:
        """Remove a volume of any kind (None: a part never made) with its snapshots, each
        VTree as :meth:`PowerFlexVolumes.delete_with_snapshots` does: the root (a custom
        or a container volume, or a virtual machine's disk) first, then the twin."""
        await self.volumes.delete_with_snapshots(root, [s.root for s in snapshots])
        twins = [s.fs for s in snapshots if s.fs is not None]
        if fs is None and not twins:
            return
        try:
            await self.volumes.delete_with_snapshots(fs, twins)
        except DriverError as exc:
            raise DeleteInterrupted(
                f"{exc}; the virtual machine's disk is deleted, and what is left of its "
                "filesystem volume is removed when lxflexd next starts (or by storage "
                "check --repair)"
            ) from exc

    # --- snapshots and restore --------------------------------------------------------

    async def snapshot(
        self,
        spec: VolumeSpec,
        ids: InstanceIds,
        snap_uuid: uuid.UUID,
        mounted_at: Path | None = None,
    ) -> InstanceIds:
        """Snapshot the volume (both of a pair, as one consistent set)."""
        made = await self.volumes.snapshot_set(self._members(spec, ids), snap_uuid, mounted_at)
        return InstanceIds(*made)

    async def restore(
        self, spec: VolumeSpec, ids: InstanceIds, snap: InstanceIds, mounted_at: Path | None = None
    ) -> None:
        """Put the snapshot's content back; a pair is restored whole or not at all."""
        if ids.fs is None:
            await self._overwrite(spec, ids, snap, mounted_at)
            return
        guard = InstanceIds(
            *await self.volumes.snapshot_set(
                self._members(spec, ids), restore_guard_uuid(spec.uuid), mounted_at
            )
        )
        try:
            await self._overwrite(spec, ids, snap, mounted_at)
        except BaseException as exc:
            log.warning("restore of %s failed; putting its previous content back", ids.root)
            try:
                await self._overwrite(spec, ids, guard, mounted_at)
            except Exception as undo:
                raise RestoreInterrupted(
                    f"the restore failed ({exc}) and so did putting the previous content "
                    f"back ({undo}); it is kept in array snapshots {', '.join(guard.all())} "
                    "and put back when lxflexd next starts"
                ) from exc
            await self.drop(*guard.all())
            raise
        await self.drop(*guard.all())

    async def _overwrite(
        self, spec: VolumeSpec, ids: InstanceIds, source: InstanceIds, mounted_at: Path | None
    ) -> None:
        for (member, vol_id), source_id in zip(self._members(spec, ids), source.all(), strict=True):
            mounted = mounted_at if member.is_filesystem else None
            await self.volumes.restore(member, vol_id, source_id, mounted)

    async def recover_restore(self, spec: VolumeSpec, ids: InstanceIds) -> bool:
        """After a crash: if a restore's guard pair is on the array, put the volume back
        from it (the restore was never reported done) and remove it. True if one was."""
        guard_spec = dataclasses.replace(spec, uuid=restore_guard_uuid(spec.uuid))
        root = await self.volumes.find(guard_spec, snapshot=True)
        fs = await self.volumes.find(self.twin(guard_spec), snapshot=True)
        if root is None and fs is None:
            return False
        if root is not None and fs is not None and ids.fs is not None:
            await self._overwrite(spec, ids, InstanceIds(root, fs), None)
        # Only one of the two: the crash came while removing a guard no longer needed.
        await self.drop(root, fs)
        return True

    async def drop(self, *vol_ids: str | None) -> None:
        """Remove array volumes or snapshots, quietly: what cannot be removed is logged."""
        for vol_id in vol_ids:
            if vol_id is not None:
                await self.volumes.remove_quietly(vol_id)

    # --- copy -------------------------------------------------------------------------

    async def copy(
        self,
        source: VolumeSpec,
        ids: InstanceIds,
        target: VolumeSpec,
        snapshots: Sequence[InstanceIds] = (),
        snapshot_uuids: Sequence[uuid.UUID] = (),
        progress: Progress | None = None,
        snapshot_sizes: Sequence[int] = (),
    ) -> InstanceCopy:
        """Copy the volume (and ``snapshots``, oldest first, named after
        ``snapshot_uuids``, each of its size in ``snapshot_sizes``) into a new one; a
        failure leaves no part of the copy. A virtual machine's filesystem twin never
        grows: its snapshots all have its size."""
        roots = await self.volumes.copy(
            CopyPlan(
                source,
                ids.root,
                target,
                [s.root for s in snapshots],
                list(snapshot_uuids),
                list(snapshot_sizes),
            ),
            progress,
        )
        if ids.fs is None:
            made = [InstanceIds(s) for s in roots.snapshot_ids]
            return InstanceCopy(InstanceIds(roots.volume_id), made, roots.bytes_written)
        try:
            fs_snaps = [s.fs for s in snapshots]
            if any(s is None for s in fs_snaps):
                raise InvalidRequest("a snapshot of the virtual machine lacks its filesystem twin")
            twins = await self.volumes.copy(
                CopyPlan(
                    self.twin(source),
                    ids.fs,
                    self.twin(target),
                    [s for s in fs_snaps if s is not None],
                    list(snapshot_uuids),
                ),
            )
        except BaseException:
            await self.drop(*reversed(roots.snapshot_ids), roots.volume_id)
            raise
        made = [
            InstanceIds(r, f) for r, f in zip(roots.snapshot_ids, twins.snapshot_ids, strict=True)
        ]
        return InstanceCopy(
            InstanceIds(roots.volume_id, twins.volume_id),
            made,
            roots.bytes_written + twins.bytes_written,
        )
