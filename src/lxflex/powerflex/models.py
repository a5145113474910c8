"""Typed views of the gateway's JSON objects.

Only the fields lxflex reads are declared; every other field is ignored on decode, so a
newer gateway that adds fields keeps working. Numbers and booleans are accepted as strings
too (the gateway and its clients send ``"8388608"`` and ``"TRUE"``). Sizes are KiB on the
wire, as PowerFlex names them ``...InKb``; :attr:`Volume.size_bytes` converts.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

import msgspec

__all__ = [
    "Host",
    "HostType",
    "MappedHost",
    "PoolStatistics",
    "ProtectionDomain",
    "RemoveMode",
    "Sdt",
    "SdtIp",
    "SnapshotDef",
    "SnapshotResult",
    "StoragePool",
    "System",
    "Volume",
    "VolumeType",
    "decode",
]

KIB = 1024
GIB = 1024**3


class _Model(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    """Base of the gateway objects: camelCase on the wire, snake_case in Python."""


class VolumeType(enum.StrEnum):
    THIN = "ThinProvisioned"
    THICK = "ThickProvisioned"
    SNAPSHOT = "Snapshot"
    THIN_CLONE = "ThinClone"  # PowerFlex 5: a volume sharing the blocks of its ancestor


class RemoveMode(enum.StrEnum):
    """removeVolume modes: which members of the VTree go with the addressed volume."""

    ONLY_ME = "ONLY_ME"
    INCLUDING_DESCENDANTS = "INCLUDING_DESCENDANTS"
    DESCENDANTS_ONLY = "DESCENDANTS_ONLY"
    WHOLE_VTREE = "WHOLE_VTREE"


class HostType(enum.StrEnum):
    SDC = "SdcHost"
    NVME = "NVMeHost"


class System(_Model, frozen=True, kw_only=True):
    id: str
    name: str | None = None
    system_version_name: str | None = None
    system_nqn: str | None = None


class ProtectionDomain(_Model, frozen=True, kw_only=True):
    id: str
    name: str | None = None
    system_id: str | None = None
    protection_domain_state: str | None = None
    gen_type: str | None = None


class StoragePool(_Model, frozen=True, kw_only=True):
    id: str
    name: str | None = None
    protection_domain_id: str
    zero_padding_enabled: bool = False
    data_layout: str | None = None


class PoolStatistics(_Model, frozen=True, kw_only=True):
    """Capacity figures of a storage pool, in KiB (despite the ``Kb`` suffix)."""

    max_capacity_in_kb: int = 0
    capacity_limit_in_kb: int = 0
    capacity_in_use_in_kb: int = 0
    net_capacity_in_use_in_kb: int = 0
    net_unused_capacity_in_kb: int = 0
    thick_capacity_in_use_in_kb: int = 0
    thin_capacity_allocated_in_kb: int = 0
    snapshot_capacity_in_kb: int = 0
    capacity_available_for_volume_allocation_in_kb: int = 0
    num_of_volumes: int = 0
    num_of_vtrees: int = 0

    @property
    def total_bytes(self) -> int:
        """Usable capacity as LXD reports it: net in use plus net unused."""
        return (self.net_capacity_in_use_in_kb + self.net_unused_capacity_in_kb) * KIB

    @property
    def used_bytes(self) -> int:
        return self.net_capacity_in_use_in_kb * KIB


class MappedHost(_Model, frozen=True, kw_only=True):
    """One entry of a volume's ``mappedSdcInfo``: an SDC or an NVMe host."""

    sdc_id: str
    sdc_ip: str | None = None
    sdc_name: str | None = None
    access_mode: str | None = None
    nqn: str | None = None
    host_type: str | None = None


class Volume(_Model, frozen=True, kw_only=True):
    id: str
    name: str | None = None
    size_in_kb: int
    storage_pool_id: str
    vtree_id: str
    ancestor_volume_id: str | None = None
    volume_type: VolumeType
    creation_time: int = 0
    mapped_sdc_info: list[MappedHost] | None = None
    consistency_group_id: str | None = None
    nsid: int | None = None

    @property
    def size_bytes(self) -> int:
        return self.size_in_kb * KIB

    @property
    def is_snapshot(self) -> bool:
        return self.volume_type is VolumeType.SNAPSHOT

    @property
    def mapped_host_ids(self) -> frozenset[str]:
        return frozenset(m.sdc_id for m in self.mapped_sdc_info or ())


class Host(_Model, frozen=True, kw_only=True):
    """An SDC or an NVMe host; the gateway lists both under ``Sdc``."""

    id: str
    name: str | None = None
    host_type: str | None = None
    sdc_guid: str | None = None
    sdc_ip: str | None = None
    nqn: str | None = None
    system_id: str | None = None


class SdtIp(_Model, frozen=True, kw_only=True):
    ip: str
    role: str

    @property
    def faces_hosts(self) -> bool:
        """True for the roles a host connects to (HostOnly, StorageAndHost)."""
        return self.role in ("HostOnly", "StorageAndHost")


class Sdt(_Model, frozen=True, kw_only=True):
    id: str
    name: str | None = None
    ip_list: list[SdtIp] = msgspec.field(default_factory=list)
    protection_domain_id: str | None = None
    nvme_port: int = 4420
    discovery_port: int = 8009
    storage_port: int = 12200
    sdt_state: str | None = None
    maintenance_state: str | None = None

    @property
    def host_ips(self) -> list[str]:
        return [entry.ip for entry in self.ip_list if entry.faces_hosts]


class SnapshotDef(msgspec.Struct, frozen=True):
    """One snapshot to take in a snapshotVolumes call."""

    volume_id: str
    name: str


class SnapshotResult(_Model, frozen=True, kw_only=True):
    volume_id_list: list[str]
    snapshot_group_id: str | None = None


_T = TypeVar("_T")


def decode(value: Any, model: type[_T]) -> _T:
    """Convert decoded JSON into ``model``; raise :class:`msgspec.ValidationError` if it cannot."""
    return msgspec.convert(value, type=model, strict=False)
