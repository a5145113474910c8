"""All or nothing under gateway faults: each case a defect found by injecting faults
into the simulator, with what must hold afterwards (no leak, nothing lost)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from lxflex.driver.errors import DriverError, InsufficientSpace
from lxflex.driver.leftovers import Leftover
from lxflex.embedded import host_settings
from lxflex.host.fs import mounted_under
from lxflex.service import Storage
from lxflex.service.specs import spec_of
from lxflex.sim.control import Fault
from lxflex.state import backups as bk

from ..conftest import GIB
from .conftest import StorageFactory, read_chunks, volumes_of, write_chunks

pytestmark = pytest.mark.root

UNMAP = "POST /api/instances/Volume::{id}/action/removeMappedHost"
REMOVE = "POST /api/instances/Volume::{id}/action/removeVolume"
SNAPSHOT = "POST /api/instances/System/action/snapshotVolumes"
MAP = "POST /api/instances/Volume::{id}/action/addMappedHost"


def _fault(storage: Storage, route: str, count: int, code: int = 0) -> None:
    sim = storage.sim  # type: ignore[attr-defined]
    sim.faults.append(Fault(route=route, http_status=500, error_code=code, count=count))


def _array(storage: Storage) -> dict[str, object]:
    sim = storage.sim  # type: ignore[attr-defined]
    return {
        "volumes": sorted(v.name or v.id for v in sim.array.volumes.values()),
        "mapped": sorted(v.id for v in sim.array.volumes.values() if v.mappings),
        "devices": sorted(p.name for p in sim.fabric.hosts["local"].by_id.iterdir()),
    }


def _mapped(storage: Storage) -> list[str]:
    sim = storage.sim  # type: ignore[attr-defined]
    return sorted(v.id for v in sim.array.volumes.values() if v.mappings)


async def _journal(storage: Storage) -> list[tuple[str, str | None]]:
    return [(e.kind, e.array_id or e.name) for e in await storage.pools.journal.entries()]


async def _filesystem_size(storage: Storage, name: str) -> int:
    """The size of a filesystem volume's filesystem, mounted for the look."""
    path = await storage.volumes.mount("pf", name)
    try:
        stats = os.statvfs(path)
        return stats.f_blocks * stats.f_frsize
    finally:
        await storage.volumes.unmount("pf", name)
        assert not Path(path).is_mount()


async def _repair(storage: Storage) -> None:
    pool = await storage.pools.record("pf")
    await storage.pools.journal.repair(pool.id, await volumes_of(storage))


async def test_transient_unmap_failures_are_retried(make_storage: StorageFactory) -> None:
    storage = await make_storage()
    await storage.volumes.create("pf", "src", content_type="block")
    _fault(storage, UNMAP, count=2)
    await storage.volumes.copy("pf", "src", "pf", "dst")
    assert _mapped(storage) == []
    assert await _journal(storage) == []


async def test_a_failed_unmap_does_not_fail_a_finished_copy(make_storage: StorageFactory) -> None:
    """The unmap after a copy fails for good: the copy stands, the mapping is journaled,
    and repair unmaps it."""
    storage = await make_storage()
    await storage.volumes.create("pf", "src", content_type="block")
    _fault(storage, UNMAP, count=8, code=65)  # firm answers: not retried
    await storage.volumes.copy("pf", "src", "pf", "dst")
    assert {v.name for v in await storage.volumes.all("pf")} == {"src", "dst"}
    left = await _journal(storage)
    assert left
    assert {kind for kind, _ in left} == {"unmap"}
    assert _mapped(storage)
    storage.sim.faults.clear()  # type: ignore[attr-defined]
    await _repair(storage)
    assert _mapped(storage) == []
    assert await _journal(storage) == []
    assert sorted(p.name for p in storage.sim.fabric.hosts["local"].by_id.iterdir()) == []  # type: ignore[attr-defined]


async def test_a_refused_cleanup_is_journaled_then_repaired(
    make_storage: StorageFactory,
) -> None:
    """A copy fails; the gateway refuses to remove the half-made target: no row, but a
    journal entry that repair finishes."""
    storage = await make_storage()
    await storage.volumes.create("pf", "src", content_type="block")
    await storage.volumes.snapshot("pf", "src", "s0")
    before = _array(storage)
    _fault(storage, SNAPSHOT, count=1, code=65)  # the copy's snapshot of its target
    _fault(storage, REMOVE, count=1, code=65)  # and the removal of that target
    with pytest.raises(DriverError):
        await storage.volumes.copy("pf", "src", "pf", "dst")
    assert {v.name for v in await storage.volumes.all("pf")} == {"src"}
    assert [kind for kind, _ in await _journal(storage)] == ["volume"]
    assert len(_array(storage)["volumes"]) == len(before["volumes"]) + 1  # type: ignore[arg-type]
    await _repair(storage)
    assert _array(storage) == before
    assert await _journal(storage) == []


async def test_a_failed_copy_removes_its_snapshot_copies(make_storage: StorageFactory) -> None:
    storage = await make_storage()
    await storage.volumes.create("pf", "src", content_type="block")
    for name in ("s0", "s1"):
        await storage.volumes.snapshot("pf", "src", name)
    before = _array(storage)
    # The second snapshot of the target fails: the first is made and must go again.
    storage.sim.faults.append(  # type: ignore[attr-defined]
        Fault(route=SNAPSHOT, http_status=500, error_code=65, count=1, after=1)
    )
    with pytest.raises(DriverError):
        await storage.volumes.copy("pf", "src", "pf", "dst")
    assert _array(storage) == before
    assert await _journal(storage) == []


async def test_a_refused_delete_keeps_the_volume_as_it_was(make_storage: StorageFactory) -> None:
    storage = await make_storage()
    await storage.volumes.create("pf", "v", content_type="block")
    await storage.volumes.snapshot("pf", "v", "s0")
    before = _array(storage)
    _fault(storage, REMOVE, count=1, code=65)
    with pytest.raises(DriverError, match="'v' is kept"):
        await storage.volumes.delete("pf", "v")
    view = await storage.volumes.get("pf", "v")
    assert [s.name for s in await storage.volumes.snapshots("pf", "v")] == ["s0"]
    assert _array(storage) == before
    record = await storage.volumes.record("pf", "v")
    assert record.status == "created"
    assert view.name == "v"
    await storage.volumes.snapshot("pf", "v", "s1")  # usable
    await storage.volumes.delete("pf", "v")
    assert _array(storage)["volumes"] == []


async def test_copies_of_a_grown_volume_keep_each_snapshots_size(
    make_storage: StorageFactory,
) -> None:
    """8 GiB volume, snapshot, grown to 16 GiB, copied: the copy's snapshot is 8 GiB on the
    array and in its record, holds the snapshot's data, and copies again."""
    storage = await make_storage()
    await storage.volumes.create("pf", "v", content_type="block", config={"size": "8GiB"})
    volumes = await volumes_of(storage)
    data = {0: b"old" * 1000, 9 * GIB: b"new" * 1000}
    await write_chunks(
        volumes, (await storage.volumes.record("pf", "v")).array_id or "", {0: data[0]}
    )
    await storage.volumes.snapshot("pf", "v", "s0")
    await storage.volumes.update("pf", "v", {"size": "16GiB"})
    vol = await storage.volumes.record("pf", "v")
    await write_chunks(volumes, vol.array_id or "", data)
    await storage.volumes.copy("pf", "v", "pf", "c")
    snap = await storage.volumes.snapshot_record("pf", "c", "s0")
    sim = storage.sim  # type: ignore[attr-defined]
    assert snap.config["size"] == "8GiB"
    assert sim.array.volumes[snap.array_id].size_kb * 1024 == 8 * GIB
    copied = await storage.volumes.record("pf", "c")
    assert sim.array.volumes[copied.array_id].size_kb * 1024 == 16 * GIB
    assert await read_chunks(volumes, snap.array_id or "", {0: data[0]}) == {0: data[0]}
    assert await read_chunks(volumes, copied.array_id or "", data) == data
    await storage.volumes.copy("pf", "c", "pf", "c2", source_snapshot="s0")
    c2 = await storage.volumes.record("pf", "c2")
    assert c2.config["size"] == "8GiB"
    assert await read_chunks(volumes, c2.array_id or "", {0: data[0]}) == {0: data[0]}


async def test_a_failed_filesystem_grow_converges_on_retry(
    make_storage: StorageFactory,
) -> None:
    """The array grows but attaching for the filesystem grow fails: the error says so, the
    state keeps the size the filesystem has, and the same request again finishes it."""
    storage = await make_storage()
    await storage.volumes.create("pf", "fs", config={"size": "8GiB"})
    _fault(storage, MAP, count=1, code=65)
    with pytest.raises(DriverError, match="grew to 16GiB but could not grow the filesystem"):
        await storage.volumes.update("pf", "fs", {"size": "16GiB"})
    assert (await storage.volumes.record("pf", "fs")).config["size"] == "8GiB"
    await storage.volumes.update("pf", "fs", {"size": "16GiB"})
    assert (await storage.volumes.record("pf", "fs")).config["size"] == "16GiB"
    assert await _filesystem_size(storage, "fs") > 12 * GIB


async def test_start_up_repairs_what_a_crash_left(
    make_storage: StorageFactory, tmp_path: Path
) -> None:
    """A daemon killed midway leaves: a copy source mapped, an import's filesystem
    mounted in scratch, an export's temporary snapshot (journaled, no row), a backup row
    ``creating`` with its partial tarball. The next start removes all of it and keeps
    the volumes, and a volume mounted by the user stays mounted and usable."""
    storage = await make_storage()
    sim = storage.sim  # type: ignore[attr-defined]
    await storage.volumes.create("pf", "fs")
    await storage.volumes.create("pf", "kept")
    await storage.volumes.create("pf", "blk", content_type="block")
    user_mount = await storage.volumes.mount("pf", "kept")
    volumes = await volumes_of(storage)
    pool = await storage.pools.record("pf")
    fs_rec = await storage.volumes.record("pf", "fs")
    blk_rec = await storage.volumes.record("pf", "blk")
    assert fs_rec.array_id
    assert blk_rec.array_id
    await volumes.attacher.attach(blk_rec.array_id)  # a copy source, never released
    scratch = storage.runtimes.host.scratch
    await volumes.mount(
        spec_of("filesystem", fs_rec.config), fs_rec.array_id, scratch / "restore-1" / "mnt"
    )
    view = uuid.uuid4()
    blk_spec = spec_of("block", {**blk_rec.config, "volatile.uuid": str(view)})
    await storage.pools.journal.intend(
        pool.id, [volumes.array_name(blk_spec, snapshot=True)], "export"
    )
    await volumes.snapshot(spec_of("block", blk_rec.config), blk_rec.array_id, view)
    async with storage.db.write() as conn:
        await bk.create_backup(
            conn, blk_rec.id, "b0", expires_at=None, volume_only=True, compression="gzip"
        )
    partial = storage.backups.root / str(blk_rec.id) / ".b0.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a tarball")
    await storage.runtimes.close()  # the crash: this process's references are gone
    await storage.db.close()

    restarted = await Storage.open(host_settings(sim, tmp_path / "lxflex0"))
    try:
        assert await restarted.recover() >= 4
        assert list(scratch.iterdir()) == []
        assert mounted_under(scratch) == []
        assert await restarted.pools.journal.entries() == []
        assert sorted(v.name for v in await restarted.volumes.all("pf")) == ["blk", "fs", "kept"]
        assert len(sim.array.volumes) == 3  # the temporary snapshot is gone
        kept = (await restarted.volumes.record("pf", "kept")).array_id
        assert _mapped(storage) == [kept]  # the user's mount keeps its mapping
        assert Path(user_mount).is_mount()
        assert not partial.exists()
        await restarted.backups.create("pf", "blk", "b0", volume_only=True)  # the name is free
        await restarted.volumes.unmount("pf", "kept")
        assert _mapped(storage) == []
    finally:
        await restarted.close()


async def test_out_of_space_is_a_clear_error_not_a_retry(make_storage: StorageFactory) -> None:
    storage = await make_storage()
    with pytest.raises(InsufficientSpace) as info:
        await storage.volumes.create(
            "pf", "huge", content_type="block", config={"size": "8TiB", "block.type": "thick"}
        )
    assert info.value.status == 507
    assert "free of 4TiB; asked for 8TiB" in str(info.value)
    assert await storage.volumes.all("pf") == []
    assert _array(storage)["volumes"] == []


def _scratch(storage: Storage) -> list[str]:
    scratch = storage.runtimes.host.scratch
    return sorted(p.name for p in scratch.iterdir()) if scratch.is_dir() else []


async def test_an_export_keeps_its_tarball_when_its_snapshot_cannot_go(
    make_storage: StorageFactory,
) -> None:
    storage = await make_storage()
    await storage.volumes.create("pf", "blk", content_type="block")
    before = _array(storage)
    _fault(storage, REMOVE, count=1, code=65)  # the temporary snapshot's removal
    backup = await storage.backups.create("pf", "blk", "b0")
    assert (await storage.backups.tarball("pf", "blk", backup.name)).is_file()
    assert [kind for kind, _ in await _journal(storage)] == ["volume"]
    assert _scratch(storage) == []
    await _repair(storage)
    assert _array(storage) == before
    assert await _journal(storage) == []


async def test_a_failed_export_leaves_nothing(make_storage: StorageFactory) -> None:
    storage = await make_storage()
    await storage.volumes.create("pf", "blk", content_type="block")
    before = _array(storage)
    _fault(storage, MAP, count=1, code=65)  # attaching the temporary snapshot
    with pytest.raises(DriverError):
        await storage.backups.create("pf", "blk", "b0")
    assert _array(storage) == before
    assert await _journal(storage) == []
    assert _scratch(storage) == []
    assert await storage.backups.list("pf", "blk") == []


async def test_a_failed_import_leaves_nothing(make_storage: StorageFactory) -> None:
    storage = await make_storage()
    await storage.volumes.create("pf", "src", content_type="block")
    await storage.volumes.snapshot("pf", "src", "s0")
    await storage.backups.create("pf", "src", "b0")
    tarball = await storage.backups.tarball("pf", "src", "b0")
    before = _array(storage)
    _fault(storage, SNAPSHOT, count=1, code=65)  # the imported volume's snapshot
    with pytest.raises(DriverError):
        await storage.backups.restore("pf", tarball, "imported")
    assert _array(storage) == before
    assert await _journal(storage) == []
    assert _scratch(storage) == []
    assert {v.name for v in await storage.volumes.all("pf")} == {"src"}


async def test_deleting_a_pool_removes_its_leftovers_first(make_storage: StorageFactory) -> None:
    storage = await make_storage()
    volumes = await volumes_of(storage)
    pool = await storage.pools.record("pf")
    spec = spec_of("block", {"volatile.uuid": str(uuid.uuid4()), "size": "8GiB"})
    orphan = await volumes.new_volume(spec, spec.size)
    await storage.pools.journal.keep(pool.id, Leftover("volume", orphan, reason="test"))
    await storage.pools.delete("pf")
    assert _array(storage)["volumes"] == []
    assert await _journal(storage) == []


async def test_a_volume_with_a_clone_is_deleted_one_by_one(make_storage: StorageFactory) -> None:
    """With powerflex.clone_copy off (PowerFlex 4), a copy is a snapshot in its source's
    VTree: deleting the source must not take the copy with it."""
    storage = await make_storage()
    await storage.pools.update(
        "pf", {**dict((await storage.pools.record("pf")).config), "powerflex.clone_copy": "false"}
    )
    await storage.volumes.create("pf", "src", content_type="block")
    await storage.volumes.copy("pf", "src", "pf", "clone", with_snapshots=False)
    await storage.volumes.snapshot("pf", "src", "s0")
    await storage.volumes.delete("pf", "src")
    clone = await storage.volumes.record("pf", "clone")
    sim = storage.sim  # type: ignore[attr-defined]
    assert list(sim.array.volumes) == [clone.array_id]


async def test_volume_data_backups_and_scratch_are_root_only(
    make_storage: StorageFactory,
) -> None:
    storage = await make_storage()
    sim = storage.sim  # type: ignore[attr-defined]
    await storage.volumes.create("pf", "blk", content_type="block")
    array_id = (await storage.volumes.record("pf", "blk")).array_id
    assert array_id
    await write_chunks(await volumes_of(storage), array_id, {0: b"data"})
    await storage.backups.create("pf", "blk", "b0")
    backing = [p for p in sim.array.data.root.iterdir() if p.is_file()]
    assert backing
    assert {p.stat().st_mode & 0o777 for p in backing} == {0o600}
    host = storage.runtimes.host
    for private in (sim.array.data.root, sim.state_dir, host.backups, host.scratch):
        assert private.stat().st_mode & 0o777 == 0o700, private


async def test_start_up_finishes_a_grow_cut_short(make_storage: StorageFactory) -> None:
    """The array grew, then the daemon died before the filesystem and the row did: the
    next start grows the filesystem to the array's size and records it."""
    storage = await make_storage()
    await storage.volumes.create("pf", "fs")
    volumes = await volumes_of(storage)
    array_id = (await storage.volumes.record("pf", "fs")).array_id
    assert array_id
    await volumes.client.set_volume_size(array_id, 16 * GIB)
    assert await storage.volumes.recover("pf") == 1
    assert (await storage.volumes.record("pf", "fs")).config["size"] == "16GiB"
    assert await _filesystem_size(storage, "fs") > 12 * GIB


async def test_a_snapshot_after_a_half_done_grow_has_the_arrays_size(
    make_storage: StorageFactory,
) -> None:
    """The array grew but the filesystem did not (the client was told so): a snapshot
    taken then records the array's size, not the row's, and repair finishes the grow;
    a copy of the volume with that snapshot works."""
    storage = await make_storage()
    await storage.volumes.create("pf", "fs", config={"size": "8GiB"})
    _fault(storage, MAP, count=1, code=65)
    with pytest.raises(DriverError, match="grew to 16GiB"):
        await storage.volumes.update("pf", "fs", {"size": "16GiB"})
    await storage.volumes.snapshot("pf", "fs", "s0")
    assert (await storage.volumes.snapshot_record("pf", "fs", "s0")).config["size"] == "16GiB"
    report = await storage.check("pf", repair=True)
    assert [(f.kind.value, f.repaired) for f in report.findings] == [("size", True)]
    assert (await storage.volumes.record("pf", "fs")).config["size"] == "16GiB"
    assert await _filesystem_size(storage, "fs") > 12 * GIB
    await storage.volumes.copy("pf", "fs", "pf", "fs2")
    copied = await storage.volumes.snapshot_record("pf", "fs2", "s0")
    assert copied.config["size"] == "16GiB"
    assert (await storage.check("pf")).findings == []


async def test_refresh_copies_what_the_target_lacks_and_keeps_its_identity(
    make_storage: StorageFactory,
) -> None:
    """copy --refresh: the target gets the source's missing snapshots (oldest first, each
    with its data) and its content, loses the snapshots the source lacks, and keeps its
    UUID; a refresh that fails leaves the target exactly as it was."""
    storage = await make_storage()
    volumes = await volumes_of(storage)
    await storage.volumes.create("pf", "src", content_type="block")
    src = (await storage.volumes.record("pf", "src")).array_id
    assert src
    await write_chunks(volumes, src, {0: b"gen0"})
    await storage.volumes.snapshot("pf", "src", "s0")
    await storage.volumes.copy("pf", "src", "pf", "dst")
    await storage.volumes.snapshot("pf", "dst", "only-on-target")
    await write_chunks(volumes, src, {0: b"gen1"})
    await storage.volumes.snapshot("pf", "src", "s1")
    await write_chunks(volumes, src, {0: b"gen2"})
    before = await storage.volumes.record("pf", "dst")
    dst = before.array_id
    assert dst

    # A failure midway (the snapshot after the first step): the target as it was.
    array_before = _array(storage)
    _fault(storage, SNAPSHOT, count=1, code=65)
    storage.sim.faults[-1].after = 1  # type: ignore[attr-defined]
    with pytest.raises(DriverError):
        await storage.volumes.refresh("pf", "src", "pf", "dst")
    assert _array(storage) == array_before
    assert await read_chunks(volumes, dst, {0: b"gen0"}) == {0: b"gen0"}
    assert [s.name for s in await storage.volumes.snapshots("pf", "dst")] == [
        "s0",
        "only-on-target",
    ]
    assert await _journal(storage) == []

    view = await storage.volumes.refresh("pf", "src", "pf", "dst")
    assert view.config["volatile.uuid"] == before.config["volatile.uuid"]
    assert (await storage.volumes.record("pf", "dst")).array_id == dst
    assert [s.name for s in await storage.volumes.snapshots("pf", "dst")] == ["s0", "s1"]
    assert await read_chunks(volumes, dst, {0: b"gen2"}) == {0: b"gen2"}
    s1 = await storage.volumes.snapshot_record("pf", "dst", "s1")
    assert s1.array_id
    assert await read_chunks(volumes, s1.array_id, {0: b"gen1"}) == {0: b"gen1"}
    assert await _journal(storage) == []
    assert _mapped(storage) == []
    assert (await storage.check("pf")).findings == []


async def test_a_refresh_that_cannot_put_back_keeps_the_target_as_a_snapshot(
    make_storage: StorageFactory,
) -> None:
    storage = await make_storage()
    volumes = await volumes_of(storage)
    await storage.volumes.create("pf", "src", content_type="block")
    await storage.volumes.copy("pf", "src", "pf", "dst")
    dst = (await storage.volumes.record("pf", "dst")).array_id
    assert dst
    await write_chunks(volumes, dst, {0: b"mine"})
    # The write into the target fails (an attach), and so does putting it back.
    _fault(storage, MAP, count=1, code=65)
    _fault(storage, "POST /api/instances/Volume::{id}/action/overwriteVolumeContent", 8, 65)
    with pytest.raises(DriverError, match="before-refresh0"):
        await storage.volumes.refresh("pf", "src", "pf", "dst")
    storage.sim.faults.clear()  # type: ignore[attr-defined]
    await storage.volumes.restore("pf", "dst", "before-refresh0")
    assert await read_chunks(volumes, dst, {0: b"mine"}) == {0: b"mine"}
    assert await _journal(storage) == []
