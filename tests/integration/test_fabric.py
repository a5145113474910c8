"""Host fabric emulation with real loop devices: what appears, what it holds, what goes."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lxflex.host.nvme import NvmeConfig, NvmeHost, nguid
from lxflex.host.runner import SubprocessRunner
from lxflex.powerflex import PowerFlexClient
from lxflex.secret import Secret
from lxflex.sim import Simulator
from lxflex.sim.fabric import FabricHost

from ..conftest import FAST_RETRY, GIB, SimFactory

pytestmark = pytest.mark.root


@dataclass
class Env:
    sim: Simulator
    client: PowerFlexClient
    host: FabricHost
    pool_id: str
    pd_id: str

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.host.bin_dir / tool), *args], capture_output=True, text=True, check=False
        )


@pytest.fixture(params=["4.5", "5.0"])
async def env(
    no_leaked_loops: None, make_sim: SimFactory, password: str, request: pytest.FixtureRequest
) -> AsyncIterator[Env]:
    sim = await make_sim(api_version=request.param)
    async with PowerFlexClient(sim.url, "admin", Secret(password), retry=FAST_RETRY) as client:
        pd = await client.protection_domain_by_name("pd1")
        pool = await client.storage_pool_by_name("sp1", pd.id)
        yield Env(sim, client, sim.fabric.hosts["local"], pool.id, pd.id)


def wait_for(path: Path, present: bool = True, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while path.exists() != present:
        assert time.monotonic() < deadline, f"{path} did not {'appear' if present else 'go'}"
        time.sleep(0.02)


def nvme_link(env: Env, vol_id: str) -> Path:
    return env.host.by_id / f"nvme-eui.{vol_id}64b94e{env.sim.array.system_id[-10:]}"


def size_of(device: Path) -> int:
    out = subprocess.run(
        ["blockdev", "--getsize64", str(device)], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


async def _nvme_attach(env: Env, name: str) -> tuple[str, str, str, Path]:
    nqn = f"nqn.2014-08.org.nvmexpress:uuid:{name}-0000-4000-8000-000000000000"
    vol = await env.client.create_volume(env.pool_id, GIB, name)
    host = await env.client.create_nvme_host(nqn)
    await env.client.map_host(vol, host)
    sdt_ip = (await env.client.sdts(env.pd_id))[0].host_ips[0]
    res = await asyncio.to_thread(
        env.run, "nvme", "connect-all", "-t", "tcp", "-a", sdt_ip, "-q", nqn
    )
    assert res.returncode == 0, res.stderr
    link = nvme_link(env, vol)
    await asyncio.to_thread(wait_for, link)
    return vol, host, nqn, link


async def test_nvme_attach_write_and_detach(env: Env) -> None:
    vol, host, _, link = await _nvme_attach(env, "aaaaaaaa")
    device = Path(os.readlink(link))
    assert device.name.startswith("loop")
    assert size_of(link) == (await env.client.volume(vol)).size_bytes
    payload = os.urandom(4096)
    fd = os.open(link, os.O_RDWR)
    try:
        os.pwrite(fd, payload, 1024 * 1024)
        os.fsync(fd)
    finally:
        os.close(fd)
    with open(env.sim.data.path(vol), "rb") as f:
        f.seek(1024 * 1024)
        assert f.read(4096) == payload  # the data is in the backing file
    listing = json.loads((await asyncio.to_thread(env.run, "nvme", "list", "-o", "json")).stdout)
    assert [d["DevicePath"] for d in listing["Devices"]] == [str(device)]
    ctrls = sorted((env.host.sys_root / "class" / "nvme").iterdir())
    assert len(ctrls) == 2  # one per host-facing SDT portal
    subnqn = f"nqn.1988-11.com.dell:powerflex:00:{env.sim.array.system_id}"
    assert (ctrls[0] / "subsysnqn").read_text().strip() == subnqn
    assert (ctrls[0] / "transport").read_text().strip() == "tcp"
    assert (ctrls[0] / "state").read_text().strip() == "live"
    # Unmapping removes the device, as the kernel does after a namespace change.
    await env.client.unmap_host(vol, host)
    await asyncio.to_thread(wait_for, link, False)
    assert (
        str(device) not in subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    )
    res = await asyncio.to_thread(env.run, "nvme", "disconnect", "-n", subnqn)
    assert res.returncode == 0
    assert res.stdout.strip() == f"NQN:{subnqn} disconnected 2 controller(s)"
    assert list((env.host.sys_root / "class" / "nvme").iterdir()) == []
    await env.client.remove_host(host)
    await env.client.remove_volume(vol)


async def test_connect_all_needs_a_mapping_and_a_portal(env: Env) -> None:
    nqn = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-4000-8000-000000000000"
    await env.client.create_nvme_host(nqn)
    res = await asyncio.to_thread(
        env.run, "nvme", "connect-all", "-t", "tcp", "-a", "127.0.0.11", "-q", nqn
    )
    assert res.returncode == 0
    assert "No discovery log entries" in res.stderr
    assert list((env.host.sys_root / "class" / "nvme").iterdir()) == []
    res = await asyncio.to_thread(
        env.run, "nvme", "connect-all", "-t", "tcp", "-a", "127.0.1.11", "-q", nqn
    )
    assert res.returncode != 0  # a storage-only address serves no hosts
    res = await asyncio.to_thread(env.run, "nvme", "connect-all", "-t", "rdma", "-a", "127.0.0.11")
    assert res.returncode == 22
    res = await asyncio.to_thread(env.run, "nvme", "frobnicate")
    assert res.returncode == 22


async def test_discover_lists_portals_after_mapping(env: Env) -> None:
    _, _, nqn, _ = await _nvme_attach(env, "cccccccc")
    res = await asyncio.to_thread(
        env.run, "nvme", "discover", "-t", "tcp", "-a", "127.0.0.12", "-q", nqn, "-o", "json"
    )
    records = json.loads(res.stdout)["records"]
    assert sorted(r["traddr"] for r in records) == ["127.0.0.11", "127.0.0.12"]
    assert {r["trsvcid"] for r in records} == {"4420"}
    # connect-all again changes nothing: already connected.
    res = await asyncio.to_thread(
        env.run, "nvme", "connect-all", "-t", "tcp", "-a", "127.0.0.11", "-q", nqn
    )
    assert res.returncode == 0
    assert len(list((env.host.sys_root / "class" / "nvme").iterdir())) == 2
    res = await asyncio.to_thread(env.run, "nvme", "disconnect-all")
    assert res.returncode == 0
    assert env.host.devices == {}


async def test_resize_and_restore_seen_through_the_device(env: Env) -> None:
    vol, _, _, link = await _nvme_attach(env, "dddddddd")
    size = (await env.client.volume(vol)).size_bytes
    step = 1 if env.sim.array.major >= 5 else 8
    await env.client.set_volume_size(vol, size + step * GIB)
    assert size_of(link) == size + step * GIB  # NVMe sees the new size at once
    fd = os.open(link, os.O_RDWR)
    try:
        os.pwrite(fd, b"original", 0)
        os.fsync(fd)
        from lxflex.powerflex import SnapshotDef

        defs = [SnapshotDef(vol, "dddd-s")]
        if env.sim.array.major >= 5:
            made = await env.client.create_snapshot(env.sim.array.system_id, defs)
        else:
            made = await env.client.snapshot_volumes(defs)
        snap = made.volume_id_list[0]
        os.pwrite(fd, b"modified", 0)
        os.fsync(fd)
        await env.client.overwrite_volume_content(vol, snap)
        assert os.pread(fd, 8, 0) == b"original"
    finally:
        os.close(fd)


async def test_partition_entries_follow_the_kernel(env: Env) -> None:
    vol, _, _, link = await _nvme_attach(env, "eeeeeeee")
    mbr = bytearray(512)
    # One Linux partition from sector 2048, 1 MiB long.
    mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", 2048, 2048)
    mbr[510:512] = b"\x55\xaa"
    fd = os.open(link, os.O_RDWR)
    try:
        os.pwrite(fd, bytes(mbr), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    await asyncio.to_thread(env.run, "nvme", "list")  # the emulated udev catches up
    part = Path(f"{link}-part1")
    await asyncio.to_thread(wait_for, part)
    assert os.readlink(part) != os.readlink(link)
    assert size_of(part) == 2048 * 512
    fd = os.open(part, os.O_RDWR)
    try:
        os.pwrite(fd, b"in partition 1", 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    with open(env.sim.data.path(vol), "rb") as f:
        f.seek(2048 * 512)
        assert f.read(14) == b"in partition 1"
    await env.client.unmap_host(vol, None)
    await asyncio.to_thread(wait_for, part, False)
    await asyncio.to_thread(wait_for, link, False)


async def test_sdc_mapping_rescan_and_queries(env: Env) -> None:
    res = await asyncio.to_thread(env.run, "drv_cfg", "--query_guid")
    guid = res.stdout.strip()
    assert res.returncode == 0
    assert guid == guid.upper()
    assert len(guid) == 36
    sdc = await env.client.sdc_by_guid(guid)
    assert sdc is not None
    vol = await env.client.create_volume(env.pool_id, GIB, "sdc-vol")
    await env.client.map_sdc(vol, guid=guid)
    link = env.host.by_id / f"emc-vol-{env.sim.array.system_id}-{vol}"
    await asyncio.to_thread(wait_for, link)
    size = size_of(link)
    step = 1 if env.sim.array.major >= 5 else 8
    await env.client.set_volume_size(vol, size + step * GIB)
    assert size_of(link) == size  # an SDC sees a resize only after a rescan
    assert (await asyncio.to_thread(env.run, "drv_cfg", "--rescan")).returncode == 0
    assert size_of(link) == size + step * GIB
    vols = (await asyncio.to_thread(env.run, "drv_cfg", "--query_vols")).stdout.splitlines()
    assert vols == ["Retrieved 1 volume(s)", f"VOL-ID {vol} MDM-ID {env.sim.array.system_id}"]
    mdms = (await asyncio.to_thread(env.run, "drv_cfg", "--query_mdms")).stdout
    assert f"MDM-ID {env.sim.array.system_id} SDC ID {sdc.id}" in mdms
    assert (await asyncio.to_thread(env.run, "drv_cfg", "--bogus")).returncode == 1
    await env.client.unmap_sdc(vol, guid=guid)
    await asyncio.to_thread(wait_for, link, False)


async def test_stop_detaches_only_its_own_devices(env: Env, tmp_path: Path) -> None:
    foreign_file = tmp_path / "foreign.img"
    foreign_file.write_bytes(b"\0" * 1024 * 1024)
    foreign = subprocess.run(
        ["losetup", "--find", "--show", str(foreign_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        _, _, _, link = await _nvme_attach(env, "ffffffff")
        ours = os.readlink(link)
        await env.sim.stop()
        attached = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
        assert ours + ":" not in attached
        assert foreign + ":" in attached
        assert not link.exists()
    finally:
        subprocess.run(["losetup", "-d", foreign], check=True)


async def test_second_emulated_host(env: Env) -> None:
    async with (
        __import__("aiohttp").ClientSession(base_url=env.sim.url) as s,
        s.post("/_sim/fabric/hosts", json={"name": "node2"}) as r,
    ):
        desc = await r.json()
    node2 = env.sim.fabric.hosts["node2"]
    assert desc["sdc_guid"]
    vol = await env.client.create_volume(env.pool_id, GIB, "shared")
    await env.client.map_sdc(vol, guid=desc["sdc_guid"])
    link = node2.by_id / f"emc-vol-{env.sim.array.system_id}-{vol}"
    await asyncio.to_thread(wait_for, link)
    assert not (env.host.by_id / link.name).exists()  # only node2 sees it
    await env.client.unmap_sdc(vol)
    await asyncio.to_thread(wait_for, link, False)


async def test_a_device_is_known_by_its_nguid_and_stale_links_go(env: Env) -> None:
    """The fabric shows each namespace's NGUID as the kernel does (``sys/block/<dev>/
    wwid``), so a link can be checked against the volume it should lead to; links an
    unclean stop left behind are gone when the host is set up again."""
    vol, host, _, link = await _nvme_attach(env, "bbbbbbbb")
    system = env.sim.array.system_id
    nvme = NvmeHost(SubprocessRunner(), NvmeConfig(by_id=env.host.by_id, sys=env.host.sys_root))
    assert nvme.serves(link, vol, system)
    assert not nvme.serves(link, "0123456789abcdef", system)
    # A stale link (an unclean stop): it leads to a device, but not to the volume's.
    stale = env.host.by_id / f"nvme-eui.{nguid('0123456789abcdef', system)}"
    stale.symlink_to(os.readlink(link))
    assert stale.exists()
    assert not nvme.serves(stale, "0123456789abcdef", system)
    assert nvme.linked_volumes(system).keys() == {vol, "0123456789abcdef"}
    await env.client.unmap_host(vol, host)
    await asyncio.to_thread(wait_for, link, False)
    env.sim.fabric.add_host("local", env.host.by_id, env.host.sdc_guid)
    assert not stale.is_symlink()
    await env.client.remove_host(host)
    await env.client.remove_volume(vol)
