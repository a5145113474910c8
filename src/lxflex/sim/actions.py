"""The simulator's mutating gateway calls: creates and instance actions.

Each handler takes the simulator's mutex, calls the array (which validates before it
changes anything), saves the state, and lets the fabric emulate the kernel's reaction
(devices appearing, vanishing, resizing or seeing new content) before answering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import errors as e
from .gateway import body_of, ok, sim_of
from .model import Host

if TYPE_CHECKING:
    from .server import Simulator


async def create_instance(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    kind = request.match_info["kind"]
    doc = await body_of(request)
    async with sim.mutex:
        if kind == "Volume":
            new_id = sim.array.create_volume(doc)
        elif kind == "Host":
            new_id = sim.array.create_nvme_host(doc)
        else:
            raise web.HTTPNotFound()
    await sim.commit()
    return ok({"id": new_id})


def _host_for(sim: Simulator, doc: dict[str, Any], *, sdc: bool) -> Host | None:
    """The host a map/unmap addresses; None means every host (allSdcs / allHosts)."""
    a = sim.array
    if sdc:
        if "allSdcs" in doc:
            return None
        if "sdcId" in doc:
            return a.sdc(sdc_id=str(doc["sdcId"]))  # also NVMe hosts, as 4.x allows
        if "guid" in doc:
            return a.sdc(guid=str(doc["guid"]))
        raise e.illegal("sdcId, guid or allSdcs is required")
    if "allHosts" in doc:
        return None
    if "hostId" in doc:
        return a.host(str(doc["hostId"]))
    if "guid" in doc:
        return a.sdc(guid=str(doc["guid"]))
    if "nqn" in doc:
        nqn = str(doc["nqn"]).lower()
        for h in a.hosts.values():
            if (h.nqn or "").lower() == nqn:
                return h
        raise e.not_found_host()
    raise e.illegal("hostId, guid, nqn or allHosts is required")


async def volume_action(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    a = sim.array
    vol_id, action = request.match_info["id"], request.match_info["action"]
    doc = await body_of(request)
    async with sim.mutex:
        if action == "setVolumeName":
            a.rename_volume(vol_id, doc.get("newName"))
        elif action == "setVolumeSize":
            a.set_volume_size(vol_id, doc.get("sizeInGB"))
        elif action == "removeVolume":
            a.remove_volume(vol_id, doc.get("removeMode", "ONLY_ME"))
        elif action == "overwriteVolumeContent" or (action == "refresh" and a.major >= 5):
            a.overwrite_volume_content(vol_id, doc.get("srcVolumeId"))
        elif action in ("addMappedHost", "addMappedSdc"):
            host = _host_for(sim, doc, sdc=action == "addMappedSdc")
            if host is None:
                raise e.illegal("a mapping needs one host")
            a.map_volume(vol_id, host, doc)
        elif action in ("removeMappedHost", "removeMappedSdc"):
            a.unmap_volume(vol_id, _host_for(sim, doc, sdc=action == "removeMappedSdc"))
        elif action == "setVolumeAccessModeLimit":
            mode = str(doc.get("accessModeLimit", ""))
            if mode not in ("ReadWrite", "ReadOnly"):
                raise e.illegal("accessModeLimit must be ReadWrite or ReadOnly")
            a.volume(vol_id).access_mode_limit = mode
        else:
            raise web.HTTPNotFound()
        if action in ("overwriteVolumeContent", "refresh"):
            await sim.fabric.flush(vol_id)
        elif action != "setVolumeName":
            sim.settle()
    await sim.commit()
    return ok({})


async def system_action(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    action = request.match_info["action"]
    obj_id = request.match_info.get("id")
    if obj_id is not None and obj_id != sim.array.system_id:
        raise e.SimError(3, "Not found")
    # 5.x renamed snapshotVolumes to createSnapshot (on the System by ID) and added thin
    # clones; each generation serves only its own actions.
    gen2 = sim.array.major >= 5
    if gen2:
        kind = {"createSnapshot": "Snapshot", "createThinClone": "ThinClone"} if obj_id else {}
    else:
        kind = {"snapshotVolumes": "Snapshot"}
    if action not in kind:
        raise web.HTTPNotFound()
    doc = await body_of(request)
    if gen2 and "accessModeLimit" in doc:
        raise e.illegal(f"accessModeLimit is not a parameter of {action}")
    async with sim.mutex:
        ids, group = sim.array.snapshot_volumes(
            doc.get("snapshotDefs"), doc.get("accessModeLimit"), kind[action]
        )
    await sim.commit()
    return ok({"volumeIdList": ids, "snapshotGroupId": group})


async def host_action(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    a = sim.array
    host_id, action = request.match_info["id"], request.match_info["action"]
    doc = await body_of(request)
    async with sim.mutex:
        if action == "removeSdc":
            a.remove_host(host_id)
        elif action == "setSdcName":
            a.rename_host(host_id, doc.get("sdcName"))
        elif action in ("modifyMaxNumPaths", "modifyMaxNumSysPorts"):
            host = a.host(host_id)
            key = "newMaxNumPaths" if action == "modifyMaxNumPaths" else "newMaxNumSysPorts"
            try:
                value = int(str(doc.get(key)))
            except ValueError:
                raise e.illegal(f"{key} must be a number") from None
            if action == "modifyMaxNumPaths":
                host.max_num_paths = value
            else:
                host.max_num_sys_ports = value
        else:
            raise web.HTTPNotFound()
    await sim.commit()
    return ok({})
