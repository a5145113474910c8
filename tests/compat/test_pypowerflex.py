"""Dell's official SDK, PyPowerFlex, drives the simulator over HTTPS.

PyPowerFlex is an independent client of the real gateway: what it can do against the
simulator, with its own login dance (legacy login, version, 4.x login, call, logout), is
evidence that the simulator's shapes are the gateway's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from PyPowerFlex import PowerFlexClient as DellClient  # type: ignore[import-untyped]

from lxflex.sim import Simulator

from ..conftest import SimFactory


@pytest.fixture(params=["3.6", "4.5"])
async def tls_sim(make_sim: SimFactory, request: pytest.FixtureRequest) -> Simulator:
    return await make_sim(api_version=request.param, tls=True)


def _dell(sim: Simulator, password: str) -> Any:
    port = int(sim.url.rsplit(":", 1)[1])
    client = DellClient(
        gateway_address="127.0.0.1",
        gateway_port=port,
        username="admin",
        password=password,
        verify_certificate=True,
        certificate_path=sim.ca_file,
        log_level=logging.WARNING,
    )
    client.initialize()
    return client


def _scenario(sim: Simulator, password: str) -> dict[str, Any]:
    dell = _dell(sim, password)
    seen: dict[str, Any] = {"api_version": dell.system.api_version()}
    system = dell.system.get()[0]
    seen["system_id"] = system["id"]
    pds = dell.protection_domain.get(filter_fields={"name": "pd1"})
    pd_id = pds[0]["id"]
    pools = dell.protection_domain.get_storage_pools(pd_id)
    sp1 = next(p for p in pools if p["name"] == "sp1")
    seen["pool_names"] = sorted(p["name"] for p in pools)
    seen["pool_stats"] = dell.storage_pool.get_statistics(sp1["id"])

    created = dell.volume.create(sp1["id"], 4, name="dell-vol", volume_type="ThinProvisioned")
    vol_id = created["id"]
    seen["created"] = dell.volume.get(entity_id=vol_id)
    dell.volume.rename(vol_id, "dell-vol-2")
    dell.volume.extend(vol_id, 16)
    seen["after"] = dell.volume.get(entity_id=vol_id)
    snap = dell.system.snapshot_volumes(
        system["id"], [{"volumeId": vol_id, "snapshotName": "dell-snap"}]
    )
    seen["snapshot"] = dell.volume.get(entity_id=snap["volumeIdList"][0])

    sdc = dell.sdc.get()[0]
    seen["sdc"] = sdc
    dell.volume.add_mapped_sdc(vol_id, sdc_guid=sdc["sdcGuid"])
    seen["mapped"] = dell.volume.get(entity_id=vol_id)["mappedSdcInfo"]
    dell.volume.remove_mapped_sdc(vol_id, sdc_id=sdc["id"])
    seen["unmapped"] = dell.volume.get(entity_id=vol_id)["mappedSdcInfo"]

    if not sim.array.legacy:
        host = dell.host.create("nqn.2014-08.org.nvmexpress:uuid:dell-sdk-host", name="dell-host")
        seen["host"] = dell.host.get(entity_id=host["id"])
        dell.volume.add_mapped_sdc(vol_id, sdc_id=host["id"])  # how cinder maps NVMe hosts
        seen["host_mapped"] = dell.volume.get(entity_id=vol_id)["mappedSdcInfo"]
        dell.volume.remove_mapped_sdc(vol_id, sdc_id=host["id"])
        dell.sdc.delete(host["id"])
        seen["hosts_left"] = [h["id"] for h in dell.host.get()]

    dell.volume.delete(vol_id, "INCLUDING_DESCENDANTS")
    seen["volumes_left"] = [v["name"] for v in dell.volume.get()]
    return seen


async def test_pypowerflex_drives_the_simulator(tls_sim: Simulator, password: str) -> None:
    sim = tls_sim
    seen = await asyncio.to_thread(_scenario, sim, password)
    gran = 8
    assert seen["api_version"] == sim.array.api_version
    assert seen["system_id"] == sim.array.system_id
    assert seen["pool_names"] == ["sp1", "sp2"]
    assert seen["pool_stats"]["numOfVolumes"] == 0
    assert seen["created"]["name"] == "dell-vol"
    assert seen["created"]["sizeInKb"] == gran * 1024 * 1024  # 4 GB rounded up
    assert seen["created"]["volumeType"] == "ThinProvisioned"
    assert seen["created"]["mappedSdcInfo"] is None
    assert seen["after"]["name"] == "dell-vol-2"
    assert seen["after"]["sizeInKb"] == 16 * 1024 * 1024
    assert seen["snapshot"]["name"] == "dell-snap"
    assert seen["snapshot"]["ancestorVolumeId"] == seen["created"]["id"]
    assert seen["snapshot"]["volumeType"] == "Snapshot"
    assert seen["sdc"]["hostType"] == "SdcHost"
    assert [m["sdcId"] for m in seen["mapped"]] == [seen["sdc"]["id"]]
    assert seen["unmapped"] is None
    if not sim.array.legacy:
        assert seen["host"]["nqn"] == "nqn.2014-08.org.nvmexpress:uuid:dell-sdk-host"
        assert seen["host"]["hostType"] == "NVMeHost"
        assert seen["host_mapped"][0]["hostType"] == "NVMeHost"
        assert seen["hosts_left"] == []
    assert seen["volumes_left"] == []
    # PyPowerFlex logs in and out around every call; the simulator counted it all.
    assert sim.tokens.logins > 20
