"""PowerFlex 5 through the service, on a simulator serving the 5.x rules: 1 GiB sizes,
1022 snapshots per volume family, the version kept in the pool."""

from __future__ import annotations

import pytest

from lxflex.secret import Secret
from lxflex.service import Storage

from ..conftest import GIB
from .conftest import StorageFactory

pytestmark = pytest.mark.root


@pytest.fixture
async def storage(make_storage: StorageFactory) -> Storage:
    return await make_storage("5.0")


async def test_sizes_in_gib_steps(storage: Storage) -> None:
    pool = await storage.pools.get("pf")
    assert pool.config["volatile.powerflex.version"].startswith("5.")
    assert pool.config["volume.size"] == "1GiB"
    view = await storage.volumes.create("pf", "small", content_type="block")
    assert view.config["size"] == "1GiB"
    odd = await storage.volumes.create(
        "pf", "odd", content_type="block", config={"size": "2500MiB"}
    )
    assert odd.config["size"] == "3GiB"  # rounded up to the next GiB, not to 8 GiB
    record = await storage.volumes.record("pf", "odd")
    assert record.array_id is not None
    array = storage.sim.array.volumes[record.array_id]  # type: ignore[attr-defined]
    assert array.size_kb * 1024 == 3 * GIB
    grown = await storage.volumes.update("pf", "odd", {"size": "5GiB"})
    assert grown.config["size"] == "5GiB"
    updated = await storage.pools.update("pf", {**pool.config, "volume.size": "3GiB"})
    assert updated.config["volume.size"] == "3GiB"  # a multiple of 1 GiB is fine on 5.x
    fs = await storage.volumes.create("pf", "fs")
    assert fs.config["size"] == "3GiB"
    for name in ("small", "odd", "fs"):
        await storage.volumes.delete("pf", name)


async def test_snapshot_limit_is_1022(storage: Storage) -> None:
    runtime = await storage.pools.runtime(await storage.pools.record("pf"))
    assert runtime.volumes.snapshot_limit == 1022
    await storage.volumes.create("pf", "many", content_type="block")
    for i in range(130):  # beyond the 126 of PowerFlex 4
        await storage.volumes.snapshot("pf", "many", f"s{i}")
    view = await storage.volumes.get("pf", "many")
    assert len(view.snapshots) == 130
    copy = await storage.volumes.copy("pf", "many", "pf", "many-copy", with_snapshots=False)
    assert copy.config["size"] == "1GiB"


async def _pool_with_snapshot_copy(storage: Storage, password: str) -> str:
    """A second pool on the same array whose copies are made on the array."""
    config = dict((await storage.pools.get("pf")).config)
    config = {k: v for k, v in config.items() if not k.startswith("volatile.")}
    config["powerflex.snapshot_copy"] = "true"
    await storage.pools.create("arr", "powerflex", config, password=Secret(password))
    return "arr"


async def _write(storage: Storage, pool: str, name: str, data: bytes) -> None:
    path = await storage.volumes.mount(pool, name)
    (path / "data").write_bytes(data)
    await storage.volumes.unmount(pool, name)


async def _read(storage: Storage, pool: str, name: str) -> bytes:
    path = await storage.volumes.mount(pool, name)
    try:
        return (path / "data").read_bytes()
    finally:
        await storage.volumes.unmount(pool, name)


async def test_copies_with_snapshots_on_the_array(storage: Storage, password: str) -> None:
    """With powerflex.snapshot_copy on PowerFlex 5, a copy with its snapshots is a thin
    clone refreshed from each snapshot in turn: no block crosses the host."""
    pool = await _pool_with_snapshot_copy(storage, password)
    await storage.volumes.create(pool, "src", config={"block.filesystem": "xfs"})
    for step in (b"one", b"two"):
        await _write(storage, pool, "src", step)
        await storage.volumes.snapshot(pool, "src", step.decode())
    await _write(storage, pool, "src", b"now")
    sim = storage.sim  # type: ignore[attr-defined]
    before = dict(sim.counters)

    copy = await storage.volumes.copy(pool, "src", pool, "dst", config={"size": "2GiB"})
    calls = {k: n - before.get(k, 0) for k, n in sim.counters.items() if n != before.get(k, 0)}
    assert copy.snapshots == ["one", "two"]
    assert copy.config["size"] == "2GiB"
    assert sum(n for k, n in calls.items() if k.endswith("/createThinClone")) == 1
    assert sum(n for k, n in calls.items() if k.endswith("/refresh")) == 2
    assert sum(n for k, n in calls.items() if k.endswith("/createSnapshot")) == 2
    source = await storage.volumes.record(pool, "src")
    target = await storage.volumes.record(pool, "dst")
    assert target.array_id is not None
    assert source.array_id is not None
    clone = sim.array.volumes[target.array_id]
    assert clone.volume_type == "ThinClone"
    assert clone.vtree_id == sim.array.volumes[source.array_id].vtree_id
    assert clone.size_kb * 1024 == 2 * GIB
    # Content of the copy and of each copied snapshot; XFS mounts both side by side only
    # because each step of the copy got a filesystem UUID of its own.
    await storage.volumes.mount(pool, "src")
    try:
        assert await _read(storage, pool, "dst") == b"now"
    finally:
        await storage.volumes.unmount(pool, "src")
    for snap in ("one", "two"):
        await storage.volumes.restore(pool, "dst", snap)
        assert await _read(storage, pool, "dst") == snap.encode()
    for name in ("dst", "src"):
        await storage.volumes.delete(pool, name)
    assert sim.array.volumes == {}


async def test_failed_array_copy_leaves_nothing(storage: Storage, password: str) -> None:
    from lxflex.sim.control import Fault

    pool = await _pool_with_snapshot_copy(storage, password)
    await storage.volumes.create(pool, "src", content_type="block")
    await storage.volumes.snapshot(pool, "src", "s1")
    sim = storage.sim  # type: ignore[attr-defined]
    names = {v.name for v in sim.array.volumes.values()}
    sim.faults.append(Fault(route="*/action/refresh", http_status=500, error_code=65, count=1))
    with pytest.raises(Exception):  # noqa: B017, PT011 - any failure; the point is the cleanup
        await storage.volumes.copy(pool, "src", pool, "dst")
    assert {v.name for v in sim.array.volumes.values()} == names
    assert [v.name for v in await storage.volumes.all(pool)] == ["src"]


async def test_vm_pair_copied_on_the_array(storage: Storage, password: str) -> None:
    pool = await _pool_with_snapshot_copy(storage, password)
    view = await storage.instances.create(pool, "virtual-machine", "vm1")
    assert view.config["size"] == "1GiB"  # and a 1 GiB filesystem twin: 2 GiB in all
    await storage.instances.snapshot(pool, "virtual-machine", "vm1", "s1")
    sim = storage.sim  # type: ignore[attr-defined]
    before = dict(sim.counters)
    copy = await storage.instances.copy(pool, "virtual-machine", "vm1", "vm2")
    calls = {k: n - before.get(k, 0) for k, n in sim.counters.items()}
    assert copy.snapshots == ["s1"]
    assert sum(n for k, n in calls.items() if k.endswith("/createThinClone")) == 2
    assert sum(n for k, n in calls.items() if k.endswith("/refresh")) == 2
    record = await storage.instances.record(pool, "virtual-machine", "vm2")
    kinds = {sim.array.volumes[i].volume_type for i in (record.array_id, record.fs_array_id)}
    assert kinds == {"ThinClone"}
    for name in ("vm2", "vm1"):
        await storage.instances.delete(pool, "virtual-machine", name)
    assert sim.array.volumes == {}
