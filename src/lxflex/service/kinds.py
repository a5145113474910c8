"""The kinds of volume the service keeps, and what differs between them.

A custom volume (the operator's; filesystem or block, chosen at creation), a
container's volume (a filesystem) and a virtual machine's (a block root disk with a
filesystem twin) live in the same table, locked, found and mounted by the same rules;
what differs is written here once: the content a kind is bound to, the directory its
mounts live in (as LXD names them under a pool) and how messages name one.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..driver import Content, InvalidRequest, VolumeType

__all__ = ["CONTAINER", "CUSTOM", "INSTANCE_KINDS", "KINDS", "VIRTUAL_MACHINE", "Kind", "kind_of"]


@dataclass(frozen=True)
class Kind:
    type: VolumeType
    directory: str  # of its mounts, under the pool's mount directory
    noun: str  # "storage volume 'x' not found"
    content: Content | None = None  # the content every volume of the kind has

    @property
    def name(self) -> str:
        """The type as rows, URLs and locks spell it."""
        return self.type.value

    def lock_key(self, name: str) -> str:
        """The key of a volume's lock: custom volumes by name, others by type and name
        (no volume name holds a slash, so the two never meet)."""
        return name if self is CUSTOM else f"{self.name}/{name}"


CUSTOM = Kind(VolumeType.CUSTOM, "custom", "storage volume")
CONTAINER = Kind(VolumeType.CONTAINER, "containers", "container volume", Content.FILESYSTEM)
VIRTUAL_MACHINE = Kind(
    VolumeType.VIRTUAL_MACHINE, "virtual-machines", "virtual-machine volume", Content.BLOCK
)
KINDS = {k.name: k for k in (CUSTOM, CONTAINER, VIRTUAL_MACHINE)}
INSTANCE_KINDS = (CONTAINER, VIRTUAL_MACHINE)


def kind_of(volume_type: str) -> Kind:
    """The kind of a volume type; an unknown one is refused."""
    try:
        return KINDS[volume_type]
    except KeyError:
        raise InvalidRequest(f"volume type {volume_type!r}: {', '.join(KINDS)}") from None
