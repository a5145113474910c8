"""Backups end to end: tarballs made from volumes on the simulator's fabric and restored
into new volumes, with every byte, mode, owner, extended attribute and snapshot compared."""

from __future__ import annotations

import datetime
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from lxflex.driver import format_size, parse_size
from lxflex.driver.errors import Conflict, InvalidRequest, NotFound
from lxflex.service import Storage

from ..conftest import GIB
from .conftest import StorageFactory, read_chunks, volumes_of, write_chunks

pytestmark = pytest.mark.root

MIB = 1 << 20


@pytest.fixture
async def storage(make_storage: StorageFactory) -> Storage:
    return await make_storage("4.5")


async def _write(storage: Storage, array_id: str, chunks: dict[int, bytes]) -> None:
    await write_chunks(await volumes_of(storage), array_id, chunks)


async def _read(storage: Storage, array_id: str, chunks: dict[int, bytes]) -> dict[int, bytes]:
    return await read_chunks(await volumes_of(storage), array_id, chunks)


def _array_volumes(storage: Storage) -> set[str]:
    return set(storage.sim.array.volumes)  # type: ignore[attr-defined]


async def test_block_volume_round_trip_with_snapshots(make_storage: StorageFactory) -> None:
    # On PowerFlex 5 (createSnapshot, 1 GiB steps): a 2 GiB volume reads four times faster
    # than PowerFlex 4's smallest, and holes matter the same.
    storage = await make_storage("5.0")
    await storage.volumes.create("pf", "blk", content_type="block", config={"size": "2GiB"})
    src = (await storage.volumes.record("pf", "blk")).array_id
    assert src is not None
    generations = [
        {0: os.urandom(MIB), 5 * GIB // 4: os.urandom(MIB)},
        {0: os.urandom(MIB), GIB // 2: os.urandom(2 * MIB)},
        {0: os.urandom(MIB), 2 * GIB - 4096: os.urandom(4096)},
    ]
    zeroed = {5 * GIB // 4: bytes(MIB)}  # generation 1 overwrote generation 0's data with zeros
    for i, chunks in enumerate(generations):
        await _write(storage, src, {**chunks, **(zeroed if i == 1 else {})})
        if i < 2:
            await storage.volumes.snapshot("pf", "blk", f"s{i}", description=f"gen {i}")
    seen: list[tuple[int, int]] = []
    backup = await storage.backups.create("pf", "blk", progress=lambda d, t: seen.append((d, t)))
    assert backup.name == "backup0"
    assert seen[-1][0] == seen[-1][1]
    tarball = await storage.backups.tarball("pf", "blk", "backup0")
    assert tarball.stat().st_size < 12 * MIB  # three 2 GiB images holding ~9 MiB
    assert oct(tarball.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        index = yaml.safe_load(tar.extractfile("backup/index.yaml").read())  # type: ignore[union-attr]
    assert names[:1] == ["backup"] or "backup/index.yaml" in names
    # LXD needs a time here, not null (its import crashes on null): the zero time.
    expiries = [s["expires_at"] for s in index["config"]["volume_snapshots"]]
    assert expiries == ["0001-01-01T00:00:00Z"] * 2
    assert {"backup/volume.img", "backup/volume-snapshots/s0.img"} <= set(names)
    assert len(_array_volumes(storage)) == 3  # the temporary snapshot is gone again

    restored = await storage.backups.restore("pf", tarball, "blk2")
    assert restored.snapshots == ["s0", "s1"]
    new = await storage.volumes.record("pf", "blk2")
    assert new.array_id is not None
    assert await _read(storage, new.array_id, generations[2]) == generations[2]
    allocated = storage.sim.data.allocated(new.array_id)  # type: ignore[attr-defined]
    assert allocated <= 4 * MIB
    for i, chunks in enumerate(generations[:2]):
        snap = await storage.volumes.snapshot_record("pf", "blk2", f"s{i}")
        assert snap.description == f"gen {i}"
        assert snap.array_id is not None
        expected = {**chunks, **(zeroed if i == 1 else {})}
        assert await _read(storage, snap.array_id, expected) == expected

    only = await storage.backups.create("pf", "blk", "vonly", volume_only=True, compression="none")
    plain = await storage.backups.tarball("pf", "blk", only.name)
    with tarfile.open(plain) as tar:
        assert not any("volume-snapshots/" in n for n in tar.getnames())
    assert [b.name for b in await storage.backups.list("pf", "blk")] == ["backup0", "vonly"]


def _tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a backup must keep of a directory tree."""
    found: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        xattrs = {}
        if not path.is_symlink():
            xattrs = {k: os.getxattr(path, k) for k in os.listxattr(path)}
        content: object = None
        if path.is_symlink():
            content = os.readlink(path)
        elif path.is_file():
            content = path.read_bytes()
        found[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, xattrs, content)
    rootst = root.stat()
    found["."] = (rootst.st_mode, rootst.st_uid, rootst.st_gid)
    return found


def _populate(root: Path, generation: str) -> None:
    (root / "dir" / "deep").mkdir(parents=True, exist_ok=True)
    data = root / "dir" / "data.bin"
    data.write_bytes(os.urandom(300_000) + generation.encode())
    os.chown(data, 1234, 5678)
    data.chmod(0o640)
    os.setxattr(data, "user.generation", generation.encode())
    (root / "dir" / "deep" / "exec").write_text("#!/bin/sh\n")
    (root / "dir" / "deep" / "exec").chmod(0o4755)
    link = root / "link"
    if not link.is_symlink():
        link.symlink_to("dir/data.bin")
    hard = root / "hard"
    if not hard.exists():
        os.link(data, hard)
    with open(root / "sparse", "wb") as f:
        f.truncate(64 * MIB)
        f.seek(32 * MIB)
        f.write(generation.encode())
    os.chown(root, 42, 43)
    root.chmod(0o751)


async def test_filesystem_volume_round_trip(storage: Storage) -> None:
    await storage.volumes.create("pf", "fs", config={"size": "8GiB"})
    mounted = await storage.volumes.mount("pf", "fs")
    _populate(mounted, "first")
    (mounted / "only-in-snapshot").write_text("old")
    before = _tree(mounted)
    await storage.volumes.snapshot("pf", "fs", "snap0")
    (mounted / "only-in-snapshot").unlink()
    _populate(mounted, "second")
    after = _tree(mounted)
    backup = await storage.backups.create("pf", "fs", "b1", compression="zstd")
    tarball = await storage.backups.tarball("pf", "fs", backup.name)
    assert tarball.stat().st_size < 4 * MIB
    await storage.volumes.unmount("pf", "fs")

    await storage.backups.restore("pf", tarball, "fs2")
    assert _tree(await storage.volumes.mount("pf", "fs2")) == after
    await storage.volumes.unmount("pf", "fs2")
    await storage.volumes.copy("pf", "fs2", "pf", "fs2-snap", source_snapshot="snap0")
    assert _tree(await storage.volumes.mount("pf", "fs2-snap")) == before
    await storage.volumes.unmount("pf", "fs2-snap")


async def test_names_expiry_rename_delete(storage: Storage) -> None:
    await storage.volumes.create("pf", "v", content_type="block", config={"size": "8GiB"})
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    await storage.backups.create("pf", "v", "old", expires_at=past, compression="none")
    await storage.backups.create("pf", "v", "keep", compression="none")
    assert [b.name for b in await storage.backups.list("pf", "v")] == ["keep"]  # old expired
    with pytest.raises(Conflict):
        await storage.backups.create("pf", "v", "keep")
    with pytest.raises(InvalidRequest, match="unknown compression"):
        await storage.backups.create("pf", "v", "x", compression="rar")
    await storage.backups.rename("pf", "v", "keep", "kept")
    assert (await storage.backups.tarball("pf", "v", "kept")).name == "kept"
    await storage.volumes.rename("pf", "v", "w")  # backups follow their volume
    assert [b.name for b in await storage.backups.list("pf", "w")] == ["kept"]
    await storage.backups.delete("pf", "w", "kept")
    with pytest.raises(NotFound, match="backup not found"):
        await storage.backups.get("pf", "w", "kept")
    await storage.backups.create("pf", "w", "orphan", compression="none")
    await storage.volumes.delete("pf", "w")
    await storage.backups.prune()
    assert not any(storage.backups.root.iterdir())


async def test_a_bad_tarball_leaves_nothing(storage: Storage, tmp_path: Path) -> None:
    await storage.volumes.create("pf", "src", content_type="block", config={"size": "8GiB"})
    await storage.volumes.snapshot("pf", "src", "s0")
    await storage.backups.create("pf", "src", "b", compression="none")
    good = await storage.backups.tarball("pf", "src", "b")
    before = _array_volumes(storage)
    unpacked, broken = tmp_path / "unpacked", tmp_path / "broken.tar"
    unpacked.mkdir()
    subprocess.run(["tar", "-x", "--sparse", "-f", str(good), "-C", str(unpacked)], check=True)
    (unpacked / "backup" / "volume.img").unlink()
    subprocess.run(
        ["tar", "-c", "--sparse", "-f", str(broken), "-C", str(unpacked), "backup"], check=True
    )
    with pytest.raises(InvalidRequest, match=r"no backup/volume\.img"):
        await storage.backups.restore("pf", broken, "dst")
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tarball" * 100)
    with pytest.raises(InvalidRequest, match="not a readable backup"):
        await storage.backups.restore("pf", garbage, "dst")
    assert _array_volumes(storage) == before
    with pytest.raises(NotFound):
        await storage.volumes.record("pf", "dst")


async def test_a_linked_image_is_refused(storage: Storage, tmp_path: Path) -> None:
    """A tarball whose volume.img is a symlink must not copy a host file into a volume."""
    await storage.volumes.create("pf", "src", content_type="block", config={"size": "8GiB"})
    await storage.backups.create("pf", "src", "b", compression="none")
    good = await storage.backups.tarball("pf", "src", "b")
    unpacked, evil = tmp_path / "unpacked", tmp_path / "evil.tar"
    unpacked.mkdir()
    subprocess.run(["tar", "-x", "--sparse", "-f", str(good), "-C", str(unpacked)], check=True)
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"host data" * 1000)
    (unpacked / "backup" / "volume.img").unlink()
    (unpacked / "backup" / "volume.img").symlink_to(secret)
    subprocess.run(["tar", "-c", "-f", str(evil), "-C", str(unpacked), "backup"], check=True)
    before = _array_volumes(storage)
    with pytest.raises(InvalidRequest, match="not a regular file"):
        await storage.backups.restore("pf", evil, "stolen")
    assert _array_volumes(storage) == before


async def test_a_block_volume_whose_grow_was_cut_short_exports_all_of_it(
    storage: Storage,
) -> None:
    """The array grew, the row did not (a grow cut short): the image holds the whole
    device, so the backup records that size, and its import fits, data past the old
    size included."""
    await storage.volumes.create("pf", "cut", content_type="block")
    array_id = (await storage.volumes.record("pf", "cut")).array_id
    assert array_id is not None
    recorded = parse_size((await storage.volumes.get("pf", "cut")).config["size"])
    grown = recorded * 2
    await (await volumes_of(storage)).client.set_volume_size(array_id, grown)
    tail = {grown - 4096: b"past the recorded size"}
    await _write(storage, array_id, tail)
    backup = await storage.backups.create("pf", "cut", volume_only=True, compression="none")
    await storage.backups.restore(
        "pf", await storage.backups.tarball("pf", "cut", backup.name), "cut2"
    )
    imported = await storage.volumes.record("pf", "cut2")
    assert imported.array_id is not None
    assert await _read(storage, imported.array_id, tail) == tail
    assert (await storage.volumes.get("pf", "cut2")).config["size"] == format_size(grown)
