"""Sparse-aware block copy between devices (or files).

The source is read in large chunks; a chunk of zeros is not written, and a chunk with
data is written only where its 4 KiB blocks hold data. A thin target therefore allocates
what the source holds and no more. When the target may hold old data (``target_zeroed``
False), zero runs are punched out (discard with zeroing, which keeps a thin volume thin),
falling back to writing zeros where the device cannot punch. Progress is reported through
a callback with ``(bytes_done, bytes_total)``. This is blocking I/O: run it in a thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CopyResult", "copy_blocks", "device_size"]

CHUNK = 4 * 1024 * 1024
BLOCK = 4096
_ZERO_BLOCK = bytes(BLOCK)
_ZERO_CHUNK = bytes(CHUNK)
_PUNCH = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CopyResult:
    total: int  # bytes covered
    written: int  # bytes written to the target
    zeroed: int  # bytes punched or zeroed on a target that was not known to be empty


def device_size(fd: int) -> int:
    """Size of an open block device or file, in bytes."""
    return os.lseek(fd, 0, os.SEEK_END)


def _zero_range(fd: int, offset: int, length: int) -> None:
    if length <= 0:
        return
    if _libc.fallocate(fd, _PUNCH, offset, length) == 0:
        return
    err = ctypes.get_errno()
    if err not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENODEV):
        raise OSError(err, os.strerror(err))
    end = offset + length
    while offset < end:
        n = os.pwrite(fd, _ZERO_CHUNK[: min(CHUNK, end - offset)], offset)
        offset += n


def _write_data_blocks(fd: int, view: memoryview, base: int) -> int:
    """Write the non-zero 4 KiB blocks of ``view`` at ``base``; return bytes written."""
    written = 0
    start = -1
    length = len(view)
    for pos in range(0, length, BLOCK):
        block = view[pos : pos + BLOCK]
        is_zero = block == _ZERO_BLOCK[: len(block)]
        if not is_zero and start < 0:
            start = pos
        elif is_zero and start >= 0:
            written += os.pwrite(fd, view[start:pos], base + start)
            start = -1
    if start >= 0:
        written += os.pwrite(fd, view[start:length], base + start)
    return written


def copy_blocks(
    source: Path,
    target: Path,
    *,
    length: int | None = None,
    target_zeroed: bool,
    progress: Progress | None = None,
) -> CopyResult:
    """Copy ``length`` bytes (default: the whole source) from ``source`` to ``target``.

    Raises ValueError when the target is smaller than what is copied, OSError on I/O
    errors. The target is flushed (fsync) before returning.
    """
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
        try:
            total = device_size(src) if length is None else length
            if device_size(dst) < total:
                raise ValueError(
                    f"target {target} ({device_size(dst)} bytes) is smaller than the "
                    f"{total} bytes to copy"
                )
            os.posix_fadvise(src, 0, total, os.POSIX_FADV_SEQUENTIAL)
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            written = zeroed = 0
            zero_from = -1
            offset = 0
            while offset < total:
                n = os.preadv(src, [view[: min(CHUNK, total - offset)]], offset)
                if n <= 0:
                    raise OSError(errno.EIO, f"short read from {source} at {offset}")
                chunk = view[:n]
                if chunk == _ZERO_CHUNK[:n]:
                    if not target_zeroed and zero_from < 0:
                        zero_from = offset
                else:
                    if zero_from >= 0:
                        _zero_range(dst, zero_from, offset - zero_from)
                        zeroed += offset - zero_from
                        zero_from = -1
                    if target_zeroed:
                        written += _write_data_blocks(dst, chunk, offset)
                    else:
                        written += os.pwrite(dst, chunk, offset)
                offset += n
                if progress is not None:
                    progress(offset, total)
            if zero_from >= 0:
                _zero_range(dst, zero_from, total - zero_from)
                zeroed += total - zero_from
            os.fsync(dst)
            return CopyResult(total, written, zeroed)
        finally:
            os.close(dst)
    finally:
        os.close(src)
