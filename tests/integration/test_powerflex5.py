"""PowerFlex 5 through the service, on a simulator serving the 5.x rules: 1 GiB sizes,
1022 snapshots per volume family, the version kept in the pool."""

from __future__ import annotations

import pytest

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
