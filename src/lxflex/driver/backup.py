"""Volume backups in LXD's tarball layout, made and restored through the driver.

Layout (what ``lxc storage volume export`` writes and ``import`` reads)::

    backup/index.yaml                        the volume, its pool and snapshots
    backup/volume.img | backup/volume/...    a block image, or the filesystem tree
    backup/volume-snapshots/<snap>.img | <snap>/...

Export stages the tree in a scratch directory: block images are copied there sparsely
(the holes of the device stay holes of the file, which tar stores as a sparse member),
filesystems are mounted there (snapshots read-only), and one tar run archives it all.
A block volume is read from a temporary array snapshot, so the image is consistent
even while the volume is in use; the snapshot is removed afterwards.

Import creates the volume, and for each snapshot, oldest first, writes its content into
the volume and snapshots it; then writes the volume's own content. Writes skip zeros, so
a thin volume allocates what the backup holds. On any failure every array volume made
so far is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..host.archive import Archives
from ..host.copy import copy_in_thread
from ..host.runner import CommandError
from ..powerflex import PowerFlexError
from ..revert import Reverter
from .errors import Conflict, DriverError, InvalidRequest
from .spec import wrap
from .volumes import PowerFlexVolumes, VolumeSpec

__all__ = ["BackupSource", "Backups", "member_of"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BackupSource:
    spec: VolumeSpec
    array_id: str
    snapshots: list[tuple[str, VolumeSpec, str]]  # (name, spec, array ID), oldest first


def member_of(snapshot: str | None) -> str:
    """The archive path of the volume (None) or of one of its snapshots."""
    return f"backup/volume-snapshots/{snapshot}" if snapshot else "backup/volume"


def _read_only(spec: VolumeSpec) -> VolumeSpec:
    """Mount options for a snapshot beside its mounted original (same filesystem UUID)."""
    extra = ["ro"] + (["nouuid"] if spec.filesystem == "xfs" else [])
    options = ",".join(o for o in (spec.mount_options, *extra) if o)
    return dataclasses.replace(spec, mount_options=options)


class Backups:
    def __init__(self, volumes: PowerFlexVolumes, archives: Archives) -> None:
        self.volumes = volumes
        self.archives = archives

    # --- export -----------------------------------------------------------------------

    async def export(
        self,
        source: BackupSource,
        index: bytes,
        staging: Path,
        out: Path,
        compression: str,
        progress: Progress | None = None,
        *,
        view_uuid: uuid.UUID | None = None,
    ) -> None:
        """Write the backup tarball of ``source`` to ``out``. A block volume is read from
        a temporary snapshot named after ``view_uuid`` (the caller journals that name
        first); a failure to remove it afterwards leaves it for repair, and does not fail
        the backup."""
        mounted: list[tuple[str, Path]] = []
        temporary: str | None = None
        total = source.spec.size * (len(source.snapshots) + 1)
        done = 0

        def step(offset: int, _: int) -> None:
            if progress is not None:
                progress(done + offset, total)

        try:
            top = staging / "backup"
            (top / "volume-snapshots").mkdir(parents=True)
            (top / "index.yaml").write_bytes(index)
            for name, spec, array_id in source.snapshots:
                where = top / "volume-snapshots" / name
                if spec.is_filesystem:
                    await self.volumes.mount(_read_only(spec), array_id, where)
                    mounted.append((array_id, where))
                else:
                    await self._stage_image(array_id, where.with_name(f"{name}.img"), step)
                done += source.spec.size
            if source.spec.is_filesystem:
                await self.volumes.mount(source.spec, source.array_id, top / "volume")
                mounted.append((source.array_id, top / "volume"))
            else:
                temporary = await self._consistent_view(source, view_uuid or uuid.uuid4())
                await self._stage_image(temporary or source.array_id, top / "volume.img", step)
            await self.archives.create(staging, "backup", out, compression)
            step(source.spec.size, total)
        except CommandError as exc:
            raise DriverError(f"backup failed: {exc}") from exc
        except PowerFlexError as exc:
            raise wrap("backup", exc) from exc
        finally:
            for array_id, where in reversed(mounted):
                with contextlib.suppress(Exception):
                    await self.volumes.unmount(array_id, where)
            if temporary is not None:
                await self.volumes.remove_quietly(temporary)
            shutil.rmtree(staging, ignore_errors=True)

    async def _consistent_view(self, source: BackupSource, view_uuid: uuid.UUID) -> str | None:
        """A temporary snapshot of a block volume to read from; None when the VTree has
        no room for one (then the volume itself is read)."""
        try:
            return await self.volumes.snapshot(source.spec, source.array_id, view_uuid)
        except Conflict:
            return None

    async def _stage_image(self, array_id: str, image: Path, step: Progress) -> None:
        async with self.volumes.attached(array_id) as device:

            def make_image() -> None:
                fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    size = os.lseek(fd, 0, os.SEEK_END)
                finally:
                    os.close(fd)
                with open(image, "xb") as f:
                    f.truncate(size)

            await asyncio.to_thread(make_image)
            await copy_in_thread(device, image, target_zeroed=True, progress=step)

    # --- import -----------------------------------------------------------------------

    async def restore(
        self,
        target: VolumeSpec,
        snapshots: list[tuple[str, uuid.UUID]],
        archive: Path,
        members: set[str],
        staging: Path,
        progress: Progress | None = None,
    ) -> tuple[str, list[str]]:
        """Create the volume of ``target`` from ``archive`` (which holds ``members``) with
        ``snapshots`` (name and new UUID, oldest first); return the array IDs of the
        volume and its snapshots."""
        suffix = "" if target.is_filesystem else ".img"
        for name in [*(n for n, _ in snapshots), None]:
            if member_of(name) + suffix not in members:
                raise InvalidRequest(f"the backup has no {member_of(name) + suffix}")
        total = target.size * (len(snapshots) + 1)
        done = 0

        def step(offset: int, _: int) -> None:
            if progress is not None:
                progress(done + offset, total)

        made: list[str] = []
        try:
            async with Reverter() as revert:
                staging.mkdir(parents=True)
                vol_id = await self.volumes.create(target)
                revert.add(functools.partial(self.volumes.remove_quietly, vol_id), "volume")
                fresh = True
                for name, snap_uuid in snapshots:
                    await self._fill(target, vol_id, archive, member_of(name), staging, fresh, step)
                    fresh = False
                    done += target.size
                    made.append(await self.volumes.snapshot(target, vol_id, snap_uuid))
                    revert.add(functools.partial(self.volumes.remove_quietly, made[-1]), "snapshot")
                await self._fill(target, vol_id, archive, member_of(None), staging, fresh, step)
                revert.success()
        except CommandError as exc:
            raise DriverError(f"restore from backup failed: {exc}") from exc
        except PowerFlexError as exc:
            raise wrap("restore from backup", exc) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return vol_id, made

    async def _fill(
        self,
        spec: VolumeSpec,
        vol_id: str,
        archive: Path,
        member: str,
        staging: Path,
        fresh: bool,
        step: Progress,
    ) -> None:
        """Make the volume hold ``member`` of the archive, and nothing else."""
        if not spec.is_filesystem:
            image = await self.archives.extract_file(archive, member + ".img", staging)
            if not stat.S_ISREG(image.lstat().st_mode):
                # A link would make the volume a copy of whatever it points at on this host.
                image.unlink(missing_ok=True)
                raise InvalidRequest(f"{member}.img in the backup is not a regular file")
            try:
                async with self.volumes.attached(vol_id) as device:
                    await copy_in_thread(image, device, target_zeroed=fresh, progress=step)
            except ValueError as exc:  # the image is larger than the volume
                raise InvalidRequest(f"the backup does not fit the volume: {exc}") from exc
            finally:
                image.unlink(missing_ok=True)
            return
        where = staging / "mnt"
        await self.volumes.mount(spec, vol_id, where)
        try:
            if not fresh:
                await asyncio.to_thread(_empty, where)
            await self.archives.extract_tree(archive, member, where)
        finally:
            await self.volumes.unmount(vol_id, where)


def _empty(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
