"""The driver's vocabulary: what a volume is to it, what a copy is, and how failures of
the layers below become driver errors."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ..host.runner import CommandError
from ..powerflex import (
    CapacityError,
    InvalidSizeError,
    PowerFlexError,
    TooManySnapshotsError,
    VolumeMappedError,
    VolumeNotFoundError,
)
from .errors import (
    Conflict,
    DriverError,
    InsufficientSpace,
    InvalidRequest,
    NotFound,
    Unavailable,
)
from .naming import Content, VolumeType

__all__ = ["CopyPlan", "CopyResult", "Progress", "VolumeSpec", "wrap"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class VolumeSpec:
    """What the driver needs to know of a volume (or snapshot)."""

    uuid: uuid.UUID
    volume_type: VolumeType
    content: Content
    size: int
    thin: bool = True
    filesystem: str = "ext4"
    mount_options: str = "discard"

    @property
    def is_filesystem(self) -> bool:
        return self.content is Content.FILESYSTEM


def wrap(action: str, exc: Exception) -> DriverError:
    """A driver error for a gateway or host failure during ``action``."""
    if isinstance(exc, DriverError):
        return exc
    if isinstance(exc, VolumeNotFoundError):
        return NotFound(f"{action}: the volume no longer exists on the array")
    if isinstance(exc, InvalidSizeError):
        return InvalidRequest(f"{action}: {exc.message}")
    if isinstance(exc, TooManySnapshotsError | VolumeMappedError):
        return Conflict(f"{action}: {exc.message}")
    if isinstance(exc, CapacityError):
        return InsufficientSpace(f"{action}: the storage pool has not the space ({exc.message})")
    if isinstance(exc, PowerFlexError):
        return Unavailable(f"{action}: {exc}")
    if isinstance(exc, CommandError | TimeoutError | OSError):
        return Unavailable(f"{action}: {exc}")
    return DriverError(f"{action}: {exc}")


@dataclass(frozen=True)
class CopyPlan:
    """A copy: the source's array IDs (snapshots oldest first) and the target's UUIDs.

    ``snapshot_sizes`` are the snapshots' sizes (a volume grows, so an older snapshot may
    be smaller than the volume); each copy of a snapshot gets its source's size. Without
    them, every snapshot is taken to be as large as the source volume.
    """

    source: VolumeSpec
    source_id: str
    target: VolumeSpec
    snapshot_ids: list[str] = field(default_factory=list)
    target_snapshot_uuids: list[uuid.UUID] = field(default_factory=list)
    snapshot_sizes: list[int] = field(default_factory=list)

    def steps(self) -> list[tuple[str, uuid.UUID | None, int]]:
        """(source ID, target snapshot UUID or None for the volume itself, source size)
        of each step of the copy, oldest first."""
        sizes = self.snapshot_sizes or [self.source.size] * len(self.snapshot_ids)
        snaps = zip(self.snapshot_ids, self.target_snapshot_uuids, sizes, strict=True)
        return [*((i, u, size) for i, u, size in snaps), (self.source_id, None, self.source.size)]


@dataclass(frozen=True)
class CopyResult:
    volume_id: str
    snapshot_ids: list[str]
    bytes_written: int
