"""The simulated array's objects, as plain dataclasses, and the value rules of requests
(names, numbers, flags) the MDM applies to them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import errors as e

GIB_KB = 1024 * 1024
MAX_SIZE_GB = 1024 * 1024
NAME_MAX = 31
_NAME_CHARS = re.compile(r"^[\x21-\x7e]+$")


@dataclass
class ProtectionDomain:
    id: str
    name: str


@dataclass
class StoragePool:
    id: str
    name: str
    pd_id: str
    zero_padding: bool
    capacity_gb: int
    data_layout: str = "MediumGranularity"
    over_provisioning: int = 10


@dataclass
class Sdt:
    id: str
    name: str
    pd_id: str
    ips: list[dict[str, str]]
    nvme_port: int = 4420
    discovery_port: int = 8009
    storage_port: int = 12200


@dataclass
class Host:
    """An SDC (``SdcHost``) or an NVMe host (``NVMeHost``)."""

    id: str
    kind: str
    name: str | None = None
    nqn: str | None = None
    guid: str | None = None
    ip: str | None = None
    max_num_paths: int = 4
    max_num_sys_ports: int = 10


@dataclass
class Mapping:
    host_id: str
    access_mode: str = "ReadWrite"


@dataclass
class Volume:
    id: str
    name: str | None
    size_kb: int
    pool_id: str
    vtree_id: str
    volume_type: str
    ancestor_id: str | None = None
    creation_time: int = 0
    mappings: list[Mapping] = field(default_factory=list)
    consistency_group_id: str | None = None
    access_mode_limit: str = "ReadWrite"
    nsid: int | None = None


@dataclass
class VTree:
    id: str
    pool_id: str
    base_volume_id: str


def as_flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int):
        return value != 0
    return False


def as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise e.illegal(f"{what} must be a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise e.illegal(f"{what} must be a number")


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise e.illegal("name must be a non-empty string")
    if len(name) > NAME_MAX:
        raise e.name_too_long()
    if not _NAME_CHARS.match(name):
        raise e.name_invalid()
    return name
