"""Volume data backing: one sparse file per volume, ``<dir>/<volumeId>``.

A file has the volume's size and allocates only what was written, like a thin volume.
Snapshots clone the file (a reflink where the filesystem has one, else a copy of the
allocated extents only); overwriteVolumeContent rewrites the existing file in place, so a
loop device open on it sees the new content; a resize grows the file.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
from pathlib import Path
from typing import BinaryIO

FICLONE = 0x40049409
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
_CHUNK = 8 * 1024 * 1024

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]


def _punch_hole(fd: int, offset: int, length: int) -> None:
    if length <= 0:
        return
    if _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise OSError(err, os.strerror(err))
        # No hole punching here: write zeros instead, which is correct if not thin.
        zeros = bytes(min(length, _CHUNK))
        while length > 0:
            n = os.pwrite(fd, zeros[: min(length, len(zeros))], offset)
            offset += n
            length -= n


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """The ``(offset, length)`` runs of allocated data in a file, by SEEK_DATA/SEEK_HOLE."""
    extents: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        extents.append((start, min(end, size) - start))
        offset = end
    return extents


def _create(path: Path) -> BinaryIO:
    """A new backing file (FileExistsError if there is one), readable by root only."""
    return os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600), "r+b")


def _copy_range(src: int, dst: int, offset: int, length: int) -> None:
    while length > 0:
        n = os.copy_file_range(src, dst, min(length, 1 << 30), offset, offset)
        if n == 0:
            break
        offset += n
        length -= n


class DataStore:
    """Sparse backing files of one simulator; paths never leave ``root``.

    A volume's file is made when its data is first needed (it is mapped to a host, or
    given another volume's content): until then the volume reads as zeros, as a new thin
    volume does, and creating one costs no file (a file create is the slowest step of a
    volume create on some filesystems).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)  # volume data: root's only, like a block device

    def path(self, volume_id: str) -> Path:
        if not volume_id.isalnum():
            raise ValueError(f"bad volume id {volume_id!r}")
        return self.root / volume_id

    def materialize(self, volume_id: str, size: int) -> Path:
        """The volume's backing file, made (sparse, ``size`` bytes) if it has none yet."""
        path = self.path(volume_id)
        with contextlib.suppress(FileExistsError), _create(path) as f:
            f.truncate(size)
        return path

    def grow(self, volume_id: str, size: int) -> None:
        with contextlib.suppress(FileNotFoundError), open(self.path(volume_id), "r+b") as f:
            f.truncate(size)

    def remove(self, volume_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(volume_id).unlink()

    def allocated(self, volume_id: str) -> int:
        """Bytes the backing file allocates (what a thin volume uses)."""
        try:
            return self.path(volume_id).stat().st_blocks * 512
        except FileNotFoundError:
            return 0

    def clone(self, source_id: str, target_id: str) -> None:
        """Make ``target`` a copy of ``source``: reflink when possible, else sparse copy."""
        src_path, dst_path = self.path(source_id), self.path(target_id)
        if not src_path.exists():
            return  # the source reads as zeros, and so does a target without a file
        with open(src_path, "rb") as src, _create(dst_path) as dst:
            try:
                fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
                return
            except OSError:
                pass
            size = os.fstat(src.fileno()).st_size
            dst.truncate(size)
            for offset, length in data_extents(src.fileno(), size):
                _copy_range(src.fileno(), dst.fileno(), offset, length)

    def overwrite(self, source_id: str, target_id: str, target_size: int) -> None:
        """Give ``target`` the content of ``source`` in place (same inode, same size).

        Allocated runs of the source are copied, the rest of the target is punched out, so
        the target stays as thin as the source. Bytes beyond the source's end read zero.
        """
        if not self.path(source_id).exists():
            if self.path(target_id).exists():
                with open(self.path(target_id), "r+b") as dst:
                    _punch_hole(dst.fileno(), 0, os.fstat(dst.fileno()).st_size)
                    os.fsync(dst.fileno())
            return
        target = self.materialize(target_id, target_size)
        with open(self.path(source_id), "rb") as src, open(target, "r+b") as dst:
            src_size = os.fstat(src.fileno()).st_size
            dst_size = os.fstat(dst.fileno()).st_size
            position = 0
            for offset, length in data_extents(src.fileno(), min(src_size, dst_size)):
                _punch_hole(dst.fileno(), position, offset - position)
                _copy_range(src.fileno(), dst.fileno(), offset, length)
                position = offset + length
            _punch_hole(dst.fileno(), position, dst_size - position)
            os.fsync(dst.fileno())
