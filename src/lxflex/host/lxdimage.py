"""Instance images in LXD's formats, read from local files and unpacked onto volumes.

An image is either *unified*, one tarball holding ``metadata.yaml``, ``templates/`` and the
root filesystem (``rootfs/`` for a container, the disk ``rootfs.img`` for a virtual
machine), or *split*, a metadata tarball and a separate rootfs file: a squashfs or a
tarball of the tree for a container, a qcow2 or raw disk for a virtual machine. Formats
are told by content (magic bytes, the members' names), never by file names; tarballs may
be compressed in any way GNU tar recognises.

A container volume receives the image as LXD lays it out: ``metadata.yaml`` and
``templates/`` at the top and the tree under ``rootfs/``. A virtual machine's filesystem
volume receives the metadata and templates; its root disk receives the disk image.
Unpacking goes through GNU tar and unsquashfs, which keep owners by number, modes, links
and extended attributes, refuse ``..`` members and do not write through links a tree
plants.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from .archive import Archives
from .images import DiskImages, ImageError
from .runner import Runner

__all__ = ["ImageFiles", "ImageKind", "InstanceImage", "LxdImages", "filesystem_size_for"]

_TIMEOUT = 24 * 3600.0
_SQUASHFS = b"hsqs"
_QCOW2 = b"QFI\xfb"
_DISK_MEMBER = "rootfs.img"
_BLOCK = 4096
# One listing line of ``tar -tv`` or ``unsquashfs -lln``: mode, owner, size, then the rest.
_LISTED = re.compile(r"^(\S)\S*\s+\S+\s+(\d+)\s")


class ImageKind(enum.StrEnum):
    CONTAINER = "container"
    VIRTUAL_MACHINE = "virtual-machine"


@dataclass(frozen=True)
class ImageFiles:
    """An image in a local cache: a unified tarball, or a metadata tarball and a rootfs."""

    metadata: Path
    rootfs: Path | None = None


@dataclass(frozen=True)
class InstanceImage:
    """An opened image: what it holds and the smallest volume that takes it."""

    files: ImageFiles
    kind: ImageKind
    rootfs_format: str  # "tree" (in the unified tarball), "tarball", "squashfs" or "disk"
    needed_bytes: int = 0  # a container's filesystem size, or a disk's virtual size
    disk: Path | None = None  # a virtual machine's disk image file


def filesystem_size_for(tree_bytes: int) -> int:
    """A filesystem size that holds a tree of ``tree_bytes``: room for the filesystem's
    own metadata (inode tables, journal) and a tenth spare for the first writes."""
    return tree_bytes + tree_bytes // 10 + 256 * 1024 * 1024


def _magic(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(4)
    except OSError as exc:
        raise ImageError(f"cannot read image file {path.name}: {exc.strerror}") from None


def _tally(listing: str) -> tuple[int, set[str]]:
    """(bytes a tree listed by tar -tv or unsquashfs -lln needs, its top-level names)."""
    total = 0
    tops: set[str] = set()
    for line in listing.splitlines():
        found = _LISTED.match(line)
        if found is None:
            continue
        size = int(found.group(2)) if found.group(1) == "-" else 0
        total += -(-size // _BLOCK) * _BLOCK + _BLOCK // 8  # blocks, and an inode's share
        name = line[found.end() :].split(None, 2)[-1]  # past the date and the time
        tops.add(name.split(" -> ")[0].removeprefix("./").split("/")[0])
    return total, tops


class LxdImages:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.archives = Archives(runner)

    async def _listing(self, tarball: Path) -> tuple[int, set[str]]:
        try:
            done = await self.runner.run(
                ["tar", "--list", "--verbose", "--numeric-owner", "--file", str(tarball)],
                timeout=_TIMEOUT,
            )
        except Exception as exc:
            raise ImageError(f"{tarball.name} is not a readable tarball") from exc
        return _tally(done.stdout)

    @asynccontextmanager
    async def open(self, files: ImageFiles, scratch: Path) -> AsyncIterator[InstanceImage]:
        """The image, inspected; a unified VM image's disk is extracted (sparsely) under
        ``scratch`` for the block, and removed at the end. :class:`ImageError` when the
        files are not an LXD image."""
        image = await self._inspect(files)
        if image.kind is ImageKind.CONTAINER:
            yield image
            return
        try:
            if files.rootfs is None:
                scratch.mkdir(parents=True, exist_ok=True)
                disk = await self.archives.extract_file(files.metadata, _DISK_MEMBER, scratch)
                if disk.is_symlink() or not disk.is_file():
                    # A link would have the volume filled from whatever host file it names.
                    raise ImageError(f"{_DISK_MEMBER} in the image is not a regular file")
            else:
                disk = files.rootfs
            info = await DiskImages(self.runner).info(disk)
            size = int(str(info.get("virtual-size", 0)))
            yield dataclasses.replace(image, disk=disk, needed_bytes=size)
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(scratch)

    async def _inspect(self, files: ImageFiles) -> InstanceImage:
        if _magic(files.metadata) in (_SQUASHFS, _QCOW2):
            raise ImageError("the first image file must be a tarball with metadata.yaml")
        size, tops = await self._listing(files.metadata)
        if "metadata.yaml" not in tops:
            raise ImageError(f"{files.metadata.name} holds no metadata.yaml: not an LXD image")
        if files.rootfs is None:
            if "rootfs" in tops:
                return InstanceImage(files, ImageKind.CONTAINER, "tree", filesystem_size_for(size))
            if _DISK_MEMBER in tops:
                return InstanceImage(files, ImageKind.VIRTUAL_MACHINE, "disk")
            raise ImageError("a unified image holds rootfs/ (container) or rootfs.img (VM)")
        magic = _magic(files.rootfs)
        if magic == _SQUASHFS:
            if shutil.which("unsquashfs") is None:
                raise ImageError("squashfs images need unsquashfs (squashfs-tools)")
            done = await self.runner.run(
                ["unsquashfs", "-lln", str(files.rootfs)], timeout=_TIMEOUT
            )
            tree = _tally(done.stdout)[0]
            return InstanceImage(
                files, ImageKind.CONTAINER, "squashfs", filesystem_size_for(tree + size)
            )
        if magic == _QCOW2:
            return InstanceImage(files, ImageKind.VIRTUAL_MACHINE, "disk")
        try:
            tree, _ = await self._listing(files.rootfs)
        except ImageError:  # neither squashfs, qcow2 nor tar: a raw disk
            return InstanceImage(files, ImageKind.VIRTUAL_MACHINE, "disk")
        return InstanceImage(
            files, ImageKind.CONTAINER, "tarball", filesystem_size_for(tree + size)
        )

    async def unpack_tree(self, image: InstanceImage, into: Path) -> None:
        """A container's volume content: metadata at the top, the tree under rootfs/."""
        await self._extract(image.files.metadata, into)
        rootfs = image.files.rootfs
        if rootfs is None:
            return
        if image.rootfs_format == "squashfs":
            await self.runner.run(
                ["unsquashfs", "-f", "-n", "-d", str(into / "rootfs"), str(rootfs)],
                timeout=_TIMEOUT,
            )
        else:
            (into / "rootfs").mkdir(exist_ok=True)
            await self._extract(rootfs, into / "rootfs")

    async def unpack_metadata(self, image: InstanceImage, into: Path) -> None:
        """A virtual machine's filesystem volume content: the metadata and templates."""
        await self._extract(image.files.metadata, into, exclude=_DISK_MEMBER)

    async def _extract(self, tarball: Path, into: Path, *, exclude: str | None = None) -> None:
        argv = [
            "tar",
            "--extract",
            "--same-permissions",
            "--same-owner",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--acls",
            "--file",
            str(tarball),
            "-C",
            str(into),
        ]
        if exclude:
            argv += [f"--exclude=./{exclude}", f"--exclude={exclude}"]
        await self.runner.run(argv, timeout=_TIMEOUT)
