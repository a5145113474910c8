"""Refreshing a copy: an existing target brought up to its source, keeping its identity.

The plan's snapshots are the source snapshots the target lacks, oldest first. Each is
written into the target, and the target is snapshotted after it; then the source volume
itself is written into the target. Writing is done on the array (``overwriteVolumeContent``)
when source and target share a VTree, else by the sparse-aware block copy on this host,
which also clears what the target held where the source holds zeros.

All or nothing: before anything is written, the target is snapshotted (a guard, named
from ``guard_uuid`` so the caller can journal it). A failure puts the guard's content back
into the target and removes the snapshots this refresh made, and the guard goes. If the
target cannot be put back, the guard is kept (:class:`GuardKept`): it is then the only
copy of the target's content.
A target that had to grow for a larger source snapshot stays grown (PowerFlex cannot
shrink), which ``storage check`` then reports and finishes as a grow.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .copies import StepProgress, copy_content, new_identity
from .errors import DriverError
from .spec import CopyPlan, Progress, wrap

if TYPE_CHECKING:
    from .volumes import PowerFlexVolumes

__all__ = ["GuardKept", "RefreshPlan", "refresh_volume"]


class GuardKept(DriverError):
    """A refresh failed and the target could not be put back: its content before the
    refresh is in the guard snapshot ``guard_id``, which was kept."""

    status = 503  # the array refused: the client can do nothing but what the error says

    def __init__(self, guard_id: str, message: str) -> None:
        super().__init__(message)
        self.guard_id = guard_id


@dataclass(frozen=True)
class RefreshPlan:
    """What to write into which target: ``copy`` as for a new copy (its target spec is
    the target's own), the target's array ID, and the UUID the guard snapshot is named
    from."""

    copy: CopyPlan
    target_id: str
    guard_uuid: uuid.UUID


async def refresh_volume(
    volumes: PowerFlexVolumes, plan: RefreshPlan, progress: Progress | None = None
) -> list[str]:
    """Run the refresh; return the array IDs of the target's new snapshots, oldest
    first."""
    copy, target_id = plan.copy, plan.target_id
    steps = copy.steps()
    counted = StepProgress([size for *_, size in steps], progress)
    try:
        guard = await volumes.snapshot(copy.target, target_id, plan.guard_uuid)
    except Exception as exc:
        raise wrap("refresh", exc) from exc
    made: list[str] = []
    try:
        on_array, current = await _same_vtree(volumes, copy.source_id, target_id)
        for source_id, snap_uuid, size in steps:
            if volumes.rounded(size) > current:  # one look at the target, then tracked
                current = volumes.rounded(size)
                await volumes.client.set_volume_size(target_id, current)
            if on_array:
                await volumes.client.overwrite_volume_content(target_id, source_id)
                await new_identity(volumes, copy, target_id)
            else:  # over the target's old data: what the source lacks is cleared
                await copy_content(volumes, copy, source_id, target_id, False, counted.step)
            counted.next()
            if snap_uuid is not None:
                made.append(await volumes.snapshot(copy.target, target_id, snap_uuid))
        if copy.target.is_filesystem and current > volumes.rounded(copy.source.size):
            await volumes.grow_filesystem(copy.target, target_id, current, None)
    except BaseException as exc:
        for snap_id in reversed(made):
            await volumes.remove_quietly(snap_id)
        try:
            await volumes.client.overwrite_volume_content(target_id, guard)
        except Exception as put_back:
            # The guard holds the target's only good content now: it must stay.
            raise GuardKept(
                guard, f"refresh: {exc}; putting the target back failed too: {put_back}"
            ) from exc
        await volumes.remove_quietly(guard)
        if isinstance(exc, Exception):
            raise wrap("refresh", exc) from exc
        raise
    await volumes.remove_quietly(guard)
    return made


async def _same_vtree(
    volumes: PowerFlexVolumes, source_id: str, target_id: str
) -> tuple[bool, int]:
    """Whether source and target share a VTree, and the target's size (one request)."""
    found = {v.id: v for v in await volumes.client.volumes([source_id, target_id])}
    source, target = found[source_id], found[target_id]
    return source.vtree_id == target.vtree_id, target.size_bytes
