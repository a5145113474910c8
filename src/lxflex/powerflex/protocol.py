"""Requests to the PowerFlex gateway, built without I/O.

Theory of operation: each gateway call is a pure function returning a :class:`Call`: the
method, the path, the JSON body, whether it may be retried, and how to read the answer.
The client (``client.py``) sends calls through a transport and applies authentication and
retries; nothing here touches the network, so every request shape is unit-testable.

Scalars in bodies are sent as strings, as the gateway's own clients do; the gateway
accepts both forms. Actions without parameters send ``{}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from .models import (
    Host,
    PoolStatistics,
    ProtectionDomain,
    RemoveMode,
    Sdt,
    SnapshotDef,
    SnapshotResult,
    StoragePool,
    System,
    Volume,
    VolumeType,
    decode,
)

T = TypeVar("T")

GIB = 1024**3
KIB = 1024


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One gateway request and the parser of its answer.

    ``idempotent`` calls (reads, and actions whose repetition changes nothing: unmap,
    remove, grow to a size, overwrite or refresh from a source) may be retried after a
    transport failure or a transient error answer; others are sent once. ``settled``
    holds the error codes that, answered to a retry, mean an earlier attempt whose answer
    was lost did the work (an unmap answered "not mapped", a removal "no such volume").
    """

    method: str
    path: str
    parse: Callable[[Any], T]
    body: Mapping[str, Any] | None = None
    idempotent: bool = False
    settled: frozenset[int] = frozenset()


# Answers to a retried action that mean the lost first attempt did the work.
_VOLUME_GONE = frozenset({79})
_NOT_MAPPED = frozenset({84, 4039})
_NOT_LARGER = frozenset({133})


def _seg(value: str) -> str:
    """Quote an ID for a path segment; IDs are hex, but never trust input into a URL."""
    return quote(value, safe="")


def _instance(kind: str, object_id: str) -> str:
    return f"/api/instances/{kind}::{_seg(object_id)}"


def _action(kind: str, object_id: str, action: str) -> str:
    return f"{_instance(kind, object_id)}/action/{action}"


def _ignore(_: Any) -> None:
    return None


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a JSON string, got {type(value).__name__}")
    return value


def _list_of(model: type[T]) -> Callable[[Any], list[T]]:
    def parse(value: Any) -> list[T]:
        return decode(value, list[model])  # type: ignore[valid-type]

    return parse


def _one(model: type[T]) -> Callable[[Any], T]:
    def parse(value: Any) -> T:
        return decode(value, model)

    return parse


def _created_id(value: Any) -> str:
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    raise TypeError("expected an object with an id")


# --- version and system ---------------------------------------------------------------


def version() -> Call[str]:
    return Call("GET", "/api/version", _string, idempotent=True)


def systems() -> Call[list[System]]:
    return Call("GET", "/api/types/System/instances", _list_of(System), idempotent=True)


# --- protection domains and pools -----------------------------------------------------


def protection_domain_id(name: str) -> Call[str]:
    return Call(
        "POST",
        "/api/types/ProtectionDomain/instances/action/queryIdByKey",
        _string,
        body={"name": name},
        idempotent=True,
    )


def protection_domain(pd_id: str) -> Call[ProtectionDomain]:
    return Call(
        "GET", _instance("ProtectionDomain", pd_id), _one(ProtectionDomain), idempotent=True
    )


def storage_pool_id(name: str, pd_id: str) -> Call[str]:
    return Call(
        "POST",
        "/api/types/StoragePool/instances/action/queryIdByKey",
        _string,
        body={"name": name, "protectionDomainId": pd_id},
        idempotent=True,
    )


def storage_pool(pool_id: str) -> Call[StoragePool]:
    return Call("GET", _instance("StoragePool", pool_id), _one(StoragePool), idempotent=True)


def storage_pools(pd_id: str) -> Call[list[StoragePool]]:
    return Call(
        "GET",
        f"{_instance('ProtectionDomain', pd_id)}/relationships/StoragePool",
        _list_of(StoragePool),
        idempotent=True,
    )


def pool_statistics(pool_id: str) -> Call[PoolStatistics]:
    return Call(
        "GET",
        f"{_instance('StoragePool', pool_id)}/relationships/Statistics",
        _one(PoolStatistics),
        idempotent=True,
    )


def sdts(pd_id: str) -> Call[list[Sdt]]:
    return Call(
        "GET",
        f"{_instance('ProtectionDomain', pd_id)}/relationships/Sdt",
        _list_of(Sdt),
        idempotent=True,
    )


# --- volumes --------------------------------------------------------------------------


def create_volume(
    pool_id: str, size_bytes: int, name: str | None = None, *, thin: bool = True
) -> Call[str]:
    """Create a volume of at least ``size_bytes``; the gateway rounds up to its granularity."""
    if size_bytes <= 0:
        raise ValueError("volume size must be positive")
    body: dict[str, str] = {
        "storagePoolId": pool_id,
        "volumeSizeInKb": str(-(-size_bytes // KIB)),
        "volumeType": (VolumeType.THIN if thin else VolumeType.THICK).value,
    }
    if name is not None:
        body["name"] = name
    return Call("POST", "/api/types/Volume/instances", _created_id, body=body)


def volume(volume_id: str) -> Call[Volume]:
    return Call("GET", _instance("Volume", volume_id), _one(Volume), idempotent=True)


def volume_id(name: str) -> Call[str]:
    return Call(
        "POST",
        "/api/types/Volume/instances/action/queryIdByKey",
        _string,
        body={"name": name},
        idempotent=True,
    )


def volumes_by_ids(ids: Iterable[str]) -> Call[list[Volume]]:
    return Call(
        "POST",
        "/api/types/Volume/instances/action/queryBySelectedIds",
        _list_of(Volume),
        body={"ids": list(ids)},
        idempotent=True,
    )


def pool_volumes(pool_id: str) -> Call[list[Volume]]:
    return Call(
        "GET",
        f"{_instance('StoragePool', pool_id)}/relationships/Volume",
        _list_of(Volume),
        idempotent=True,
    )


def vtree_volumes(vtree_id: str) -> Call[list[Volume]]:
    return Call(
        "GET",
        f"{_instance('VTree', vtree_id)}/relationships/Volume",
        _list_of(Volume),
        idempotent=True,
    )


def rename_volume(volume_id: str, new_name: str) -> Call[None]:
    return Call(
        "POST", _action("Volume", volume_id, "setVolumeName"), _ignore, body={"newName": new_name}
    )


def set_volume_size(volume_id: str, size_bytes: int) -> Call[None]:
    """Grow a volume to ``size_bytes``, which must be a whole number of GiB."""
    if size_bytes <= 0 or size_bytes % GIB:
        raise ValueError(f"size {size_bytes} is not a positive whole number of GiB")
    return Call(
        "POST",
        _action("Volume", volume_id, "setVolumeSize"),
        _ignore,
        body={"sizeInGB": str(size_bytes // GIB)},
        idempotent=True,
        settled=_NOT_LARGER,  # on a retry: the lost first attempt grew it
    )


def remove_volume(volume_id: str, mode: RemoveMode = RemoveMode.ONLY_ME) -> Call[None]:
    return Call(
        "POST",
        _action("Volume", volume_id, "removeVolume"),
        _ignore,
        body={"removeMode": mode.value},
        idempotent=True,
        settled=_VOLUME_GONE,
    )


def snapshot_volumes(
    defs: Iterable[SnapshotDef], *, read_only: bool = False
) -> Call[SnapshotResult]:
    snapshot_defs = _snapshot_defs(defs, "snapshotVolumes")
    return Call(
        "POST",
        "/api/instances/System/action/snapshotVolumes",
        _one(SnapshotResult),
        body={
            "snapshotDefs": snapshot_defs,
            "accessModeLimit": "ReadOnly" if read_only else "ReadWrite",
        },
    )


def _snapshot_defs(defs: Iterable[SnapshotDef], action: str) -> list[dict[str, str]]:
    found = [{"volumeId": d.volume_id, "snapshotName": d.name} for d in defs]
    if not found:
        raise ValueError(f"{action} needs at least one definition")
    return found


def create_snapshot(system_id: str, defs: Iterable[SnapshotDef]) -> Call[SnapshotResult]:
    """PowerFlex 5's snapshotVolumes: snapshots of several volumes as one set (no access
    mode: the parameter is illegal there)."""
    return Call(
        "POST",
        _action("System", system_id, "createSnapshot"),
        _one(SnapshotResult),
        body={"snapshotDefs": _snapshot_defs(defs, "createSnapshot")},
    )


def create_thin_clone(system_id: str, defs: Iterable[SnapshotDef]) -> Call[SnapshotResult]:
    """PowerFlex 5: new volumes sharing the blocks of a volume or snapshot (each in its
    source's VTree), one per definition."""
    return Call(
        "POST",
        _action("System", system_id, "createThinClone"),
        _one(SnapshotResult),
        body={"snapshotDefs": _snapshot_defs(defs, "createThinClone")},
    )


def refresh_volume(target_id: str, source_id: str) -> Call[None]:
    """PowerFlex 5: replace a volume's content with that of another volume or snapshot of
    the same VTree (a thin clone included)."""
    return Call(
        "POST",
        _action("Volume", target_id, "refresh"),
        _ignore,
        body={"srcVolumeId": source_id},
        idempotent=True,
    )


def overwrite_volume_content(target_id: str, source_id: str) -> Call[None]:
    return Call(
        "POST",
        _action("Volume", target_id, "overwriteVolumeContent"),
        _ignore,
        body={"srcVolumeId": source_id},
        idempotent=True,
    )


# --- mappings -------------------------------------------------------------------------


def add_mapped_host(
    volume_id: str, host_id: str, *, allow_multiple: bool = False, read_only: bool = False
) -> Call[None]:
    return Call(
        "POST",
        _action("Volume", volume_id, "addMappedHost"),
        _ignore,
        body={
            "hostId": host_id,
            "allowMultipleMappings": "TRUE" if allow_multiple else "FALSE",
            "accessMode": "ReadOnly" if read_only else "ReadWrite",
        },
    )


def remove_mapped_host(volume_id: str, host_id: str | None = None) -> Call[None]:
    """Unmap one host, or every host when ``host_id`` is None."""
    body = {"hostId": host_id} if host_id is not None else {"allHosts": ""}
    return _unmapping(volume_id, "removeMappedHost", body)


def _unmapping(volume_id: str, action: str, body: Mapping[str, str]) -> Call[None]:
    """An unmap action: safe to repeat, and "not mapped" answered to a retry is done."""
    return Call(
        "POST",
        _action("Volume", volume_id, action),
        _ignore,
        body=body,
        idempotent=True,
        settled=_NOT_MAPPED,
    )


def add_mapped_sdc(
    volume_id: str,
    *,
    sdc_id: str | None = None,
    guid: str | None = None,
    allow_multiple: bool = False,
    read_only: bool = False,
) -> Call[None]:
    if (sdc_id is None) == (guid is None):
        raise ValueError("give exactly one of sdc_id and guid")
    body: dict[str, str] = {
        "allowMultipleMappings": "TRUE" if allow_multiple else "FALSE",
        "accessMode": "ReadOnly" if read_only else "ReadWrite",
    }
    if sdc_id is not None:
        body["sdcId"] = sdc_id
    else:
        body["guid"] = str(guid)
    return Call("POST", _action("Volume", volume_id, "addMappedSdc"), _ignore, body=body)


def remove_mapped_sdc(
    volume_id: str, *, sdc_id: str | None = None, guid: str | None = None
) -> Call[None]:
    """Unmap one SDC (by ID or GUID), or every SDC when neither is given."""
    if sdc_id is not None and guid is not None:
        raise ValueError("give at most one of sdc_id and guid")
    body: dict[str, str]
    if sdc_id is not None:
        body = {"sdcId": sdc_id}
    elif guid is not None:
        body = {"guid": guid}
    else:
        body = {"allSdcs": ""}
    return _unmapping(volume_id, "removeMappedSdc", body)


# --- hosts, SDCs ----------------------------------------------------------------------


def create_nvme_host(nqn: str, name: str | None = None) -> Call[str]:
    body = {"nqn": nqn}
    if name is not None:
        body["name"] = name
    return Call("POST", "/api/types/Host/instances", _created_id, body=body)


def hosts() -> Call[list[Host]]:
    """Every SDC and NVMe host of the system."""
    return Call("GET", "/api/types/Sdc/instances", _list_of(Host), idempotent=True)


def host(host_id: str) -> Call[Host]:
    return Call("GET", _instance("Sdc", host_id), _one(Host), idempotent=True)


def host_volumes(host_id: str) -> Call[list[Volume]]:
    """The volumes mapped to an SDC or NVMe host."""
    return Call(
        "GET",
        f"{_instance('Sdc', host_id)}/relationships/Volume",
        _list_of(Volume),
        idempotent=True,
    )


def remove_host(host_id: str) -> Call[None]:
    return Call("POST", _action("Sdc", host_id, "removeSdc"), _ignore, body={})


# --- logins ---------------------------------------------------------------------------


def logout_v4(refresh_token: str) -> Call[None]:
    return Call("POST", "/rest/auth/logout", _ignore, body={"refresh_token": refresh_token})


def logout_v3() -> Call[None]:
    return Call("GET", "/api/logout", _ignore)
