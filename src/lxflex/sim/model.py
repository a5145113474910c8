"""The simulated array: the rules the MDM enforces, and persistence.

Theory of operation: :class:`Array` holds every object (the dataclasses of
``objects.py``) and exposes one method per gateway operation. A method validates
everything first and raises
:class:`~lxflex.sim.errors.SimError` before changing anything, so a refused request leaves
no trace; then it changes the objects and the backing files. The HTTP layer (``app.py``)
parses requests, calls these methods and renders objects with ``views.py``; the state is
saved to ``state.json`` after each change.

Generations: API major 3 uses the legacy mapping codes (81/84), 4 and up the new ones
(4037/4039) and NVMe namespace IDs; major 5 sizes volumes in 1 GiB steps and allows 1022
snapshots per volume family instead of 126 per VTree.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import msgspec

from . import errors as e
from .clock import Clock
from .data import DataStore
from .objects import (
    GIB_KB,
    MAX_SIZE_GB,
    Host,
    Mapping,
    ProtectionDomain,
    Sdt,
    StoragePool,
    Volume,
    VTree,
    as_flag,
    as_int,
    check_name,
)

__all__ = ["GIB_KB", "Array", "Host", "Sdt", "StoragePool", "VTree", "Volume", "check_name"]


class Array:
    """One simulated PowerFlex system. Not thread-safe: call from one event loop."""

    def __init__(self, api_version: str, data: DataStore, clock: Clock) -> None:
        self.api_version = api_version
        self.data = data
        self.clock = clock  # creation times
        self.system_id = secrets.token_hex(8)
        self.system_name = "lxflex-sim"
        self.install_id = secrets.token_hex(8)
        self._prefix: dict[str, str] = {}
        self._counter = 0
        self._nsid = 0
        self.pds: dict[str, ProtectionDomain] = {}
        self.pools: dict[str, StoragePool] = {}
        self.sdts: dict[str, Sdt] = {}
        self.hosts: dict[str, Host] = {}
        self.volumes: dict[str, Volume] = {}
        self.vtrees: dict[str, VTree] = {}
        # Indexes kept by _add_volume and _drop_volume, so that a create among thousands
        # of volumes does not scan them all: volume name -> ID, and per pool the KiB
        # provisioned by thin (non-snapshot) volumes.
        self._names: dict[str, str] = {}
        self._thin_kb: dict[str, int] = {}

    # --- generation rules -------------------------------------------------------------

    @property
    def major(self) -> int:
        return int(self.api_version.split(".")[0])

    @property
    def legacy(self) -> bool:
        return self.major < 4

    @property
    def granularity_gb(self) -> int:
        return 1 if self.major >= 5 else 8

    @property
    def snapshot_limit(self) -> int:
        return 1022 if self.major >= 5 else 126

    # --- ids and topology -------------------------------------------------------------

    def new_id(self, kind: str) -> str:
        prefix = self._prefix.setdefault(kind, secrets.token_hex(4))
        self._counter += 1
        return f"{prefix}{self._counter:08x}"

    def load_topology(self, topo: dict[str, Any]) -> None:
        self.system_name = str(topo.get("system", {}).get("name", self.system_name))
        for pd_doc in topo["protection_domains"]:
            pd = ProtectionDomain(self.new_id("pd"), str(pd_doc["name"]))
            self.pds[pd.id] = pd
            for sp in pd_doc.get("storage_pools", []):
                pool = StoragePool(
                    self.new_id("sp"),
                    str(sp["name"]),
                    pd.id,
                    bool(sp.get("zero_padding", True)),
                    int(sp.get("capacity_gb", 4096)),
                    str(sp.get("data_layout", "MediumGranularity")),
                    int(sp.get("over_provisioning", 10)),
                )
                self.pools[pool.id] = pool
            for sdt_doc in pd_doc.get("sdts", []):
                sdt = Sdt(
                    self.new_id("sdt"),
                    str(sdt_doc["name"]),
                    pd.id,
                    [{"ip": str(i["ip"]), "role": str(i["role"])} for i in sdt_doc["ips"]],
                    int(sdt_doc.get("nvme_port", 4420)),
                    int(sdt_doc.get("discovery_port", 8009)),
                )
                self.sdts[sdt.id] = sdt
        for sdc in topo.get("sdcs", []):
            guid = str(sdc.get("guid") or uuid.uuid4()).upper()
            host = Host(self.new_id("sdc"), "SdcHost", sdc.get("name"), guid=guid, ip=sdc.get("ip"))
            self.hosts[host.id] = host

    # --- lookups ----------------------------------------------------------------------

    def volume(self, volume_id: str) -> Volume:
        vol = self.volumes.get(volume_id)
        if vol is None:
            raise e.not_found_volume()
        return vol

    def volume_id_by_name(self, name: str) -> str:
        for vol in self.volumes.values():
            if vol.name == name:
                return vol.id
        raise e.not_found_volume()

    def pd(self, pd_id: str) -> ProtectionDomain:
        pd = self.pds.get(pd_id)
        if pd is None:
            raise e.not_found_pd()
        return pd

    def pd_id_by_name(self, name: str) -> str:
        for pd in self.pds.values():
            if pd.name == name:
                return pd.id
        raise e.not_found_pd()

    def pool(self, pool_id: str) -> StoragePool:
        pool = self.pools.get(pool_id)
        if pool is None:
            raise e.not_found_pool()
        return pool

    def pool_id_by_name(self, name: str, pd_id: str | None) -> str:
        for pool in self.pools.values():
            if pool.name == name and (pd_id is None or pool.pd_id == pd_id):
                return pool.id
        raise e.not_found_pool()

    def host(self, host_id: str) -> Host:
        host = self.hosts.get(host_id)
        if host is None:
            raise e.not_found_host()
        return host

    def sdc(self, sdc_id: str | None = None, guid: str | None = None) -> Host:
        for host in self.hosts.values():
            if sdc_id is not None and host.id == sdc_id:
                return host
            if guid is not None and (host.guid or "").upper() == guid.upper():
                return host
        raise e.not_found_sdc()

    def vtree(self, vtree_id: str) -> VTree:
        vtree = self.vtrees.get(vtree_id)
        if vtree is None:
            raise e.not_found_vtree()
        return vtree

    def vtree_members(self, vtree_id: str) -> list[Volume]:
        return [v for v in self.volumes.values() if v.vtree_id == vtree_id]

    def descendants(self, volume_id: str) -> list[Volume]:
        found: list[Volume] = []
        frontier = [volume_id]
        while frontier:
            parent = frontier.pop()
            children = [v for v in self.volumes.values() if v.ancestor_id == parent]
            found.extend(children)
            frontier.extend(c.id for c in children)
        return found

    def _name_taken(self, name: str) -> bool:
        return name in self._names

    def _add_volume(self, vol: Volume) -> None:
        self.volumes[vol.id] = vol
        if vol.name is not None:
            self._names[vol.name] = vol.id
        if vol.volume_type == "ThinProvisioned":
            self._thin_kb[vol.pool_id] = self._thin_kb.get(vol.pool_id, 0) + vol.size_kb

    def _drop_volume(self, vol_id: str) -> None:
        vol = self.volumes.pop(vol_id, None)
        if vol is None:
            return
        if vol.name is not None:
            self._names.pop(vol.name, None)
        if vol.volume_type == "ThinProvisioned":
            self._thin_kb[vol.pool_id] -= vol.size_kb

    def clear_volumes(self) -> None:
        """Forget every volume and VTree (the backing files are the caller's)."""
        self.volumes.clear()
        self.vtrees.clear()
        self._names.clear()
        self._thin_kb.clear()

    # --- capacity ---------------------------------------------------------------------

    def pool_usage(self, pool: StoragePool, *, written: bool = True) -> dict[str, int]:
        """KiB figures: thick reserved, thin provisioned, data written to thin volumes.

        ``written=False`` skips reading the backing files' allocation (one stat per
        volume), for callers that need only the provisioned figures.
        """
        thick = thin = snap = data = 0
        vols = [v for v in self.volumes.values() if v.pool_id == pool.id]
        for vol in vols:
            if vol.volume_type == "ThickProvisioned":
                thick += vol.size_kb
                continue
            used = self.data.allocated(vol.id) // 1024 if written else 0
            data += used
            if vol.volume_type == "Snapshot":
                snap += used
            else:
                thin += vol.size_kb
        return {
            "thick": thick,
            "thin": thin,
            "snap": snap,
            "in_use": thick + data,
            "volumes": len(vols),
            "vtrees": len({v.vtree_id for v in vols}),
        }

    def _check_capacity(self, pool: StoragePool, size_kb: int, thick: bool) -> None:
        usable = pool.capacity_gb * GIB_KB
        if thick:
            if self.pool_usage(pool)["in_use"] + size_kb > usable:
                raise e.out_of_space()
        elif self._thin_kb.get(pool.id, 0) + size_kb > usable * pool.over_provisioning:
            raise e.allocation_limit()

    # --- volumes ----------------------------------------------------------------------

    def _round_kb(self, size_kb: int) -> int:
        step = self.granularity_gb * GIB_KB
        return max(step, -(-size_kb // step) * step)

    def create_volume(self, params: dict[str, Any]) -> str:
        pool = self.pool(str(params.get("storagePoolId", "")))
        if "protectionDomainId" in params and params["protectionDomainId"] != pool.pd_id:
            raise e.not_found_pool()
        if "volumeSizeInKb" in params:
            size_kb = as_int(params["volumeSizeInKb"], "volumeSizeInKb")
        elif "volumeSizeInGb" in params:
            size_kb = as_int(params["volumeSizeInGb"], "volumeSizeInGb") * GIB_KB
        else:
            raise e.illegal("volumeSizeInKb or volumeSizeInGb is required")
        if size_kb <= 0:
            raise e.size_zero()
        size_kb = self._round_kb(size_kb)
        if size_kb > MAX_SIZE_GB * GIB_KB:
            raise e.size_too_large()
        name = params.get("name")
        if name is not None:
            check_name(name)
            if self._name_taken(name):
                raise e.name_in_use()
        vtype = str(params.get("volumeType", "ThickProvisioned"))
        if vtype not in ("ThinProvisioned", "ThickProvisioned"):
            raise e.illegal(f"invalid volumeType {vtype}")
        self._check_capacity(pool, size_kb, vtype == "ThickProvisioned")
        vol_id = self.new_id("vol")
        vtree_id = self.new_id("vtree")
        vol = Volume(vol_id, name, size_kb, pool.id, vtree_id, vtype, None, int(self.clock.time()))
        vol.nsid = self._next_nsid()
        self._add_volume(vol)
        self.vtrees[vtree_id] = VTree(vtree_id, pool.id, vol_id)
        return vol_id

    def _next_nsid(self) -> int | None:
        if self.legacy:
            return None
        self._nsid += 1
        return self._nsid

    def rename_volume(self, volume_id: str, new_name: Any) -> None:
        vol = self.volume(volume_id)
        name = check_name(new_name)
        if name != vol.name and self._name_taken(name):
            raise e.name_in_use()
        if vol.name is not None:
            self._names.pop(vol.name, None)
        self._names[name] = vol.id
        vol.name = name

    def set_volume_size(self, volume_id: str, size_gb_raw: Any) -> None:
        vol = self.volume(volume_id)
        size_gb = as_int(size_gb_raw, "sizeInGB")
        if size_gb <= 0 or size_gb % self.granularity_gb:
            raise e.size_granularity(self.granularity_gb)
        if size_gb > MAX_SIZE_GB:
            raise e.size_too_large()
        new_kb = size_gb * GIB_KB
        if new_kb <= vol.size_kb:
            raise e.size_shrink()
        if vol.volume_type == "ThickProvisioned":
            self._check_capacity(self.pool(vol.pool_id), new_kb - vol.size_kb, True)
        self.data.grow(vol.id, new_kb * 1024)
        self._drop_volume(vol.id)
        vol.size_kb = new_kb
        self._add_volume(vol)

    def remove_volume(self, volume_id: str, mode: Any) -> list[str]:
        """Remove per ``mode``; return the removed IDs. Mapped volumes block the removal."""
        vol = self.volume(volume_id)
        if mode == "ONLY_ME":
            doomed = [vol]
        elif mode == "INCLUDING_DESCENDANTS":
            doomed = [vol, *self.descendants(vol.id)]
        elif mode == "DESCENDANTS_ONLY":
            doomed = self.descendants(vol.id)
            if not doomed:
                raise e.no_descendants()
        elif mode == "WHOLE_VTREE":
            doomed = self.vtree_members(vol.vtree_id)
        else:
            raise e.illegal(f"invalid removeMode {mode!r}")
        if any(v.mappings for v in doomed):
            raise e.volume_mapped()
        gone = {v.id for v in doomed}
        for v in doomed:
            # Children of a removed volume hang from its nearest surviving ancestor.
            ancestor = v.ancestor_id
            while ancestor in gone:
                ancestor = self.volumes[ancestor].ancestor_id
            for child in self.volumes.values():
                if child.ancestor_id == v.id and child.id not in gone:
                    child.ancestor_id = ancestor
        for v in doomed:
            self._drop_volume(v.id)
            self.data.remove(v.id)
        for vtree_id in {v.vtree_id for v in doomed}:
            if not self.vtree_members(vtree_id):
                self.vtrees.pop(vtree_id, None)
        return sorted(gone)

    def snapshot_volumes(
        self, defs: Any, access_mode: Any, volume_type: str = "Snapshot"
    ) -> tuple[list[str], str]:
        """Snapshots (or, on 5.x, thin clones: ``volume_type`` ``ThinClone``) of several
        volumes as one consistent set, each in its source's VTree; all or none."""
        if not isinstance(defs, list) or not defs:
            raise e.illegal("snapshotDefs must be a non-empty list")
        mode = str(access_mode or "ReadWrite")
        if mode not in ("ReadWrite", "ReadOnly"):
            raise e.illegal(f"invalid accessModeLimit {mode}")
        sources: list[tuple[Volume, str | None]] = []
        names: set[str] = set()
        per_vtree: dict[str, int] = {}
        for d in defs:
            if not isinstance(d, dict):
                raise e.illegal("each snapshotDef must be an object")
            src = self.volume(str(d.get("volumeId", "")))
            name = d.get("snapshotName")
            if name is not None:
                check_name(name)
                if name in names or self._name_taken(name):
                    raise e.name_in_use()
                names.add(name)
            if volume_type == "Snapshot":
                per_vtree[src.vtree_id] = per_vtree.get(src.vtree_id, 0) + 1
            sources.append((src, name))
        for vtree_id, adding in per_vtree.items():
            existing = sum(1 for v in self.vtree_members(vtree_id) if v.volume_type == "Snapshot")
            if existing + adding > self.snapshot_limit:
                raise e.too_many_snapshots()
        group = self.new_id("cg")
        created: list[str] = []
        try:
            for src, name in sources:
                snap_id = self.new_id("vol")
                self.data.clone(src.id, snap_id)
                created.append(snap_id)
                self._add_volume(
                    Volume(
                        snap_id,
                        name,
                        src.size_kb,
                        src.pool_id,
                        src.vtree_id,
                        volume_type,
                        src.id,
                        int(self.clock.time()),
                        consistency_group_id=group,
                        access_mode_limit=mode,
                        nsid=self._next_nsid(),
                    )
                )
        except OSError:
            for snap_id in created:
                self._drop_volume(snap_id)
                self.data.remove(snap_id)
            raise
        return created, group

    def overwrite_volume_content(self, target_id: str, source_id: Any) -> None:
        target = self.volume(target_id)
        source = self.volume(str(source_id or ""))
        if source.id == target.id:
            raise e.overwrite_self()
        if source.vtree_id != target.vtree_id:
            raise e.different_vtree()
        self.data.overwrite(source.id, target.id, target.size_kb * 1024)

    # --- mappings ---------------------------------------------------------------------

    def map_volume(self, volume_id: str, host: Host, params: dict[str, Any]) -> None:
        vol = self.volume(volume_id)
        if any(m.host_id == host.id for m in vol.mappings):
            raise e.already_mapped(self.legacy)
        if vol.mappings and not as_flag(params.get("allowMultipleMappings")):
            raise e.multiple_mappings()
        mode = str(params.get("accessMode") or "ReadWrite")
        if mode not in ("ReadWrite", "ReadOnly", "NoAccess"):
            raise e.illegal(f"invalid accessMode {mode}")
        vol.mappings.append(Mapping(host.id, mode))

    def unmap_volume(self, volume_id: str, host: Host | None) -> list[str]:
        """Remove one host's mapping (or all when ``host`` is None); return the host IDs."""
        vol = self.volume(volume_id)
        if host is None:
            removed = [m.host_id for m in vol.mappings]
            vol.mappings.clear()
            return removed
        if not any(m.host_id == host.id for m in vol.mappings):
            raise e.not_mapped(self.legacy)
        vol.mappings = [m for m in vol.mappings if m.host_id != host.id]
        return [host.id]

    def mapped_volumes(self, host_id: str) -> list[Volume]:
        return [v for v in self.volumes.values() if any(m.host_id == host_id for m in v.mappings)]

    # --- hosts ------------------------------------------------------------------------

    def create_nvme_host(self, params: dict[str, Any]) -> str:
        nqn = params.get("nqn")
        if not isinstance(nqn, str) or not nqn.startswith("nqn."):
            raise e.illegal("nqn must be an NVMe qualified name (nqn....)")
        if any((h.nqn or "").lower() == nqn.lower() for h in self.hosts.values()):
            raise e.nqn_in_use()
        name = params.get("name")
        if name is not None:
            check_name(name)
            if any(h.name == name for h in self.hosts.values()):
                raise e.host_name_in_use()
        host = Host(
            self.new_id("host"),
            "NVMeHost",
            name,
            nqn=nqn,
            max_num_paths=as_int(params.get("maxNumPaths", 4), "maxNumPaths"),
            max_num_sys_ports=as_int(params.get("maxNumSysPorts", 10), "maxNumSysPorts"),
        )
        self.hosts[host.id] = host
        return host.id

    def remove_host(self, host_id: str) -> None:
        host = self.sdc(sdc_id=host_id)
        if self.mapped_volumes(host.id):
            raise e.host_has_mappings()
        del self.hosts[host.id]

    def rename_host(self, host_id: str, name: Any) -> None:
        host = self.sdc(sdc_id=host_id)
        new = check_name(name)
        if any(h.name == new and h.id != host.id for h in self.hosts.values()):
            raise e.host_name_in_use()
        host.name = new

    # --- persistence ------------------------------------------------------------------

    def encode(self) -> bytes:
        """The whole state as JSON (msgspec encodes the dataclasses directly: saving
        thousands of volumes after every change must stay cheap)."""
        return msgspec.json.encode(
            {
                "format": 1,
                "system_id": self.system_id,
                "system_name": self.system_name,
                "install_id": self.install_id,
                "prefix": self._prefix,
                "counter": self._counter,
                "nsid": self._nsid,
                "pds": list(self.pds.values()),
                "pools": list(self.pools.values()),
                "sdts": list(self.sdts.values()),
                "hosts": list(self.hosts.values()),
                "volumes": list(self.volumes.values()),
                "vtrees": list(self.vtrees.values()),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = msgspec.json.decode(self.encode())
        return doc

    def load_dict(self, doc: dict[str, Any]) -> None:
        if doc.get("format") != 1:
            raise ValueError("unknown simulator state format")
        self.system_id = doc["system_id"]
        self.system_name = doc["system_name"]
        self.install_id = doc["install_id"]
        self._prefix = dict(doc["prefix"])
        self._counter = int(doc["counter"])
        self._nsid = int(doc["nsid"])
        self.pds = {x["id"]: ProtectionDomain(**x) for x in doc["pds"]}
        self.pools = {x["id"]: StoragePool(**x) for x in doc["pools"]}
        self.sdts = {x["id"]: Sdt(**x) for x in doc["sdts"]}
        self.hosts = {x["id"]: Host(**x) for x in doc["hosts"]}
        self.clear_volumes()
        for x in doc["volumes"]:
            maps = [Mapping(**m) for m in x.pop("mappings")]
            self._add_volume(Volume(**x, mappings=maps))
        self.vtrees = {x["id"]: VTree(**x) for x in doc["vtrees"]}
