"""From a stored volume config to what the driver needs to know of the volume."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from ..driver.naming import Content, VolumeType
from ..driver.units import parse_size
from ..driver.volumes import VolumeSpec

__all__ = ["spec_of"]


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
