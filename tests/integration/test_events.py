"""Lifecycle events from the use cases: one per recorded change, none for a failed one."""

from __future__ import annotations

import pytest

from lxflex.driver.errors import DriverError
from lxflex.service.events import Lifecycle
from lxflex.sim.control import Fault

from .conftest import StorageFactory

pytestmark = pytest.mark.root


async def test_pool_and_failed_changes(make_storage: StorageFactory) -> None:
    storage = await make_storage()
    seen: list[Lifecycle] = []
    storage.pools.events.subscribe(seen.append)
    stored = await storage.pools.record("pf")
    config = {k: v for k, v in stored.config.items() if not k.startswith("volatile.")}
    await storage.pools.create("pf2", "powerflex", config, password=stored.password)
    await storage.pools.update("pf2", {**config, "volume.size": "16GiB"})
    await storage.pools.delete("pf2")
    assert [(e.action, e.pool) for e in seen] == [
        ("storage-pool-created", "pf2"),
        ("storage-pool-updated", "pf2"),
        ("storage-pool-deleted", "pf2"),
    ]
    seen.clear()
    sim = storage.sim  # type: ignore[attr-defined]
    sim.faults.append(
        Fault(route="POST /api/types/Volume/instances", http_status=500, error_code=65)
    )
    with pytest.raises(DriverError):
        await storage.volumes.create("pf", "v", content_type="block")
    assert seen == []  # a change that failed is no event


async def test_a_failing_listener_fails_nothing(make_storage: StorageFactory) -> None:
    storage = await make_storage()

    def broken(event: Lifecycle) -> None:
        raise RuntimeError("listener bug")

    storage.pools.events.subscribe(broken)
    await storage.volumes.create("pf", "v", content_type="block")
    assert [v.name for v in await storage.volumes.all("pf")] == ["v"]
