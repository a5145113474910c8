"""Scheduled snapshots and snapshot expiry (``snapshots.schedule``, ``snapshots.expiry``),
as lxflexd runs them once a minute."""

from __future__ import annotations

import datetime

import pytest

from lxflex.sim.control import Fault

from .conftest import StorageFactory

pytestmark = pytest.mark.root


async def test_schedule_and_expiry(make_storage: StorageFactory) -> None:
    storage = await make_storage()
    pool = (await storage.pools.record("pf")).config
    await storage.pools.update("pf", {**pool, "volume.snapshots.expiry": "1H"})
    made = await storage.volumes.create("pf", "v", content_type="block")
    assert made.config["snapshots.expiry"] == "1H"
    # The inherited key no longer blocks every later update of the volume.
    config = {**made.config, "user.note": "x"}
    await storage.volumes.update("pf", "v", config, description="kept")
    config.update({"snapshots.schedule": "0 * * * *", "size": "16GiB"})
    view = await storage.volumes.update("pf", "v", config)
    assert view.config["snapshots.expiry"] == "1H"
    await storage.volumes.create("pf", "quiet", content_type="block")  # nothing scheduled

    seen: list[tuple[str, str | None]] = []
    storage.pools.events.subscribe(lambda e: seen.append((e.action, e.snapshot)))
    hour = datetime.datetime(2026, 12, 1, 12, 0, 10, tzinfo=datetime.UTC)
    assert await storage.scheduled(hour) == (1, 0)
    assert seen == [("storage-volume-snapshot-created", "snap0")]
    (snap,) = (await storage.volumes.get("pf", "v")).snapshot_records
    assert snap.name == "snap0"
    assert snap.expires_at == hour + datetime.timedelta(hours=1)
    assert await storage.scheduled(hour + datetime.timedelta(minutes=1)) == (0, 0)
    # An hour later it has expired, and the next one is taken.
    assert await storage.scheduled(hour + datetime.timedelta(hours=1)) == (1, 1)
    assert seen[1:] == [
        ("storage-volume-snapshot-deleted", "snap0"),
        ("storage-volume-snapshot-created", "snap0"),
    ]
    assert len((await storage.volumes.get("pf", "v")).snapshot_records) == 1
    assert await storage.scheduled(hour + datetime.timedelta(hours=2, minutes=5)) == (0, 1)
    assert (await storage.volumes.get("pf", "v")).snapshot_records == ()
    assert (await storage.volumes.get("pf", "quiet")).snapshot_records == ()
    assert len(storage.sim.array.volumes) == 2  # type: ignore[attr-defined]


async def test_a_failed_scheduled_snapshot_leaves_nothing_and_stops_no_other(
    make_storage: StorageFactory,
) -> None:
    storage = await make_storage()
    for name in ("a", "b"):
        await storage.volumes.create(
            "pf", name, content_type="block", config={"snapshots.schedule": "* * * * *"}
        )
    before = len(storage.sim.array.volumes)  # type: ignore[attr-defined]
    storage.sim.faults.append(  # type: ignore[attr-defined]
        Fault(
            route="POST /api/instances/System/action/snapshotVolumes",
            http_status=500,
            error_code=65,
            count=1,
        )
    )
    now = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
    assert await storage.scheduled(now) == (1, 0)  # one failed, the other was taken
    snaps = [len((await storage.volumes.get("pf", n)).snapshot_records) for n in ("a", "b")]
    assert sorted(snaps) == [0, 1]
    assert len(storage.sim.array.volumes) == before + 1  # type: ignore[attr-defined]
    assert await storage.pools.journal.entries() == []
