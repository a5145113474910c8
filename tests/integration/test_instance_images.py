"""Instance volumes filled from LXD images: a real rootfs tree (files, owners, modes, an
extended attribute, a symlink, a hard link, a device-less /dev) in the unified format and
in the split one (squashfs or tarball rootfs), and virtual-machine disks (qcow2 with a
GPT, unified and split), written sparsely and verified on the volumes."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from lxflex.driver.errors import InvalidRequest
from lxflex.host.lxdimage import ImageFiles
from lxflex.service import Storage

from ..conftest import GIB
from .conftest import StorageFactory, read_chunks, volumes_of

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("qemu-img", "mksquashfs", "sgdisk")),
        reason="needs qemu-utils, squashfs-tools and gdisk",
    ),
]

MIB = 1 << 20
CT, VM = "container", "virtual-machine"
LIB = os.urandom(300_000)
METADATA = b"architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: lxflex-test\n"
DISK = {2 * MIB: os.urandom(65536), 40 * MIB: os.urandom(4096)}


@pytest.fixture
async def storage(make_storage: StorageFactory) -> Storage:
    return await make_storage("4.5")


def _run(*argv: str | Path) -> None:
    subprocess.run([str(a) for a in argv], check=True, capture_output=True)


def _metadata(tree: Path) -> None:
    tree.mkdir(parents=True, exist_ok=True)
    (tree / "metadata.yaml").write_bytes(METADATA)
    (tree / "templates").mkdir(exist_ok=True)
    (tree / "templates" / "hostname.tpl").write_text("{{ instance.name }}\n")


def _rootfs_tree(base: Path) -> tuple[Path, bool]:
    """An image tree with a small root filesystem; also whether the xattr could be set."""
    tree = base / "tree"
    _metadata(tree)
    rootfs = tree / "rootfs"
    for sub in ("etc", "usr/lib", "bin", "tmp", "dev"):
        (rootfs / sub).mkdir(parents=True)
    hostname = rootfs / "etc" / "hostname"
    hostname.write_text("lxflex\n")
    os.chown(hostname, 1000, 1001)
    try:
        os.setxattr(hostname, "user.origin", b"image")
        xattr = True
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EPERM):
            raise
        xattr = False
    (rootfs / "usr" / "lib" / "libdata.so").write_bytes(LIB)
    (rootfs / "lib").symlink_to("usr/lib")
    hello = rootfs / "bin" / "hello"
    hello.write_text("#!/bin/sh\necho hello\n")
    hello.chmod(0o755)
    os.link(hello, rootfs / "bin" / "hi")
    (rootfs / "tmp").chmod(0o1777)
    return tree, xattr


def _container_image(base: Path, layout: str) -> tuple[ImageFiles, bool]:
    tree, xattr = _rootfs_tree(base)
    tar = ["tar", "--create", "--xattrs", "--xattrs-include=*", "--numeric-owner"]
    if layout == "unified":
        image = base / "unified.tar.gz"
        _run(*tar, "--gzip", "-f", image, "-C", tree, "metadata.yaml", "templates", "rootfs")
        return ImageFiles(image), xattr
    meta = base / "meta.tar.xz"
    _run(*tar, "--xz", "-f", meta, "-C", tree, "metadata.yaml", "templates")
    if layout == "split-squashfs":
        rootfs = base / "rootfs.squashfs"
        _run("mksquashfs", tree / "rootfs", rootfs, "-noappend", "-quiet", "-no-progress")
    else:
        rootfs = base / "rootfs.tar.gz"
        _run(*tar, "--gzip", "-f", rootfs, "-C", tree / "rootfs", ".")
    return ImageFiles(meta, rootfs), xattr


@pytest.mark.parametrize("layout", ["unified", "split-squashfs", "split-tarball"])
async def test_container_from_image(storage: Storage, tmp_path: Path, layout: str) -> None:
    files, xattr = _container_image(tmp_path, layout)
    view = await storage.instances.create("pf", CT, "c1", image=files)
    assert view.config["size"] == "8GiB"
    path = await storage.instances.mount("pf", CT, "c1")
    try:
        assert (path / "metadata.yaml").read_bytes() == METADATA
        assert (path / "templates" / "hostname.tpl").exists()
        rootfs = path / "rootfs"
        hostname = rootfs / "etc" / "hostname"
        assert hostname.read_text() == "lxflex\n"
        assert (hostname.stat().st_uid, hostname.stat().st_gid) == (1000, 1001)
        if xattr:
            assert os.getxattr(hostname, "user.origin") == b"image"
        assert os.readlink(rootfs / "lib") == "usr/lib"
        assert (rootfs / "lib" / "libdata.so").read_bytes() == LIB
        hello = rootfs / "bin" / "hello"
        assert hello.stat().st_mode & 0o7777 == 0o755
        assert hello.stat().st_ino == (rootfs / "bin" / "hi").stat().st_ino
        assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
        assert list((rootfs / "dev").iterdir()) == []
    finally:
        await storage.instances.unmount("pf", CT, "c1")
    await storage.instances.delete("pf", CT, "c1")


async def test_container_grows_to_hold_its_image(
    make_storage: StorageFactory, tmp_path: Path
) -> None:
    """Without a size, the volume rounds up to the next size that holds the image (1 GiB
    steps on PowerFlex 5); an explicit size too small is refused and leaves nothing."""
    storage = await make_storage("5.0")
    pool = await storage.pools.get("pf")
    await storage.pools.update("pf", {**pool.config, "volume.size": "1GiB"})
    tree = tmp_path / "tree"
    _metadata(tree)
    (tree / "rootfs").mkdir()
    with open(tree / "rootfs" / "big", "wb") as f:  # 1.5 GiB, mostly a hole
        f.truncate(3 * GIB // 2)
        f.seek(GIB)
        f.write(b"end of the first GiB")
    image = tmp_path / "big.tar"
    _run("tar", "--create", "--sparse", "-f", image, "-C", tree, "metadata.yaml", "rootfs")

    with pytest.raises(InvalidRequest, match="cannot hold it"):
        await storage.instances.create(
            "pf", CT, "small", image=ImageFiles(image), config={"size": "1GiB"}
        )
    assert storage.sim.array.volumes == {}  # type: ignore[attr-defined]
    view = await storage.instances.create("pf", CT, "c1", image=ImageFiles(image))
    assert view.config["size"] == "2GiB"
    path = await storage.instances.mount("pf", CT, "c1")
    try:
        with open(path / "rootfs" / "big", "rb") as f:
            f.seek(GIB)
            assert f.read(20) == b"end of the first GiB"
    finally:
        await storage.instances.unmount("pf", CT, "c1")
    await storage.instances.delete("pf", CT, "c1")


def _disk_image(base: Path) -> Path:
    """A 64 MiB disk with a GPT (one partition) and data, as qcow2."""
    raw = base / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(64 * MIB)
    _run("sgdisk", "--new=1:2048:+32M", "--typecode=1:8300", raw)
    with open(raw, "r+b") as f:
        for offset, data in DISK.items():
            f.seek(offset)
            f.write(data)
    qcow2 = base / "disk.qcow2"
    _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2)
    raw.unlink()
    return qcow2


def _vm_image(base: Path, layout: str) -> ImageFiles:
    tree = base / "tree"
    _metadata(tree)
    disk = _disk_image(base)
    tar = ["tar", "--create", "--gzip"]
    if layout == "unified":
        shutil.move(disk, tree / "rootfs.img")
        image = base / "unified.tar.gz"
        _run(*tar, "-f", image, "-C", tree, "metadata.yaml", "templates", "rootfs.img")
        return ImageFiles(image)
    meta = base / "meta.tar.gz"
    _run(*tar, "-f", meta, "-C", tree, "metadata.yaml", "templates")
    return ImageFiles(meta, disk)


@pytest.mark.parametrize("layout", ["unified", "split"])
async def test_vm_from_image(storage: Storage, tmp_path: Path, layout: str) -> None:
    view = await storage.instances.create("pf", VM, "vm1", image=_vm_image(tmp_path, layout))
    assert view.config["size"] == "8GiB"
    record = await storage.instances.record("pf", VM, "vm1")
    assert record.array_id is not None
    volumes = await volumes_of(storage)
    assert await read_chunks(volumes, record.array_id, DISK) == DISK
    allocated = storage.sim.data.allocated(record.array_id)  # type: ignore[attr-defined]
    assert allocated <= 2 * MIB  # the data and the GPT, not the 64 MiB disk
    # The GPT's backup header moved to the end of the 8 GiB volume.
    last = 8 * GIB // 512 - 1
    header = await read_chunks(volumes, record.array_id, {512: bytes(40), last * 512: bytes(8)})
    assert header[last * 512] == b"EFI PART"
    assert struct.unpack_from("<Q", header[512], 32)[0] == last
    path = await storage.instances.mount("pf", VM, "vm1")
    try:
        assert (path / "metadata.yaml").read_bytes() == METADATA
        assert not (path / "rootfs.img").exists()  # the disk went to the root volume
    finally:
        await storage.instances.unmount("pf", VM, "vm1")
    assert not any(volumes.scratch.glob("image-*"))  # the extracted disk is gone
    # Growing the root disk moves the backup header to the new end again.
    await storage.instances.resize("pf", VM, "vm1", "16GiB")
    last = 16 * GIB // 512 - 1
    header = await read_chunks(volumes, record.array_id, {512: bytes(40), last * 512: bytes(8)})
    assert header[last * 512] == b"EFI PART"
    assert struct.unpack_from("<Q", header[512], 32)[0] == last
    assert await read_chunks(volumes, record.array_id, DISK) == DISK
    await storage.instances.delete("pf", VM, "vm1")


async def test_unusable_images_are_refused(storage: Storage, tmp_path: Path) -> None:
    container_image, _ = _container_image(tmp_path, "unified")
    with pytest.raises(InvalidRequest, match="a container image cannot fill"):
        await storage.instances.create("pf", VM, "vm1", image=container_image)
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(InvalidRequest, match="not a readable tarball"):
        await storage.instances.create("pf", CT, "c1", image=ImageFiles(junk))
    empty = tmp_path / "empty.tar"
    _run("tar", "--create", "-f", empty, "-C", tmp_path / "tree", "templates")
    with pytest.raises(InvalidRequest, match=r"no metadata\.yaml"):
        await storage.instances.create("pf", CT, "c1", image=ImageFiles(empty))
    meta_only = tmp_path / "meta.tar"
    _run("tar", "--create", "-f", meta_only, "-C", tmp_path / "tree", "metadata.yaml")
    with pytest.raises(InvalidRequest, match="holds rootfs/"):
        await storage.instances.create("pf", CT, "c1", image=ImageFiles(meta_only))
    # A unified VM image whose disk is a link to a host file must not copy that file.
    linked = tmp_path / "linked"
    _metadata(linked)
    (linked / "rootfs.img").symlink_to("/etc/hostname")
    link_image = tmp_path / "linked.tar"
    _run("tar", "--create", "-f", link_image, "-C", linked, "metadata.yaml", "rootfs.img")
    with pytest.raises(InvalidRequest, match=r"rootfs\.img in the image is not a regular file"):
        await storage.instances.create("pf", VM, "vm1", image=ImageFiles(link_image))
    assert storage.sim.array.volumes == {}  # type: ignore[attr-defined]
    assert await storage.instances.all("pf") == []
