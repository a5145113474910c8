"""The storage service end to end: simulator, emulated NVMe/TCP fabric, real loop devices,
filesystems and mounts, and the state database."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lxflex.driver.config import ConfigError
from lxflex.driver.errors import Conflict, DriverError, InvalidRequest, NotFound
from lxflex.embedded import host_settings
from lxflex.host.fs import is_mounted
from lxflex.host.runner import CommandError
from lxflex.secret import Secret
from lxflex.service import PASSWORD_KEY, HostSettings, PoolService, Storage, VolumeService
from lxflex.sim import Simulator
from lxflex.state import DELETE_BEGIN, Database

from ..conftest import GIB, SimFactory
from .conftest import read_chunks, write_chunks

pytestmark = pytest.mark.root


@dataclass
class Stack:
    sim: Simulator
    db: Database
    pools: PoolService
    volumes: VolumeService
    settings: HostSettings
    config: dict[str, str]
    mode: str
    password: Secret

    def array_volumes(self) -> dict[str, object]:
        return dict(self.sim.array.volumes)


@pytest.fixture(params=["nvme/tcp", "sdc"])
def mode(request: pytest.FixtureRequest, db_url: str) -> str:
    """The transport: each test runs over NVMe/TCP and over the SDC."""
    if request.param == "sdc" and not db_url.startswith("sqlite"):
        pytest.skip("the SDC matrix runs on SQLite: the database is the same for both modes")
    return str(request.param)


@pytest.fixture
async def stack(
    no_leaked_loops: None,
    make_sim: SimFactory,
    password: str,
    tmp_path: Path,
    db_url: str,
    mode: str,
) -> AsyncIterator[Stack]:
    sim = await make_sim(api_version="4.5")
    settings = host_settings(sim, tmp_path / "lxflex")
    storage = await Storage.open(settings, db_url)
    db, pools, volumes = storage.db, storage.pools, storage.volumes
    config = {
        "powerflex.gateway": sim.url,
        "powerflex.pool": "sp1",
        "powerflex.domain": "pd1",
        "powerflex.mode": mode,
    }
    try:
        yield Stack(sim, db, pools, volumes, settings, config, mode, Secret(password))
    finally:
        mounts = subprocess.run(
            ["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True
        ).stdout
        for target in sorted(mounts.split(), reverse=True):
            if target.startswith(str(tmp_path)):
                subprocess.run(["umount", "-l", target], check=False)
        await storage.close()


def _leftovers(stack: Stack) -> dict[str, object]:
    """What a failed or finished operation must not leave: array volumes, mappings, devices."""
    host = stack.sim.fabric.hosts["local"]
    return {
        "volumes": sorted(v.name or v.id for v in stack.sim.array.volumes.values()),
        "mapped": sorted(v.id for v in stack.sim.array.volumes.values() if v.mappings),
        "devices": sorted(p.name for p in host.by_id.iterdir()),
    }


async def test_pool_create_show_resources_delete(stack: Stack, password: str) -> None:
    view = await stack.pools.create(
        "pf", "powerflex", stack.config, "first pool", password=stack.password
    )
    assert view.config["powerflex.mode"] == stack.mode
    if stack.mode == "sdc":
        assert "powerflex.sdt" not in view.config
    else:
        assert view.config["powerflex.sdt"] == "127.0.0.11,127.0.0.12"
    assert view.config["volatile.powerflex.version"] == "4.5"
    assert view.config["volume.size"] == "8GiB"
    assert PASSWORD_KEY not in view.config
    assert all(password not in v for v in view.config.values())
    record = await stack.pools.record("pf")
    assert record.password == stack.password
    assert password not in repr(record)
    used, total = await stack.pools.resources("pf")
    assert (used, total) == (0, 4096 * GIB)
    with pytest.raises(Conflict):
        await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    await stack.volumes.create("pf", "v1", content_type="block")
    with pytest.raises(InvalidRequest, match="in use: it still has 1 volume"):
        await stack.pools.delete("pf")
    with pytest.raises(InvalidRequest, match="cannot be changed"):
        await stack.pools.update("pf", {**stack.config, "powerflex.pool": "sp2"})
    updated = await stack.pools.update("pf", {**view.config, "volume.size": "16GiB"})
    assert updated.config["volume.size"] == "16GiB"  # password kept though not given
    with pytest.raises(ConfigError, match="refused"):  # a new password is checked first
        await stack.pools.update("pf", updated.config, password=Secret("wrong"))
    assert (await stack.pools.record("pf")).password == stack.password
    v2 = await stack.volumes.create("pf", "v2", content_type="block")
    assert v2.config["size"] == "16GiB"  # a new volume sees the pool's new default
    await stack.volumes.delete("pf", "v1")
    await stack.volumes.delete("pf", "v2")
    await stack.pools.delete("pf")
    assert await stack.pools.all() == []
    with pytest.raises(NotFound):
        await stack.volumes.create("pf", "v3", content_type="block")


@pytest.mark.parametrize(
    ("change", "key", "text"),
    [
        ({PASSWORD_KEY: "wrong"}, PASSWORD_KEY, "refused"),
        ({"powerflex.pool": "sp2"}, "powerflex.pool", "zero padding"),
        ({"powerflex.domain": "pd9"}, "powerflex.domain", "no protection domain"),
        ({"powerflex.pool": "nope"}, "powerflex.pool", "no storage pool"),
        (
            {"powerflex.pool": "0123456789abcdef", "powerflex.domain": ""},
            "powerflex.pool",
            "no storage pool",
        ),
        ({"volume.size": "12GiB"}, "volume.size", "multiple of 8GiB"),
        ({"powerflex.mode": "fc"}, "powerflex.mode", "one of"),
    ],
)
async def test_pool_create_checks_everything_first(
    stack: Stack, change: dict[str, str], key: str, text: str
) -> None:
    given = {**stack.config, **change}
    password = Secret(given.pop(PASSWORD_KEY)) if PASSWORD_KEY in given else stack.password
    with pytest.raises(ConfigError) as info:
        await stack.pools.create("bad", "powerflex", given, password=password)
    assert info.value.key == key
    assert text in str(info.value)
    assert await stack.pools.all() == []


async def test_mode_discovery_failure_says_what_is_missing(stack: Stack, tmp_path: Path) -> None:
    empty = tmp_path / "bare-host"
    empty.mkdir()
    stack.pools.runtimes.host = HostSettings(state_dir=stack.settings.state_dir, host_root=empty)
    discovered = {k: v for k, v in stack.config.items() if k != "powerflex.mode"}
    with pytest.raises(ConfigError) as info:
        await stack.pools.create("bad", "powerflex", discovered, password=stack.password)
    assert info.value.key == "powerflex.mode"
    assert "nvme_tcp and nvme_fabrics" in str(info.value)  # what each mode lacks
    assert "scini" in str(info.value)
    with pytest.raises(ConfigError) as info:  # the mode asked for: what it lacks
        await stack.pools.create("bad", "powerflex", stack.config, password=stack.password)
    assert ("drv_cfg" in str(info.value)) == (stack.mode == "sdc")
    assert ("nvme_tcp" in str(info.value)) == (stack.mode != "sdc")


@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs"])
async def test_filesystem_volume_lifecycle(stack: Stack, fstype: str) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    view = await stack.volumes.create(
        "pf", "data", config={"size": "10GiB", "block.filesystem": fstype}
    )
    assert view.config["size"] == "16GiB"  # rounded up to 8 GiB steps and reported back
    assert view.config["block.filesystem"] == fstype
    assert view.config["block.type"] == "thin"
    assert _leftovers(stack)["mapped"] == []  # mkfs done, unmapped again
    array = next(iter(stack.sim.array.volumes.values()))
    assert array.name is not None
    assert array.name.startswith("u_")
    assert len(array.name) == 26

    path = await stack.volumes.mount("pf", "data")
    assert is_mounted(path)
    (path / "file.txt").write_text("before snapshot")
    await stack.volumes.snapshot("pf", "data", "snap0")
    (path / "file.txt").write_text("after snapshot")
    (path / "new.txt").write_text("only after")
    await stack.volumes.restore("pf", "data", "snap0")
    assert is_mounted(path)  # remounted
    assert (path / "file.txt").read_text() == "before snapshot"
    assert not (path / "new.txt").exists()

    await stack.volumes.update("pf", "data", {"size": "24GiB"})
    stats = os.statvfs(path)
    assert stats.f_blocks * stats.f_frsize > 20 * GIB  # the filesystem grew with the volume
    with pytest.raises(InvalidRequest, match="only grow"):
        await stack.volumes.update("pf", "data", {"size": "8GiB"})

    await stack.volumes.unmount("pf", "data")
    assert not is_mounted(path)
    await stack.volumes.delete("pf", "data")
    assert _leftovers(stack) == {"volumes": [], "mapped": [], "devices": []}
    host = stack.sim.fabric.hosts["local"]
    assert list((host.sys_root / "class" / "nvme").iterdir()) == []  # disconnected


async def test_block_volume_copy_keeps_data_and_stays_thin(stack: Stack) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    await stack.volumes.create("pf", "blk", content_type="block", config={"size": "8GiB"})
    runtime = await stack.pools.runtime(await stack.pools.record("pf"))
    src_id = (await stack.volumes.record("pf", "blk")).array_id
    assert src_id is not None
    chunks = {0: os.urandom(65536), 3 * GIB: os.urandom(1 << 20), 8 * GIB - 4096: os.urandom(4096)}
    await write_chunks(runtime.volumes, src_id, chunks)
    await stack.volumes.snapshot("pf", "blk", "s0")
    seen: list[tuple[int, int]] = []
    copy = await stack.volumes.copy(
        "pf", "blk", "pf", "blk-copy", progress=lambda d, t: seen.append((d, t))
    )
    assert copy.snapshots == ["s0"]
    assert seen[-1][0] == seen[-1][1]
    target = await stack.volumes.record("pf", "blk-copy")
    assert target.array_id is not None
    assert (
        stack.sim.array.volumes[target.array_id].vtree_id
        != stack.sim.array.volumes[src_id].vtree_id
    )
    allocated = stack.sim.data.allocated(target.array_id)
    assert allocated <= (sum(len(c) for c in chunks.values()) + 1 << 20) * 1.1
    assert await read_chunks(runtime.volumes, target.array_id, chunks) == chunks
    for name in ("blk-copy", "blk"):
        await stack.volumes.delete("pf", name)
    assert _leftovers(stack) == {"volumes": [], "mapped": [], "devices": []}


async def test_snapshot_limit_checked_first(stack: Stack) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    await stack.volumes.create("pf", "lim", content_type="block")
    vol = await stack.volumes.record("pf", "lim")
    runtime = await stack.pools.runtime(await stack.pools.record("pf"))
    from lxflex.powerflex import SnapshotDef

    assert vol.array_id is not None
    for start in (0, 100):
        defs = [SnapshotDef(vol.array_id, f"x{i}") for i in range(start, min(start + 100, 126))]
        await runtime.client.snapshot_volumes(defs)
    before = dict(stack.sim.counters)
    with pytest.raises(Conflict, match="already holds 126 snapshots"):
        await stack.volumes.snapshot("pf", "lim", "one-too-many")
    after = dict(stack.sim.counters)
    assert after.get("POST /api/instances/System/action/snapshotVolumes") == before.get(
        "POST /api/instances/System/action/snapshotVolumes"
    )
    assert await stack.volumes.snapshots("pf", "lim") == []


async def test_names_and_errors(stack: Stack) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    with pytest.raises(NotFound):
        await stack.volumes.get("pf", "missing")
    with pytest.raises(InvalidRequest):
        await stack.volumes.create("pf", "bad name")
    with pytest.raises(ConfigError, match="unknown volume"):
        await stack.volumes.create("pf", "x", config={"zfs.blocksize": "8k"})
    await stack.volumes.create("pf", "a", content_type="block")
    with pytest.raises(Conflict):
        await stack.volumes.create("pf", "a", content_type="block")
    renamed = await stack.volumes.rename("pf", "a", "b")
    assert renamed.name == "b"
    await stack.volumes.snapshot("pf", "b", "s1")
    await stack.volumes.rename_snapshot("pf", "b", "s1", "s2")
    assert [s.name for s in await stack.volumes.snapshots("pf", "b")] == ["s2"]
    await stack.volumes.delete_snapshot("pf", "b", "s2")
    await stack.volumes.delete("pf", "b")
    assert _leftovers(stack)["volumes"] == []


@pytest.mark.parametrize(
    "route",
    [
        "POST /api/types/Volume/instances",
        "POST /api/instances/Volume::{id}/action/addMappedHost",
        "POST /api/types/Host/instances",
    ],
)
async def test_failed_create_leaves_nothing(stack: Stack, route: str) -> None:
    if stack.mode == "sdc" and route == "POST /api/types/Host/instances":
        pytest.skip("an SDC is registered by the SDC software: lxflex creates no host")
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    from lxflex.sim.control import Fault

    stack.sim.faults.append(Fault(route=route, http_status=500, error_code=65, count=1))
    with pytest.raises(Exception):  # noqa: B017, PT011 - any failure; the point is the cleanup
        await stack.volumes.create("pf", "doomed")
    assert _leftovers(stack) == {"volumes": [], "mapped": [], "devices": []}
    assert await stack.volumes.all("pf") == []
    await stack.volumes.create("pf", "doomed")  # the name is free again
    await stack.volumes.delete("pf", "doomed")


async def test_failed_mkfs_leaves_nothing(stack: Stack, tmp_path: Path) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    # A filesystem tool that fails: the volume must go again, unmapped.
    runtime = await stack.pools.runtime(await stack.pools.record("pf"))
    real = runtime.volumes.fs.make

    async def broken(device: Path, fstype: str) -> None:
        raise CommandError(["mkfs.ext4", str(device)], 1, "mkfs.ext4: No space left on device")

    runtime.volumes.fs.make = broken  # type: ignore[method-assign]
    try:
        with pytest.raises(
            DriverError, match=r"make filesystem: mkfs\.ext4 failed: mkfs\.ext4: No space"
        ):
            await stack.volumes.create("pf", "nofs")
    finally:
        runtime.volumes.fs.make = real  # type: ignore[method-assign]
    assert _leftovers(stack) == {"volumes": [], "mapped": [], "devices": []}
    assert await stack.volumes.all("pf") == []
    await asyncio.sleep(0)


def _fault(stack: Stack, route: str, count: int = 1) -> None:
    from lxflex.sim.control import Fault

    stack.sim.faults.append(Fault(route=route, http_status=500, error_code=65, count=count))


async def _state_rows(stack: Stack) -> tuple[list[str], list[str]]:
    from lxflex.state import store as st

    pool = await stack.pools.record("pf")
    async with stack.db.read() as conn:
        vols = await st.list_volumes(conn, pool.id)
        snaps = [s.name for v in vols for s in await st.list_snapshots(conn, v.id)]
    return [v.name for v in vols], snaps


async def test_failed_snapshot_leaves_nothing(stack: Stack) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    await stack.volumes.create("pf", "v", content_type="block")
    _fault(stack, "POST /api/instances/System/action/snapshotVolumes")
    with pytest.raises(DriverError):
        await stack.volumes.snapshot("pf", "v", "s")
    assert await _state_rows(stack) == (["v"], [])
    assert len(stack.sim.array.volumes) == 1
    await stack.volumes.snapshot("pf", "v", "s")  # works once the fault is spent
    await stack.volumes.delete("pf", "v")


@pytest.mark.parametrize(
    "route",
    [
        "POST /api/types/Volume/instances",
        "POST /api/instances/Volume::{id}/action/addMappedHost",
        "POST /api/instances/System/action/snapshotVolumes",
        "GET /api/instances/VTree::{id}/relationships/Volume",
    ],
)
async def test_failed_copy_leaves_nothing(stack: Stack, route: str) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    await stack.volumes.create("pf", "src", content_type="block")
    await stack.volumes.snapshot("pf", "src", "s0")
    before = sorted(stack.sim.array.volumes)
    _fault(stack, route)
    with pytest.raises(DriverError):
        await stack.volumes.copy("pf", "src", "pf", "dst")
    assert sorted(stack.sim.array.volumes) == before
    assert _leftovers(stack)["mapped"] == []
    assert _leftovers(stack)["devices"] == []
    assert await _state_rows(stack) == (["src"], ["s0"])
    await stack.volumes.delete("pf", "src")


async def test_unreachable_targets_leave_nothing(stack: Stack) -> None:
    if stack.mode == "sdc":
        pytest.skip("NVMe/TCP targets: the SDC reaches its MDMs by itself")
    # A storage-only address serves no hosts: connecting fails after the mapping.
    await stack.pools.create(
        "pf", "powerflex", {**stack.config, "powerflex.sdt": "127.0.1.11"}, password=stack.password
    )
    with pytest.raises(DriverError, match="no NVMe/TCP target answered"):
        await stack.volumes.create("pf", "fs")
    assert _leftovers(stack) == {"volumes": [], "mapped": [], "devices": []}
    assert await _state_rows(stack) == ([], [])


@pytest.mark.parametrize("fstype", ["ext4", "xfs"])
async def test_filesystem_copy_mounts_beside_its_source(stack: Stack, fstype: str) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    await stack.volumes.create("pf", "orig", config={"block.filesystem": fstype})
    path = await stack.volumes.mount("pf", "orig")
    (path / "hello").write_text("copied data")
    await stack.volumes.unmount("pf", "orig")
    copy = await stack.volumes.copy("pf", "orig", "pf", "twin", config={"size": "16GiB"})
    assert copy.config["size"] == "16GiB"
    first = await stack.volumes.mount("pf", "orig")
    second = await stack.volumes.mount("pf", "twin")  # a duplicate UUID would refuse this
    assert (second / "hello").read_text() == "copied data"
    stats = os.statvfs(second)
    assert stats.f_blocks * stats.f_frsize > 12 * GIB  # grown to the larger size
    assert first != second
    for name in ("orig", "twin"):
        await stack.volumes.unmount("pf", name)
        await stack.volumes.delete("pf", name)
    assert _leftovers(stack) == {"volumes": [], "mapped": [], "devices": []}


async def test_copy_without_clone_copy_is_an_array_snapshot(stack: Stack) -> None:
    await stack.pools.create(
        "pf",
        "powerflex",
        {**stack.config, "powerflex.clone_copy": "false"},
        password=stack.password,
    )
    await stack.volumes.create("pf", "base", content_type="block")
    copy = await stack.volumes.copy("pf", "base", "pf", "quick", with_snapshots=False)
    assert copy.snapshots == []
    base = await stack.volumes.record("pf", "base")
    quick = await stack.volumes.record("pf", "quick")
    assert base.array_id is not None
    assert quick.array_id is not None
    arr = stack.sim.array.volumes
    assert arr[quick.array_id].vtree_id == arr[base.array_id].vtree_id
    assert arr[quick.array_id].name is not None
    assert not arr[quick.array_id].name.startswith("s")  # a volume of its own, not a snapshot name
    await stack.volumes.delete("pf", "quick")
    await stack.volumes.delete("pf", "base")
    assert _leftovers(stack)["volumes"] == []


async def test_thick_volumes_show_in_pool_usage(stack: Stack) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    used0, _ = await stack.pools.resources("pf")
    await stack.volumes.create("pf", "thin1", content_type="block", config={"size": "16GiB"})
    used1, _ = await stack.pools.resources("pf")
    await stack.volumes.create(
        "pf", "thick1", content_type="block", config={"size": "16GiB", "block.type": "thick"}
    )
    used2, _ = await stack.pools.resources("pf")
    assert used1 - used0 < GIB  # thin: nothing written, nothing used
    assert used2 - used1 == 16 * GIB  # thick: reserved in full
    view = await stack.volumes.get("pf", "thick1")
    assert view.config["block.type"] == "thick"
    with pytest.raises(ConfigError, match="cannot be changed"):
        await stack.volumes.update("pf", "thick1", {"block.type": "thin"})
    for name in ("thin1", "thick1"):
        await stack.volumes.delete("pf", name)


async def test_copy_after_growth_with_an_older_smaller_snapshot(stack: Stack) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    await stack.volumes.create("pf", "grown")
    path = await stack.volumes.mount("pf", "grown")
    (path / "v").write_text("one")
    await stack.volumes.snapshot("pf", "grown", "small")
    await stack.volumes.update("pf", "grown", {"size": "24GiB"})
    (path / "v").write_text("two")
    await stack.volumes.unmount("pf", "grown")
    copy = await stack.volumes.copy("pf", "grown", "pf", "grown-copy")
    assert copy.config["size"] == "24GiB"
    copied = await stack.volumes.mount("pf", "grown-copy")
    assert (copied / "v").read_text() == "two"
    await stack.volumes.restore("pf", "grown-copy", "small")
    assert (copied / "v").read_text() == "one"
    for name in ("grown-copy", "grown"):
        await stack.volumes.unmount("pf", name)
        await stack.volumes.delete("pf", name)


async def test_attach_is_reference_counted_and_idempotent(stack: Stack) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    await stack.volumes.create("pf", "rc", content_type="block")
    vol_id = (await stack.volumes.record("pf", "rc")).array_id
    assert vol_id is not None
    attacher = (await stack.pools.runtime(await stack.pools.record("pf"))).volumes.attacher
    first = await attacher.attach(vol_id)
    second = await attacher.attach(vol_id)
    assert first == second
    assert len(stack.sim.array.volumes[vol_id].mappings) == 1
    await attacher.detach(vol_id)
    assert stack.sim.array.volumes[vol_id].mappings  # one user left
    await attacher.detach(vol_id)
    assert not stack.sim.array.volumes[vol_id].mappings
    await attacher.detach(vol_id)  # detaching a detached volume is not an error
    await stack.volumes.delete("pf", "rc")


async def test_delete_of_a_volume_gone_from_the_array(stack: Stack) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    await stack.volumes.create("pf", "ghost", content_type="block")
    await stack.volumes.snapshot("pf", "ghost", "s")
    runtime = await stack.pools.runtime(await stack.pools.record("pf"))
    from lxflex.powerflex import RemoveMode

    vol_id = (await stack.volumes.record("pf", "ghost")).array_id
    assert vol_id is not None
    await runtime.client.remove_volume(vol_id, RemoveMode.WHOLE_VTREE)  # behind lxflex's back
    await stack.volumes.delete("pf", "ghost")
    assert await _state_rows(stack) == ([], [])


async def test_failed_delete_can_be_retried(stack: Stack) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    await stack.volumes.create("pf", "sticky", content_type="block")
    await stack.volumes.snapshot("pf", "sticky", "s")
    _fault(stack, "POST /api/instances/Volume::{id}/action/removeVolume")
    with pytest.raises(DriverError):
        await stack.volumes.delete("pf", "sticky")
    await stack.volumes.delete("pf", "sticky")
    assert _leftovers(stack) == {"volumes": [], "mapped": [], "devices": []}
    assert await _state_rows(stack) == ([], [])


async def test_failed_resize_and_restore_change_nothing(stack: Stack) -> None:
    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    await stack.volumes.create("pf", "firm")
    path = await stack.volumes.mount("pf", "firm")
    (path / "f").write_text("kept")
    await stack.volumes.snapshot("pf", "firm", "s")
    _fault(stack, "POST /api/instances/Volume::{id}/action/setVolumeSize")
    with pytest.raises(DriverError):
        await stack.volumes.update("pf", "firm", {"size": "16GiB"})
    assert (await stack.volumes.get("pf", "firm")).config["size"] == "8GiB"
    _fault(stack, "POST /api/instances/Volume::{id}/action/overwriteVolumeContent")
    (path / "f").write_text("newer")
    with pytest.raises(DriverError):
        await stack.volumes.restore("pf", "firm", "s")
    assert is_mounted(path)  # remounted after the failed restore
    assert (path / "f").read_text() == "newer"
    await stack.volumes.unmount("pf", "firm")
    await stack.volumes.delete("pf", "firm")


async def test_recovery_after_a_crash(stack: Stack) -> None:
    import uuid as uuidlib

    from lxflex.driver.naming import Content, VolumeType, volume_name
    from lxflex.powerflex import SnapshotDef
    from lxflex.state import store as st

    await stack.pools.create("pf", "powerflex", stack.config, password=stack.password)
    await stack.volumes.create("pf", "kept", content_type="block")
    await stack.volumes.create("pf", "half-deleted", content_type="block")
    runtime = await stack.pools.runtime(await stack.pools.record("pf"))
    pool = await stack.pools.record("pf")
    # A create cut short after the array volume was made, before its ID was recorded.
    orphan_uuid = uuidlib.uuid4()
    await runtime.client.create_volume(
        runtime.resolved.pool_id, GIB, volume_name(VolumeType.CUSTOM, Content.BLOCK, orphan_uuid)
    )
    kept = await stack.volumes.record("pf", "kept")
    assert kept.array_id is not None
    snap_uuid = uuidlib.uuid4()
    await runtime.client.snapshot_volumes(
        [
            SnapshotDef(
                kept.array_id,
                volume_name(VolumeType.CUSTOM, Content.BLOCK, snap_uuid, snapshot=True),
            )
        ]
    )
    async with stack.db.write() as conn:
        await st.create_volume(
            conn,
            pool.id,
            "default",
            "half-created",
            "custom",
            "block",
            {"size": "8GiB", "volatile.uuid": str(orphan_uuid)},
        )
        await st.create_snapshot(
            conn, kept.id, "half-snap", {"size": "8GiB", "volatile.uuid": str(snap_uuid)}
        )
        half = await st.get_volume(conn, pool.id, "default", "custom", "half-deleted")
        assert half is not None
        await st.update_volume(conn, half.id, step=DELETE_BEGIN)
    assert len(stack.sim.array.volumes) == 4
    repaired = await _storage_recover(stack)
    assert repaired == 3
    assert [v.name for v in await stack.volumes.all("pf")] == ["kept"]
    assert list(stack.sim.array.volumes) == [kept.array_id]
    assert await stack.volumes.snapshots("pf", "kept") == []
    assert await _storage_recover(stack) == 0  # nothing left to repair
    await stack.volumes.delete("pf", "kept")


async def _storage_recover(stack: Stack) -> int:
    from lxflex.service import AttachmentService, InstanceService, Storage, TrustService
    from lxflex.service.backups import BackupService
    from lxflex.service.cluster import ClusterService
    from lxflex.service.iso import IsoService
    from lxflex.service.projects import ProjectService

    runtimes = stack.pools.runtimes
    storage = Storage(
        stack.db,
        runtimes,
        stack.pools,
        stack.volumes,
        TrustService(stack.db, runtimes.uuid),
        BackupService(stack.db, stack.pools, stack.volumes),
        IsoService(stack.db, stack.pools, stack.volumes),
        InstanceService(stack.db, stack.pools, stack.volumes),
        ProjectService(stack.db, stack.pools.events),
        ClusterService(stack.db, runtimes.uuid, None),
        AttachmentService(stack.db, stack.pools, stack.volumes, runtimes.uuid),
    )
    return await storage.recover()
