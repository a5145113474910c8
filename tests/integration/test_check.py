"""``storage check``: each kind of finding made on a live pool, reported, repaired where
that is safe, and left alone where it is not."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from lxflex.driver.errors import InvalidRequest
from lxflex.driver.leftovers import Leftover
from lxflex.driver.naming import Content, VolumeType, volume_name
from lxflex.host.fs import mounted_under
from lxflex.host.nvme import nguid
from lxflex.service import Storage
from lxflex.service.check import Kind, Report
from lxflex.sim.control import Fault
from lxflex.state import DELETE_BEGIN, DELETE_REFUSED
from lxflex.state import store as st

from ..conftest import GIB
from .conftest import StorageFactory, volumes_of

pytestmark = pytest.mark.root


def _kinds(report: Report) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in report.left:
        found.setdefault(f.kind.value, []).append(f.subject)
    return found


async def _array_id(storage: Storage, name: str) -> str:
    record = await storage.volumes.record("pf", name)
    assert record.array_id
    return record.array_id


async def test_a_clean_pool_has_no_findings(make_storage: StorageFactory) -> None:
    storage = await make_storage()
    await storage.volumes.create("pf", "fs")
    await storage.volumes.create("pf", "blk", content_type="block")
    await storage.volumes.snapshot("pf", "blk", "s0")
    await storage.volumes.mount("pf", "fs")  # a volume in use is no finding
    try:
        report = await storage.check("pf")
        assert report.findings == []
        assert (report.volumes, report.snapshots, report.array_volumes) == (2, 1, 3)
        assert report.mapped == 1
    finally:
        await storage.volumes.unmount("pf", "fs")


async def test_check_reports_repairs_and_removes_only_when_named(
    make_storage: StorageFactory,
) -> None:
    storage = await make_storage()
    sim = storage.sim  # type: ignore[attr-defined]
    volumes = await volumes_of(storage)
    client = volumes.client
    pool_id = volumes.pool.pool_id
    for name in ("ok", "gone", "grown", "blk", "stuck"):
        await storage.volumes.create("pf", name, content_type="block")
    # A row whose array volume was removed behind lxflex's back.
    await client.remove_volume(await _array_id(storage, "gone"))
    # An array volume grown outside lxflex (a grow cut short).
    await client.set_volume_size(await _array_id(storage, "grown"), 16 * GIB)
    # A delete that failed half-way, left ``deleting``.
    stuck = await storage.volumes.record("pf", "stuck")
    async with storage.db.write() as conn:
        await st.update_volume(conn, stuck.id, step=DELETE_BEGIN)
    # An array volume with our scheme and no record, and one not named by the scheme.
    stray = volume_name(VolumeType.CUSTOM, Content.BLOCK, uuid.uuid4())
    stray_id = await client.create_volume(pool_id, 8 * GIB, stray)
    await client.create_volume(pool_id, 8 * GIB, "someone-else")
    # A failed cleanup handed to the journal.
    leftover_id = await client.create_volume(
        pool_id, 8 * GIB, volume_name(VolumeType.CUSTOM, Content.BLOCK, uuid.uuid4())
    )
    pool = await storage.pools.record("pf")
    await storage.pools.journal.keep(pool.id, Leftover("volume", leftover_id, reason="test"))
    # A mapping nothing uses.
    attacher = volumes.attacher
    blk_id = await _array_id(storage, "blk")
    await client.map_host(blk_id, await attacher.host_id())
    # A stale device link, a mount no volume owns, an old scratch entry.
    by_id = sim.fabric.hosts["local"].by_id
    (by_id / f"nvme-eui.{nguid('feedfacefeedface', volumes.pool.system_id)}").symlink_to(
        "/dev/null"
    )
    stray_mount = storage.runtimes.host.mounts / "pf" / "custom" / "default_nobody"
    stray_mount.mkdir(parents=True)
    await storage.runtimes.runner.run(["mount", "-t", "tmpfs", "tmpfs", str(stray_mount)])
    scratch = storage.runtimes.host.scratch / "backup-old"
    scratch.mkdir(parents=True)
    old = time.time() - 3600
    os.utime(scratch, (old, old))
    before = len(sim.array.volumes)

    report = await storage.check("pf")
    kinds = _kinds(report)
    everything = "missing size interrupted unrecorded journal mapping device mount scratch"
    assert sorted(kinds) == sorted(everything.split())
    assert len(kinds["unrecorded"]) == 1
    assert stray in kinds["unrecorded"][0]
    assert len(sim.array.volumes) == before  # a check alone changes nothing
    assert stray_mount.is_mount()

    with pytest.raises(InvalidRequest, match="someone-else"):
        await storage.check("pf", repair=True, remove=["someone-else"])
    assert stray_mount.is_mount()  # refused before any change

    repaired = await storage.check("pf", repair=True)
    assert {f.kind for f in repaired.findings if f.repaired} == {
        Kind.SIZE,
        Kind.INTERRUPTED,
        Kind.JOURNAL,
        Kind.MAPPING,
        Kind.MOUNT,
        Kind.SCRATCH,
    }
    assert all(not f.error for f in repaired.findings)
    assert sorted(_kinds(await storage.check("pf"))) == ["device", "missing", "unrecorded"]
    assert (await storage.volumes.record("pf", "grown")).config["size"] == "16GiB"
    assert "stuck" not in {v.name for v in await storage.volumes.all("pf")}
    assert leftover_id not in sim.array.volumes
    assert not stray_mount.is_mount()
    assert not scratch.exists()
    assert not sim.array.volumes[blk_id].mappings

    removed = await storage.check("pf", repair=True, remove=[stray])
    assert [f.kind for f in removed.findings if f.repaired] == [Kind.UNRECORDED]
    assert stray_id not in sim.array.volumes
    assert any(v.name == "someone-else" for v in sim.array.volumes.values())


async def test_check_leaves_work_in_flight_alone(make_storage: StorageFactory) -> None:
    """A row mid-operation under its lock, a journal entry of running work, and a
    mapping being held are not leftovers; neither is scratch while work runs."""
    storage = await make_storage()
    await storage.volumes.create("pf", "busy", content_type="block")
    record = await storage.volumes.record("pf", "busy")
    async with storage.db.write() as conn:
        await st.update_volume(conn, record.id, step=DELETE_BEGIN)
    volumes = await volumes_of(storage)
    pool = await storage.pools.record("pf")
    intents = await storage.pools.journal.intend(pool.id, ["su_notyetmade"], "running work")
    scratch = storage.runtimes.host.scratch / "restore-running"
    scratch.mkdir(parents=True)
    os.utime(scratch, (time.time() - 3600, time.time() - 3600))
    assert record.array_id
    async with storage.volumes.lock("pf", "default", "busy"):
        await volumes.attacher.attach(record.array_id)
        try:
            report = await storage.check("pf", repair=True)
        finally:
            await volumes.attacher.detach(record.array_id)
    assert report.findings == []
    assert scratch.is_dir()
    async with storage.db.write() as conn:
        await storage.pools.journal.settle(conn, intents)
        await st.update_volume(conn, record.id, step=DELETE_REFUSED)
    assert mounted_under(storage.runtimes.host.scratch) == []


async def test_a_repair_that_fails_says_why_and_keeps_the_entry(
    make_storage: StorageFactory,
) -> None:
    storage = await make_storage()
    volumes = await volumes_of(storage)
    leftover = await volumes.client.create_volume(
        volumes.pool.pool_id, 8 * GIB, volume_name(VolumeType.CUSTOM, Content.BLOCK, uuid.uuid4())
    )
    pool = await storage.pools.record("pf")
    await storage.pools.journal.keep(pool.id, Leftover("volume", leftover, reason="test"))
    storage.sim.faults.append(  # type: ignore[attr-defined]
        Fault(
            route="POST /api/instances/Volume::{id}/action/removeVolume",
            http_status=500,
            error_code=65,
            count=8,
        )
    )
    report = await storage.check("pf", repair=True)
    (finding,) = report.findings
    assert finding.kind is Kind.JOURNAL
    assert not finding.repaired
    assert "Injected fault" in finding.error
    assert leftover in storage.sim.array.volumes  # type: ignore[attr-defined]
    assert len(await storage.pools.journal.entries()) == 1
    storage.sim.faults.clear()  # type: ignore[attr-defined]
    assert [f.repaired for f in (await storage.check("pf", repair=True)).findings] == [True]
    assert await storage.pools.journal.entries() == []


async def test_a_copy_of_a_block_volume_whose_grow_was_cut_short_is_one_too(
    make_storage: StorageFactory,
) -> None:
    """The array grew, the row did not (a grow cut short): a copy reads all of the
    source, so it is as large on the array, its row as the source's; repair finishes
    both grows."""
    storage = await make_storage()
    client = (await volumes_of(storage)).client
    await storage.volumes.create("pf", "grown", content_type="block")
    await client.set_volume_size(await _array_id(storage, "grown"), 16 * GIB)
    await storage.volumes.copy("pf", "grown", "pf", "copied")
    report = await storage.check("pf")
    assert sorted(f.subject for f in report.findings if f.kind == Kind.SIZE) == [
        "storage volume default/copied",
        "storage volume default/grown",
    ]
    await storage.check("pf", repair=True)
    for name in ("grown", "copied"):
        assert (await storage.volumes.get("pf", name)).config["size"] == "16GiB"
    assert (await storage.check("pf")).findings == []
