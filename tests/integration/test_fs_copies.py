"""Filesystem-aware copies: a cleanly unmounted ext4 or XFS volume is copied by its own
tool (only the blocks it uses); btrfs, and a filesystem that is mounted while it is
copied, take the block copy. Either way the copy holds the same tree: contents, owners,
modes, extended attributes, links and holes."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from lxflex.driver import InvalidRequest
from lxflex.driver.naming import Content, VolumeType
from lxflex.driver.volumes import PowerFlexVolumes, VolumeSpec
from lxflex.host.copy import copy_blocks
from lxflex.host.fs import Filesystems
from lxflex.host.runner import SubprocessRunner
from lxflex.service import Storage

from .conftest import StorageFactory, volumes_of

pytestmark = pytest.mark.root

MIB = 1 << 20
FAST = "only the"  # what the copy logs when it took the filesystem's tool


def _fill(root: Path, seed: int) -> None:
    rng = random.Random(seed)
    (root / "dir" / "deep").mkdir(parents=True)
    for i in range(40):
        (root / "dir" / f"f{i}").write_bytes(rng.randbytes(rng.randrange(1, 300_000)))
    owned = root / "dir" / "owned"
    owned.write_bytes(b"owner and mode")
    os.chown(owned, 1234, 5678)
    os.chmod(owned, 0o4751)  # noqa: S103 - a setuid mode the copy must keep
    os.setxattr(owned, "user.colour", b"blue")
    sparse = root / "sparse"
    with sparse.open("wb") as f:
        f.truncate(64 * MIB)
        f.seek(32 * MIB)
        f.write(b"in the middle of a hole")
    (root / "link").symlink_to("dir/f1")
    os.link(root / "dir" / "f2", root / "dir" / "deep" / "hard")
    os.sync()


def _tree(root: Path) -> dict[str, tuple[object, ...]]:
    """What a copy must keep of every entry under ``root``."""
    seen: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if rel.startswith("lost+found"):
            continue
        xattrs = {
            k: os.getxattr(path, k, follow_symlinks=False)
            for k in os.listxattr(path, follow_symlinks=False)
        }
        if stat.S_ISLNK(st.st_mode):
            body: object = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            body = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            body = None
        seen[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_nlink, xattrs, body)
    return seen


def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


async def _copied(
    storage: Storage, caplog: pytest.LogCaptureFixture, fstype: str, *, live: bool
) -> tuple[dict[str, tuple[object, ...]], dict[str, tuple[object, ...]], bool]:
    """Make a volume, fill it, copy it (while mounted when ``live``); return the source's
    tree, the copy's tree and whether the filesystem's tool made the copy."""
    await storage.volumes.create("pf", "src", config={"block.filesystem": fstype})
    path = await storage.volumes.mount("pf", "src")
    _fill(path, 7)
    source = _tree(path)
    sparse = _allocated(path / "sparse")
    if not live:
        await storage.volumes.unmount("pf", "src")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lxflex.driver"):
        await storage.volumes.copy("pf", "src", "pf", "dst")
    fast = any(FAST in r.getMessage() for r in caplog.records)
    if live:
        await storage.volumes.unmount("pf", "src")
    copy = await storage.volumes.mount("pf", "dst")
    try:
        assert _allocated(copy / "sparse") <= sparse + MIB  # the hole stayed a hole
        return source, _tree(copy), fast
    finally:
        await storage.volumes.unmount("pf", "dst")


@pytest.mark.parametrize(("fstype", "fast"), [("ext4", True), ("xfs", True), ("btrfs", False)])
async def test_a_clean_filesystem_is_copied_by_its_own_tool(
    make_storage: StorageFactory, caplog: pytest.LogCaptureFixture, fstype: str, fast: bool
) -> None:
    storage = await make_storage()
    source, copy, took_tool = await _copied(storage, caplog, fstype, live=False)
    assert copy == source
    assert took_tool is fast


@pytest.mark.parametrize("fstype", ["ext4", "xfs"])
async def test_a_mounted_filesystem_is_copied_from_a_frozen_view_of_it(
    make_storage: StorageFactory, caplog: pytest.LogCaptureFixture, fstype: str
) -> None:
    """Mounted (in use), its blocks change under a copy, and its journal or log may hold
    what its maps of used blocks do not show: the copy reads a snapshot taken with the
    filesystem frozen (a freeze flushes ext4's journal, so its map serves; an XFS log
    that is not clean takes the block copy), and the snapshot goes after."""
    storage = await make_storage()
    sim = storage.sim  # type: ignore[attr-defined]
    sim.counters.clear()
    source, copy, _ = await _copied(storage, caplog, fstype, live=True)
    assert copy == source
    assert sim.counters.get("POST /api/instances/System/action/snapshotVolumes") == 1
    assert len(sim.array.volumes) == 2  # the source and its copy: the view is gone
    assert await storage.pools.journal.entries() == []


async def test_a_copy_with_snapshots_keeps_each_snapshots_tree(
    make_storage: StorageFactory, caplog: pytest.LogCaptureFixture
) -> None:
    storage = await make_storage()
    await storage.volumes.create("pf", "src")
    path = await storage.volumes.mount("pf", "src")
    _fill(path, 1)
    first = _tree(path)
    await storage.volumes.unmount("pf", "src")
    await storage.volumes.snapshot("pf", "src", "s0")
    path = await storage.volumes.mount("pf", "src")
    (path / "dir" / "f3").unlink()
    (path / "later").write_bytes(b"after the snapshot")
    second = _tree(path)
    await storage.volumes.unmount("pf", "src")
    seen: list[tuple[int, int]] = []
    with caplog.at_level(logging.INFO, logger="lxflex.driver"):
        await storage.volumes.copy(
            "pf", "src", "pf", "dst", progress=lambda d, t: seen.append((d, t))
        )
    # The snapshot onto the fresh target, then the volume onto what that step left.
    assert sum(FAST in r.getMessage() for r in caplog.records) == 2
    # Progress counts bytes of data: what each filesystem uses, not twice the volume.
    done = [d for d, _ in seen]
    assert done == sorted(done)
    record = await storage.volumes.record("pf", "src")
    size = await (await volumes_of(storage)).size_of(record.array_id or "")
    assert seen[-1][0] == seen[-1][1] < size // 8
    copy = await storage.volumes.mount("pf", "dst")
    try:
        assert _tree(copy) == second
    finally:
        await storage.volumes.unmount("pf", "dst")
    restored = await storage.volumes.copy("pf", "dst", "pf", "back", source_snapshot="s0")
    assert restored.name == "back"
    back = await storage.volumes.mount("pf", "back")
    try:
        assert _tree(back) == first
    finally:
        await storage.volumes.unmount("pf", "back")


@pytest.mark.parametrize("fstype", ["ext4", "xfs"])
async def test_the_used_ranges_alone_make_a_filesystem_its_checker_finds_clean(
    tmp_path: Path, fstype: str
) -> None:
    """Before any repair: what the map leaves out (free space, ext4's journal but its
    superblock) is not needed, as the filesystem's own checker says."""
    fs = Filesystems(SubprocessRunner())
    src, dst, mnt = tmp_path / "src.img", tmp_path / "dst.img", tmp_path / "mnt"
    for image in (src, dst):
        with image.open("wb") as f:
            f.truncate(16 << 30)
    await fs.make(src, fstype)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(src), str(mnt)], check=True)
    try:
        _fill(mnt, 3)
        source = _tree(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    ranges = await fs.used_ranges(src, fstype)
    assert ranges is not None
    assert sum(length for _, length in ranges) < 1 << 30  # not the 16 GiB
    copy_blocks(src, dst, target_zeroed=True, ranges=ranges)
    check = ["e2fsck", "-f", "-n"] if fstype == "ext4" else ["xfs_repair", "-n"]
    assert subprocess.run([*check, str(dst)], capture_output=True, check=False).returncode == 0
    subprocess.run(["mount", "-o", "loop,ro", str(dst), str(mnt)], check=True)
    try:
        assert _tree(mnt) == source
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("fstype", ["ext4", "xfs"])
async def test_a_clean_filesystem_streams_only_the_blocks_it_uses(
    make_storage: StorageFactory, fstype: str
) -> None:
    """The stream of a copy between servers: free space is neither read nor sent, even
    where it holds a deleted file's data (mounted without discard here)."""
    storage = await make_storage()
    config = {"block.filesystem": fstype, "block.mount_options": "noatime"}
    await storage.volumes.create("pf", "src", config=config)
    path = await storage.volumes.mount("pf", "src")
    _fill(path, 5)
    (path / "gone").write_bytes(os.urandom(32 * MIB))
    os.sync()
    (path / "gone").unlink()
    source = _tree(path)
    await storage.volumes.unmount("pf", "src")
    volumes = await volumes_of(storage)
    record = await storage.volumes.record("pf", "src")
    array_id = record.array_id or ""
    size = await volumes.size_of(array_id)
    sent = {fs: await _streamed(volumes, array_id, fs) for fs in (None, fstype)}
    assert sent[None][1] == size  # the block stream reads the whole device
    assert sent[fstype][1] < size // 8  # this one, what the filesystem uses
    assert sent[fstype][0] < sent[None][0] - 16 * MIB  # the deleted file stayed home
    spec = _spec_of(size, fstype)
    target = await volumes.stream_in(spec, volumes.stream_out(array_id, filesystem=fstype))
    mnt = path.parent / "streamed"
    await volumes.mount(spec, target, mnt, read_only=True)
    try:
        assert _tree(mnt) == source
    finally:
        await volumes.unmount(target, mnt)
    await volumes.delete(target)


async def _streamed(
    volumes: PowerFlexVolumes, array_id: str, filesystem: str | None
) -> tuple[int, int]:
    """Bytes of the volume's stream, and the total its progress counted to."""
    totals: list[int] = []
    size = 0
    stream = volumes.stream_out(array_id, lambda _, t: totals.append(t), filesystem=filesystem)
    async for frame in stream:
        size += len(frame)
    return size, totals[-1]


def _spec_of(size: int, fstype: str) -> VolumeSpec:
    return VolumeSpec(
        uuid=uuid.uuid4(),
        volume_type=VolumeType.CUSTOM,
        content=Content.FILESYSTEM,
        size=size,
        thin=True,
        filesystem=fstype,
        mount_options="",
    )


async def test_a_refresh_between_filesystems_of_two_kinds_is_refused(
    make_storage: StorageFactory,
) -> None:
    """A refresh copies blocks: onto another kind of filesystem it would leave the
    target's config naming the wrong one. Refused before anything changes."""
    storage = await make_storage()
    await storage.volumes.create("pf", "src", config={"block.filesystem": "ext4"})
    await storage.volumes.create("pf", "dst", config={"block.filesystem": "xfs"})
    path = await storage.volumes.mount("pf", "dst")
    (path / "kept").write_bytes(b"dst's own")
    await storage.volumes.unmount("pf", "dst")
    with pytest.raises(InvalidRequest, match=r"cannot refresh 'dst' \(xfs\) from 'src' \(ext4\)"):
        await storage.volumes.refresh("pf", "src", "pf", "dst")
    path = await storage.volumes.mount("pf", "dst")
    try:
        assert (path / "kept").read_bytes() == b"dst's own"
    finally:
        await storage.volumes.unmount("pf", "dst")


@pytest.mark.parametrize("fstype", ["ext4", "xfs"])
async def test_a_refresh_brings_the_target_to_its_source_by_the_blocks_it_uses(
    make_storage: StorageFactory, caplog: pytest.LogCaptureFixture, fstype: str
) -> None:
    """Onto the target's old filesystem: what the source does not use is free space to
    the copied one, whatever the target held there."""
    storage = await make_storage()
    config = {"block.filesystem": fstype}
    for name, seed in (("src", 11), ("dst", 12)):
        await storage.volumes.create("pf", name, config=config)
        path = await storage.volumes.mount("pf", name)
        _fill(path, seed)
        (path / f"only-in-{name}").write_bytes(os.urandom(3 * MIB))
        await storage.volumes.unmount("pf", name)
    path = await storage.volumes.mount("pf", "src")
    source = _tree(path)
    await storage.volumes.unmount("pf", "src")
    with caplog.at_level(logging.INFO, logger="lxflex.driver"):
        await storage.volumes.refresh("pf", "src", "pf", "dst")
    assert any(FAST in r.getMessage() for r in caplog.records)
    copy = await storage.volumes.mount("pf", "dst")
    try:
        assert _tree(copy) == source
    finally:
        await storage.volumes.unmount("pf", "dst")
