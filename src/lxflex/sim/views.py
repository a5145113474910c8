"""JSON renderings of the simulated objects, in the gateway's shapes.

Every object carries ``links`` (self, relationships, parents) because some clients walk
them; a volume's ``mappedSdcInfo`` is ``null`` when it has no mapping; 4.x volumes carry
``nsid``; the system carries ``systemNqn`` from 4.x on.
"""

from __future__ import annotations

from typing import Any

from .model import GIB_KB, Array, Host, Sdt, StoragePool, Volume, VTree


def _link(rel: str, href: str) -> dict[str, str]:
    return {"rel": rel, "href": href}


def _links(
    kind: str, obj_id: str, rels: list[str], parents: dict[str, str]
) -> list[dict[str, str]]:
    base = f"/api/instances/{kind}::{obj_id}"
    links = [_link("self", base)]
    links += [_link(f"/api/{kind}/relationship/{r}", f"{base}/relationships/{r}") for r in rels]
    links += [_link(f"/api/parent/relationship/{field}", href) for field, href in parents.items()]
    return links


def software_version(array: Array) -> str:
    major, _, minor = array.api_version.partition(".")
    return f"R{major}_{minor or '0'}.0.0"


def system(array: Array) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": array.system_id,
        "name": array.system_name,
        "systemVersionName": f"DellEMC PowerFlex Version: {software_version(array)}",
        "installId": array.install_id,
        "swid": "",
        "daysInstalled": 1,
        "maxCapacityInGb": "Unlimited",
        "capacityAlertHighThresholdPercent": 80,
        "capacityAlertCriticalThresholdPercent": 90,
        "restrictedSdcModeEnabled": False,
        "restrictedSdcMode": "None",
        "mdmManagementPort": 6611,
        "tlsVersion": "TLSv1.2",
        "showGuid": True,
        "perfProfile": "Compact",
        "enterpriseFeaturesEnabled": True,
        "cliPasswordAllowed": True,
        "defragmentationEnabled": True,
        "mdmCluster": {
            "clusterState": "ClusteredNormal",
            "clusterMode": "ThreeNodes",
            "master": {
                "versionInfo": software_version(array),
                "ips": ["127.0.0.1"],
                "managementIPs": ["127.0.0.1"],
                "role": "Manager",
                "id": array.system_id[:8] + "00000001",
                "port": 9011,
            },
            "slaves": [],
            "tieBreakers": [],
        },
        "links": _links("System", array.system_id, ["Sdc", "ProtectionDomain", "Statistics"], {}),
    }
    if not array.legacy:
        doc["systemNqn"] = f"nqn.1988-11.com.dell:powerflex:00:{array.system_id}"
    return doc


def protection_domain(array: Array, pd_id: str) -> dict[str, Any]:
    pd = array.pd(pd_id)
    doc: dict[str, Any] = {
        "id": pd.id,
        "name": pd.name,
        "systemId": array.system_id,
        "protectionDomainState": "Active",
        "rfcacheEnabled": False,
        "links": _links(
            "ProtectionDomain",
            pd.id,
            ["StoragePool", "Sdt", "Sds", "Statistics"],
            {"systemId": f"/api/instances/System::{array.system_id}"},
        ),
    }
    if array.major >= 5:
        doc["genType"] = "EC"
    return doc


def storage_pool(pool: StoragePool) -> dict[str, Any]:
    return {
        "id": pool.id,
        "name": pool.name,
        "protectionDomainId": pool.pd_id,
        "zeroPaddingEnabled": pool.zero_padding,
        "dataLayout": pool.data_layout,
        "compressionMethod": "NotApplicable",
        "mediaType": "HDD",
        "useRmcache": False,
        "useRfcache": False,
        "sparePercentage": 10,
        "capacityAlertHighThreshold": 80,
        "capacityAlertCriticalThreshold": 90,
        "rebuildEnabled": True,
        "rebalanceEnabled": True,
        "checksumEnabled": False,
        "capacityUsageState": "Normal",
        "links": _links(
            "StoragePool",
            pool.id,
            ["Statistics", "Volume", "Device", "VTree", "SpSds"],
            {"protectionDomainId": f"/api/instances/ProtectionDomain::{pool.pd_id}"},
        ),
    }


def pool_statistics(array: Array, pool: StoragePool) -> dict[str, Any]:
    usage = array.pool_usage(pool)
    usable = pool.capacity_gb * GIB_KB
    net_in_use = usage["in_use"]
    available = max(0, usable - net_in_use)
    step = array.granularity_gb * GIB_KB
    vols = [v for v in array.volumes.values() if v.pool_id == pool.id]
    bwc = {"numSeconds": 0, "totalWeightInKb": 0, "numOccured": 0}
    return {
        # Mirrored: raw figures count both copies, net figures one.
        "maxCapacityInKb": usable * 2,
        "capacityLimitInKb": usable * 2,
        "capacityInUseInKb": net_in_use * 2,
        "unusedCapacityInKb": available * 2,
        "spareCapacityInKb": 0,
        "netCapacityInUseInKb": net_in_use,
        "netUnusedCapacityInKb": available,
        "thickCapacityInUseInKb": usage["thick"],
        "thinCapacityAllocatedInKb": usage["thin"],
        "snapshotCapacityInKb": usage["snap"],
        "capacityAvailableForVolumeAllocationInKb": (available // step) * step,
        "volumeAllocationLimitInKb": usable * pool.over_provisioning,
        "numOfVolumes": usage["volumes"],
        "numOfVtrees": usage["vtrees"],
        "volumeIds": [v.id for v in vols],
        "vtreeIds": sorted({v.vtree_id for v in vols}),
        "userDataReadBwc": bwc,
        "userDataWriteBwc": bwc,
    }


def _mapping(array: Array, host_id: str, access_mode: str) -> dict[str, Any]:
    host = array.hosts.get(host_id)
    nvme = host is not None and host.kind == "NVMeHost"
    return {
        "sdcId": host_id,
        "sdcIp": None if nvme or host is None else host.ip,
        "sdcName": host.name if host else None,
        "limitIops": 0,
        "limitBwInMbps": 0,
        "isDirectBufferMapping": False,
        "accessMode": access_mode,
        "nqn": host.nqn if host else None,
        "hostType": host.kind if host else "SdcHost",
    }


def volume(array: Array, vol: Volume) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": vol.id,
        "name": vol.name,
        "sizeInKb": vol.size_kb,
        "storagePoolId": vol.pool_id,
        "vtreeId": vol.vtree_id,
        "ancestorVolumeId": vol.ancestor_id,
        "volumeType": vol.volume_type,
        "creationTime": vol.creation_time,
        "mappedSdcInfo": [_mapping(array, m.host_id, m.access_mode) for m in vol.mappings] or None,
        "mappingToAllSdcsEnabled": False,
        "consistencyGroupId": vol.consistency_group_id,
        "useRmcache": False,
        "dataLayout": array.pool(vol.pool_id).data_layout,
        "compressionMethod": "NotApplicable",
        "accessModeLimit": vol.access_mode_limit,
        "volumeClass": "defaultclass",
        "managedBy": "ScaleIO",
        "notGenuineSnapshot": False,
        "secureSnapshotExpTime": 0,
        "retentionLevels": [],
        "lockedAutoSnapshot": False,
        "lockedAutoSnapshotMarkedForRemoval": False,
        "autoSnapshotGroupId": None,
        "timeStampIsAccurate": False,
        "volumeReplicationState": "UnmarkedForReplication",
        "replicationJournalVolume": False,
        "isObfuscated": False,
        "links": _links(
            "Volume",
            vol.id,
            ["Statistics"],
            {
                "vtreeId": f"/api/instances/VTree::{vol.vtree_id}",
                "storagePoolId": f"/api/instances/StoragePool::{vol.pool_id}",
            },
        ),
    }
    if vol.nsid is not None:
        doc["nsid"] = vol.nsid
    return doc


def volume_statistics(vol: Volume) -> dict[str, Any]:
    return {
        "numOfMappedSdcs": len(vol.mappings),
        "mappedSdcIds": [m.host_id for m in vol.mappings],
        "userDataReadBwc": {"numSeconds": 0, "totalWeightInKb": 0, "numOccured": 0},
        "userDataWriteBwc": {"numSeconds": 0, "totalWeightInKb": 0, "numOccured": 0},
    }


def vtree(array: Array, tree: VTree) -> dict[str, Any]:
    members = array.vtree_members(tree.id)
    roots = [v.id for v in members if v.ancestor_id is None]
    return {
        "id": tree.id,
        "name": None,
        "baseVolumeId": tree.base_volume_id,
        "rootVolumes": roots,
        "storagePoolId": tree.pool_id,
        "dataLayout": array.pool(tree.pool_id).data_layout,
        "compressionMethod": "NotApplicable",
        "inDeletion": False,
        "vtreeMigrationInfo": {
            "sourceStoragePoolId": tree.pool_id,
            "destinationStoragePoolId": None,
            "migrationStatus": "NotInMigration",
            "migrationPauseReason": None,
            "migrationQueuePosition": 0,
            "thicknessConversionType": None,
        },
        "links": _links(
            "VTree",
            tree.id,
            ["Volume", "Statistics"],
            {"storagePoolId": f"/api/instances/StoragePool::{tree.pool_id}"},
        ),
    }


def vtree_statistics(array: Array, tree: VTree) -> dict[str, Any]:
    members = array.vtree_members(tree.id)
    return {
        "numOfVolumes": len(members),
        "baseNetCapacityInUseInKb": sum(
            array.data.allocated(v.id) // 1024 for v in members if v.volume_type != "Snapshot"
        ),
        "snapNetCapacityInUseInKb": sum(
            array.data.allocated(v.id) // 1024 for v in members if v.volume_type == "Snapshot"
        ),
    }


def host(array: Array, h: Host) -> dict[str, Any]:
    nvme = h.kind == "NVMeHost"
    kind = "Host" if nvme else "Sdc"
    rels = ["Volume", "NvmeController"] if nvme else ["Volume", "Statistics"]
    version = software_version(array)
    return {
        "id": h.id,
        "name": h.name,
        "hostType": h.kind,
        "sdcGuid": None if nvme else h.guid,
        "sdcIp": None if nvme else h.ip,
        "sdcIps": None if nvme else [h.ip] if h.ip else [],
        "sdcApproved": not nvme,
        "sdcApprovedIps": None,
        "mdmConnectionState": "Disconnected" if nvme else "Connected",
        "osType": "Linux",
        "perfProfile": "HighPerformance",
        "sdcType": None if nvme else "AppSdc",
        "systemId": array.system_id,
        "versionInfo": None if nvme else version,
        "softwareVersionInfo": None if nvme else version,
        "installedSoftwareVersionInfo": None if nvme else version,
        "kernelVersion": None if nvme else "6.1.0",
        "sdcAgentActive": False,
        "nqn": h.nqn if nvme else None,
        "maxNumPaths": h.max_num_paths if nvme else None,
        "maxNumSysPorts": h.max_num_sys_ports if nvme else None,
        "hostOsFullType": "Generic" if nvme else "Linux",
        "links": _links(
            kind, h.id, rels, {"systemId": f"/api/instances/System::{array.system_id}"}
        ),
    }


def sdt(array: Array, s: Sdt) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "sdtState": "Normal",
        "ipList": [dict(entry) for entry in s.ips],
        "systemId": array.system_id,
        "protectionDomainId": s.pd_id,
        "storagePort": s.storage_port,
        "nvmePort": s.nvme_port,
        "discoveryPort": s.discovery_port,
        "certificateInfo": None,
        "mdmConnectionState": "Connected",
        "membershipState": "Joined",
        "faultSetId": None,
        "softwareVersionInfo": software_version(array),
        "maintenanceState": "NoMaintenance",
        "authenticationError": "None",
        "persistentDiscoveryControllersNum": 0,
        "links": _links(
            "Sdt",
            s.id,
            ["Statistics"],
            {"protectionDomainId": f"/api/instances/ProtectionDomain::{s.pd_id}"},
        ),
    }
