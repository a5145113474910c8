"""Copies of a volume (and of its snapshots) into a new volume of the same array.

Three ways, chosen by the pool's ``clone_copy`` (LXD's ``snapshot_copy``, inverted) and
the array's generation:

- on this host (``clone_copy`` on, the default): a new volume in its own VTree, filled by
  a sparse-aware block copy; the snapshots first, oldest first, each followed by a
  snapshot of the target. The copy shares nothing with its source, so the VTree limit
  never bites its instances;
- by one array snapshot (``clone_copy`` off, PowerFlex 4, no snapshots to copy): the
  snapshot becomes the new volume, in its source's VTree;
- on the array (``clone_copy`` off, PowerFlex 5): a thin clone of the oldest snapshot (or
  of the volume) becomes the new volume, then each later snapshot and finally the volume
  itself are copied into it with ``refresh``, the target snapshotted after each step. No
  block crosses the host, and the copy stays in the source's VTree.

On this host, a filesystem volume that was cleanly unmounted is copied as far as its
filesystem uses it: the ranges its own maps of free space leave (ext4 and XFS; see
:meth:`~lxflex.host.fs.Filesystems.used_ranges`), onto a fresh target or one an earlier
step (or a refresh) wrote, whose other blocks are free space to the copied filesystem.
Anything else (btrfs, a snapshot of a mounted filesystem) takes the sparse block copy,
which reads every block. A filesystem copy
gets a new filesystem UUID at each step, so that the copy and its
source (and their snapshots) can be mounted side by side (XFS refuses a second mount of
one UUID; btrfs would confuse the devices). Whatever way, a failure removes every part of
the copy made so far.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from ..host.copy import copy_in_thread
from ..powerflex import SnapshotDef
from .spec import CopyPlan, CopyResult, Progress, wrap

if TYPE_CHECKING:
    from .volumes import PowerFlexVolumes

__all__ = ["StepProgress", "copy_content", "copy_volume", "new_identity"]

log = logging.getLogger("lxflex.driver")


async def copy_volume(
    volumes: PowerFlexVolumes, plan: CopyPlan, progress: Progress | None = None
) -> CopyResult:
    if not volumes.clone_copy and volumes.gen2:
        return await _copy_on_array(volumes, plan)
    if not volumes.clone_copy and not plan.snapshot_ids:
        return await _copy_by_snapshot(volumes, plan)
    return await _copy_on_host(volumes, plan, progress)


@asynccontextmanager
async def _undone_on_failure(volumes: PowerFlexVolumes, made: list[str]) -> AsyncIterator[None]:
    """On a failure in the block, remove what the copy made (newest first)."""
    try:
        yield
    except BaseException as exc:
        for vol_id in reversed(made):
            await volumes.remove_quietly(vol_id)
        if isinstance(exc, Exception):
            raise wrap("copy", exc) from exc
        raise


class StepProgress:
    """Progress over the steps of a copy, in bytes of data. A step counts as its source's
    size until its copy knows what it will read (for a clean filesystem, the blocks it
    uses), then as that: the total is exact for the steps done and the one under way."""

    def __init__(self, sizes: Sequence[int], progress: Progress | None) -> None:
        self._sizes, self._progress = list(sizes), progress
        self._index = self._done = 0

    def step(self, offset: int, total: int) -> None:
        """The progress of the step under way, as its copy reports it."""
        self._sizes[self._index] = total
        if self._progress is not None:
            self._progress(self._done + offset, sum(self._sizes))

    def next(self) -> None:
        self._done += self._sizes[self._index]
        self._index += 1


async def _copy_on_host(
    volumes: PowerFlexVolumes, plan: CopyPlan, progress: Progress | None
) -> CopyResult:
    steps = plan.steps()
    counted = StepProgress([size for *_, size in steps], progress)
    target_id = await volumes.new_volume(plan.target, steps[0][2])
    made = [target_id]
    written = 0
    async with _undone_on_failure(volumes, made):
        fresh = True
        for source_id, snap_uuid, recorded in steps:
            size = recorded
            if not plan.target.is_filesystem:
                # All of a block source is copied, and it may be larger on the array than
                # recorded (a grow cut short after the array grew): so is the target then,
                # its row telling the same (repair finishes both grows).
                size = max(recorded, (await volumes.client.volume(source_id)).size_bytes)
            await _grow_array(volumes, target_id, size)
            written += await copy_content(volumes, plan, source_id, target_id, fresh, counted.step)
            fresh = False
            counted.next()
            if snap_uuid is not None:
                made.append(await volumes.snapshot(plan.target, target_id, snap_uuid))
        await _grow_to_target(volumes, plan, target_id)
    return CopyResult(target_id, made[1:], written)


async def _grow_array(volumes: PowerFlexVolumes, vol_id: str, size: int) -> None:
    """Grow the array volume (not its filesystem) to at least ``size``, rounded up."""
    wanted = volumes.rounded(size)
    if (await volumes.client.volume(vol_id)).size_bytes < wanted:
        await volumes.client.set_volume_size(vol_id, wanted)


async def copy_content(
    volumes: PowerFlexVolumes,
    plan: CopyPlan,
    source_id: str,
    target_id: str,
    fresh: bool,
    step: Progress,
) -> int:
    async with volumes.attached(source_id) as src, volumes.attached(target_id) as dst:
        ranges = None
        if plan.target.is_filesystem:
            ranges = await volumes.fs.used_ranges(src, plan.source.filesystem)
        if ranges is not None:
            # Only what the filesystem uses: the rest of the target is free space to the
            # copied filesystem, whatever it holds (zeros on a fresh target, else what an
            # earlier step of this copy, or the target's past, left).
            result = await copy_in_thread(
                src, dst, target_zeroed=fresh, progress=step, ranges=ranges
            )
            log.info("copied %s: only the %d bytes its filesystem uses", source_id, result.total)
        else:
            # The whole source: an older snapshot may be smaller than the volume is now;
            # the target is at least as large as the largest.
            result = await copy_in_thread(src, dst, target_zeroed=fresh, progress=step)
        if plan.target.is_filesystem:
            await volumes.fs.new_identity(dst, plan.target.filesystem)
    return result.written


async def new_identity(volumes: PowerFlexVolumes, plan: CopyPlan, target_id: str) -> None:
    if plan.target.is_filesystem:
        async with volumes.attached(target_id) as dst:
            await volumes.fs.new_identity(dst, plan.target.filesystem)


async def _grow_to_target(volumes: PowerFlexVolumes, plan: CopyPlan, target_id: str) -> None:
    """A copy asked larger than its source grows to its size (and its filesystem too)."""
    if volumes.rounded(plan.target.size) > volumes.rounded(plan.source.size):
        await _grow_array(volumes, target_id, plan.target.size)
        if plan.target.is_filesystem:
            await volumes.grow_filesystem(
                plan.target, target_id, volumes.rounded(plan.target.size), None
            )


async def _copy_by_snapshot(volumes: PowerFlexVolumes, plan: CopyPlan) -> CopyResult:
    try:
        result = await volumes.client.snapshot_volumes(
            [SnapshotDef(plan.source_id, volumes.array_name(plan.target))]
        )
    except Exception as exc:
        raise wrap("copy", exc) from exc
    target_id = result.volume_id_list[0]
    async with _undone_on_failure(volumes, [target_id]):
        if plan.target.size > plan.source.size:
            await volumes.resize(plan.target, target_id, plan.target.size)
        await new_identity(volumes, plan, target_id)
    return CopyResult(target_id, [], 0)


async def _copy_on_array(volumes: PowerFlexVolumes, plan: CopyPlan) -> CopyResult:
    client, system_id = volumes.client, volumes.pool.system_id
    made: list[str] = []
    async with _undone_on_failure(volumes, made):
        for source_id, snap_uuid, size in plan.steps():
            if not made:
                name = volumes.array_name(plan.target)
                result = await client.create_thin_clone(system_id, [SnapshotDef(source_id, name)])
                made.append(result.volume_id_list[0])
            else:
                # A later source may be larger (a volume only grows): the target first
                # takes its size, so each snapshot of it has its source's size.
                await _grow_array(volumes, made[0], size)
                await client.refresh_volume(made[0], source_id)
            await new_identity(volumes, plan, made[0])
            if snap_uuid is not None:
                made.append(await volumes.snapshot(plan.target, made[0], snap_uuid))
        await _grow_to_target(volumes, plan, made[0])
    return CopyResult(made[0], made[1:], 0)
