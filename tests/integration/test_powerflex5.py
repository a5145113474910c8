"""PowerFlex 5 through the service, on a simulator serving the 5.x rules: 1 GiB sizes,
1022 snapshots per volume family, the version kept in the pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lxflex.embedded import host_settings
from lxflex.service import Storage

from ..conftest import GIB, SimFactory

pytestmark = pytest.mark.root


@pytest.fixture
async def storage(
    no_leaked_loops: None, make_sim: SimFactory, password: str, tmp_path: Path
) -> AsyncIterator[Storage]:
    sim = await make_sim(api_version="5.0")
    store = await Storage.open(host_settings(sim, tmp_path / "lxflex"))
    store.sim = sim  # type: ignore[attr-defined]
    config = {
        "powerflex.gateway": sim.url,
        "powerflex.user.password": password,
        "powerflex.pool": "sp1",
        "powerflex.domain": "pd1",
    }
    await store.pools.create("pf5", "powerflex", config)
    try:
        yield store
    finally:
        await store.close()


async def test_sizes_in_gib_steps(storage: Storage) -> None:
    pool = await storage.pools.get("pf5")
    assert pool.config["volatile.powerflex.version"].startswith("5.")
    assert pool.config["volume.size"] == "1GiB"
    view = await storage.volumes.create("pf5", "small", content_type="block")
    assert view.config["size"] == "1GiB"
    odd = await storage.volumes.create(
        "pf5", "odd", content_type="block", config={"size": "2500MiB"}
    )
    assert odd.config["size"] == "3GiB"  # rounded up to the next GiB, not to 8 GiB
    record = await storage.volumes.record("pf5", "odd")
    assert record.array_id is not None
    array = storage.sim.array.volumes[record.array_id]  # type: ignore[attr-defined]
    assert array.size_kb * 1024 == 3 * GIB
    grown = await storage.volumes.update("pf5", "odd", {"size": "5GiB"})
    assert grown.config["size"] == "5GiB"
    updated = await storage.pools.update("pf5", {**pool.config, "volume.size": "3GiB"})
    assert updated.config["volume.size"] == "3GiB"  # a multiple of 1 GiB is fine on 5.x
    fs = await storage.volumes.create("pf5", "fs")
    assert fs.config["size"] == "3GiB"
    for name in ("small", "odd", "fs"):
        await storage.volumes.delete("pf5", name)


async def test_snapshot_limit_is_1022(storage: Storage) -> None:
    runtime = await storage.pools.runtime(await storage.pools.record("pf5"))
    assert runtime.volumes.snapshot_limit == 1022
    await storage.volumes.create("pf5", "many", content_type="block")
    for i in range(130):  # beyond the 126 of PowerFlex 4
        await storage.volumes.snapshot("pf5", "many", f"s{i}")
    view = await storage.volumes.get("pf5", "many")
    assert len(view.snapshots) == 130
    copy = await storage.volumes.copy("pf5", "many", "pf5", "many-copy", with_snapshots=False)
    assert copy.config["size"] == "1GiB"
