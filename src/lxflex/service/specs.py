"""From a stored volume config to what the driver needs to know of the volume."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from ..driver import Content, PoolDriver, VolumeSpec, VolumeType, parse_size

__all__ = ["array_names", "snapshot_names", "spec_of"]


def spec_of(content: str, config: Mapping[str, str], volume_type: str = "custom") -> VolumeSpec:
    """The spec of a volume (or snapshot) of ``content`` with this config."""
    return VolumeSpec(
        uuid=uuid.UUID(config["volatile.uuid"]),
        volume_type=VolumeType(volume_type),
        content=Content(content),
        size=parse_size(config.get("size", "0")),
        thin=config.get("block.type", "thin") != "thick",
        filesystem=config.get("block.filesystem", "ext4"),
        mount_options=config.get("block.mount_options", "discard"),
    )


def array_names(
    runtime: PoolDriver,
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


def snapshot_names(
    runtime: PoolDriver, volume_type: str, content: str, uuids: Iterable[uuid.UUID]
) -> list[str]:
    """The array names the snapshots of these UUIDs will have (what a journal entry
    made before them names)."""
    return [
        name
        for snap_uuid in uuids
        for name in array_names(runtime, volume_type, content, {"volatile.uuid": str(snap_uuid)})
    ]
