"""Every client call against the simulator on loopback, for each gateway generation."""

from __future__ import annotations

import asyncio

import pytest

from lxflex.powerflex import (
    AlreadyMappedError,
    AuthenticationError,
    GatewayError,
    HostType,
    NotMappedError,
    PowerFlexClient,
    ProtectionDomainNotFoundError,
    RemoveMode,
    SnapshotDef,
    StoragePoolNotFoundError,
    VolumeNotFoundError,
    VolumeType,
)
from lxflex.secret import Secret
from lxflex.sim import Simulator

from ..conftest import GIB, Control


async def _pool(client: PowerFlexClient, name: str = "sp1") -> tuple[str, str]:
    pd = await client.protection_domain_by_name("pd1")
    pool = await client.storage_pool_by_name(name, pd.id)
    return pd.id, pool.id


async def test_system_domain_pool_and_sdts(client: PowerFlexClient, sim: Simulator) -> None:
    assert await client.api_version() == sim.array.api_version
    system = await client.system()
    assert system.id == sim.array.system_id
    if sim.array.legacy:
        assert system.system_nqn is None
    else:
        assert system.system_nqn == f"nqn.1988-11.com.dell:powerflex:00:{system.id}"
    pd = await client.protection_domain_by_name("pd1")
    assert pd.name == "pd1"
    assert (await client.protection_domain(pd.id)).id == pd.id
    pool = await client.storage_pool_by_name("sp1", pd.id)
    assert pool.zero_padding_enabled is True
    assert (await client.storage_pool(pool.id)).protection_domain_id == pd.id
    sp2 = await client.storage_pool_by_name("sp2", pd.id)
    assert sp2.zero_padding_enabled is False
    assert {p.name for p in await client.storage_pools(pd.id)} == {"sp1", "sp2"}
    stats = await client.pool_statistics(pool.id)
    assert stats.total_bytes == 4096 * GIB
    assert stats.used_bytes == 0
    if sim.array.legacy:
        with pytest.raises(GatewayError) as no_sdts:  # 3.x has no NVMe/TCP
            await client.sdts(pd.id)
        assert no_sdts.value.http_status == 404
    else:
        sdts = await client.sdts(pd.id)
        assert sorted(ip for s in sdts for ip in s.host_ips) == ["127.0.0.11", "127.0.0.12"]
        assert {s.nvme_port for s in sdts} == {4420}
        assert {s.discovery_port for s in sdts} == {8009}
    with pytest.raises(ProtectionDomainNotFoundError) as pd_err:
        await client.protection_domain_by_name("nope")
    assert pd_err.value.error_code == 142
    with pytest.raises(StoragePoolNotFoundError) as sp_err:
        await client.storage_pool_by_name("nope", pd.id)
    assert sp_err.value.error_code == 171


async def test_volume_lifecycle(client: PowerFlexClient, sim: Simulator) -> None:
    _, pool_id = await _pool(client)
    granularity = 1 if sim.array.major >= 5 else 8
    vol_id = await client.create_volume(pool_id, 3 * GIB, "life-1")
    vol = await client.volume(vol_id)
    assert vol.size_bytes == max(granularity, 3 if granularity == 1 else 8) * GIB
    assert vol.volume_type is VolumeType.THIN
    assert vol.mapped_sdc_info is None
    assert vol.ancestor_volume_id is None
    assert (vol.nsid is None) == sim.array.legacy
    assert await client.volume_id("life-1") == vol_id
    thick = await client.create_volume(pool_id, GIB, "life-thick", thin=False)
    assert (await client.volume(thick)).volume_type is VolumeType.THICK
    stats = await client.pool_statistics(pool_id)
    assert stats.thick_capacity_in_use_in_kb == granularity * GIB // 1024
    assert stats.thin_capacity_allocated_in_kb == vol.size_in_kb

    await client.rename_volume(vol_id, "life-2")
    assert (await client.volume(vol_id)).name == "life-2"
    sim.data.materialize(vol_id, vol.size_bytes)  # as if data had been written
    await client.set_volume_size(vol_id, vol.size_bytes + granularity * GIB)
    assert (await client.volume(vol_id)).size_bytes == vol.size_bytes + granularity * GIB
    assert sim.data.path(vol_id).stat().st_size == vol.size_bytes + granularity * GIB

    listed = {v.id for v in await client.pool_volumes(pool_id)}
    assert {vol_id, thick} <= listed
    assert [v.id for v in await client.volumes([vol_id])] == [vol_id]
    assert await client.volumes([]) == []

    await client.remove_volume(vol_id)
    await client.remove_volume(thick)
    with pytest.raises(VolumeNotFoundError):
        await client.volume(vol_id)
    with pytest.raises(VolumeNotFoundError):
        await client.volume_id("life-2")
    assert not sim.data.path(vol_id).exists()


async def test_snapshots_in_one_call_and_vtree(client: PowerFlexClient) -> None:
    _, pool_id = await _pool(client)
    a = await client.create_volume(pool_id, GIB, "snap-a")
    b = await client.create_volume(pool_id, GIB, "snap-b")
    defs = [SnapshotDef(a, "snap-a-1"), SnapshotDef(b, "snap-b-1")]
    if (await client.api_version()).startswith("5."):  # createSnapshot of the System
        system_id = (await client.system()).id
        result = await client.create_snapshot(system_id, defs)
        clone = await client.create_thin_clone(system_id, [SnapshotDef(a, "clone-a")])
        thin = await client.volume(clone.volume_id_list[0])
        assert (thin.ancestor_volume_id, thin.vtree_id) == (a, (await client.volume(a)).vtree_id)
        await client.refresh_volume(thin.id, a)
        await client.remove_volume(thin.id)
    else:
        result = await client.snapshot_volumes(defs)
    snap_a, snap_b = result.volume_id_list
    assert result.snapshot_group_id
    sa = await client.volume(snap_a)
    assert sa.is_snapshot
    assert sa.ancestor_volume_id == a
    assert sa.vtree_id == (await client.volume(a)).vtree_id
    assert (await client.volume(snap_b)).ancestor_volume_id == b
    assert await client.vtree_snapshot_count(sa.vtree_id) == 1
    members = await client.vtree_volumes(sa.vtree_id)
    assert {v.id for v in members} == {a, snap_a}
    await client.overwrite_volume_content(a, snap_a)
    await client.remove_volume(a, RemoveMode.INCLUDING_DESCENDANTS)
    await client.remove_volume(b, RemoveMode.WHOLE_VTREE)
    assert await client.pool_volumes(pool_id) == []


async def test_nvme_hosts_and_mappings(client: PowerFlexClient, sim: Simulator) -> None:
    _, pool_id = await _pool(client)
    vol = await client.create_volume(pool_id, GIB, "map-1")
    nqn = "nqn.2014-08.org.nvmexpress:uuid:6b3b2a0e-0d1c-4f5b-9b4e-7d6b5c4a3f21"
    if sim.array.legacy:
        with pytest.raises(GatewayError) as no_hosts:
            await client.create_nvme_host(nqn, "host-1")
        assert no_hosts.value.http_status == 404
        return
    host_id = await client.create_nvme_host(nqn, "host-1")
    found = await client.nvme_host_by_nqn(nqn.upper())
    assert found is not None
    assert found.id == host_id
    assert found.host_type == HostType.NVME
    assert (await client.host(host_id)).nqn == nqn
    assert await client.nvme_host_by_nqn("nqn.2014-08.org.nvmexpress:uuid:other") is None

    await client.map_host(vol, host_id)
    info = (await client.volume(vol)).mapped_sdc_info
    assert info is not None
    assert info[0].sdc_id == host_id
    assert info[0].nqn == nqn
    with pytest.raises(AlreadyMappedError) as again:
        await client.map_host(vol, host_id)
    assert again.value.error_code == (81 if sim.array.legacy else 4037)
    await client.unmap_host(vol, host_id)
    assert (await client.volume(vol)).mapped_sdc_info is None
    with pytest.raises(NotMappedError) as missing:
        await client.unmap_host(vol, host_id)
    assert missing.value.error_code == (84 if sim.array.legacy else 4039)
    await client.map_host(vol, host_id)
    await client.unmap_host(vol)  # all hosts
    await client.remove_host(host_id)
    assert await client.nvme_host_by_nqn(nqn) is None
    await client.remove_volume(vol)


async def test_sdc_mappings_by_id_and_guid(client: PowerFlexClient, sim: Simulator) -> None:
    _, pool_id = await _pool(client)
    vol = await client.create_volume(pool_id, GIB, "sdc-1")
    local = next(h for h in sim.array.hosts.values() if h.kind == "SdcHost")
    assert local.guid is not None
    sdc = await client.sdc_by_guid(local.guid.lower())
    assert sdc is not None
    assert sdc.id == local.id
    assert sdc.host_type == HostType.SDC
    assert await client.sdc_by_guid("00000000-0000-0000-0000-000000000000") is None
    await client.map_sdc(vol, guid=local.guid)
    assert (await client.volume(vol)).mapped_host_ids == {local.id}
    await client.unmap_sdc(vol, sdc_id=local.id)
    await client.map_sdc(vol, sdc_id=local.id)
    await client.unmap_sdc(vol, guid=local.guid)
    await client.map_sdc(vol, sdc_id=local.id)
    await client.unmap_sdc(vol)
    assert (await client.volume(vol)).mapped_sdc_info is None
    await client.remove_volume(vol)


async def test_wrong_password_is_refused(sim: Simulator) -> None:
    async with PowerFlexClient(sim.url, "admin", Secret("wrong")) as c:
        with pytest.raises(AuthenticationError):
            await c.system()


async def test_concurrent_callers_share_one_login(
    client: PowerFlexClient, control: Control
) -> None:
    await control.post("/_sim/stats/reset")
    await asyncio.gather(*(client.system() for _ in range(30)))
    stats = await control.stats()
    assert stats["logins"] == 1
    assert stats["requests"]["GET /api/types/System/instances"] == 30


async def test_expired_tokens_are_replaced_once(client: PowerFlexClient, control: Control) -> None:
    await client.system()
    await control.post("/_sim/stats/reset")
    await control.post("/_sim/tokens/expire")
    await asyncio.gather(*(client.system() for _ in range(10)))
    stats = await control.stats()
    assert stats["logins"] == 1
    assert client.logins == 2
