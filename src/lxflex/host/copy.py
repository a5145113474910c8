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
import mmap
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BLOCK",
    "CHUNK",
    "CopyResult",
    "copy_blocks",
    "data_runs",
    "device_size",
    "open_device",
    "zero_range",
]

CHUNK = 4 * 1024 * 1024
BLOCK = 4096
_ZERO_BLOCK = bytes(BLOCK)
_ZERO_CHUNK = bytes(CHUNK)
_ZERO_ALIGNED = memoryview(mmap.mmap(-1, CHUNK, prot=mmap.PROT_READ))  # for O_DIRECT writes
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


def zero_range(fd: int, offset: int, length: int) -> None:
    if length <= 0:
        return
    if _libc.fallocate(fd, _PUNCH, offset, length) == 0:
        return
    err = ctypes.get_errno()
    if err not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENODEV):
        raise OSError(err, os.strerror(err))
    end = offset + length
    while offset < end:
        n = os.pwrite(fd, _ZERO_ALIGNED[: min(CHUNK, end - offset)], offset)
        offset += n


def _runs(data: bytes) -> Iterator[tuple[int, int, bool]]:
    """``(start, end, is_zero)`` of the alternating runs of whole 4 KiB blocks of zeros
    and of data in ``data``. Comparisons use bytes: comparing a memoryview with bytes
    goes element by element, hundreds of times slower."""
    length = len(data)
    run_start, run_zero = 0, data[:BLOCK] == _ZERO_BLOCK[: min(BLOCK, length)]
    for pos in range(BLOCK, length + BLOCK, BLOCK):
        at_end = pos >= length
        is_zero = not at_end and data[pos : pos + BLOCK] == _ZERO_BLOCK[: min(BLOCK, length - pos)]
        if at_end or is_zero != run_zero:
            yield run_start, min(pos, length), run_zero
            run_start, run_zero = pos, is_zero


def data_runs(data: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of the runs of ``data`` that hold something other than zeros."""
    if data == _ZERO_CHUNK[: len(data)]:
        return []
    return [(start, end) for start, end, zero in _runs(data) if not zero]


def _write_runs(
    fd: int, view: memoryview, data: bytes, base: int, *, clear: bool
) -> tuple[int, int]:
    """Write the data runs of ``view`` (whose bytes are ``data``) at ``base``; with
    ``clear``, punch the zero runs too. Return (bytes written, bytes cleared). Writes
    use ``view``, which is aligned for O_DIRECT."""
    written = cleared = 0
    for start, end, zero in _runs(data):
        if not zero:
            written += os.pwrite(fd, view[start:end], base + start)
        elif clear:
            zero_range(fd, base + start, end - start)
            cleared += end - start
    return written, cleared


def open_device(path: Path, flags: int, *, direct: bool) -> int:
    """Open with O_DIRECT when asked and allowed: a buffered read of a block device goes
    through its page cache, many times slower than the device itself on large copies."""
    if direct:
        try:
            return os.open(path, flags | os.O_DIRECT | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags | os.O_CLOEXEC)


def _copy_ranges(
    src: int,
    dst: int,
    ranges: Sequence[tuple[int, int]],
    target_zeroed: bool,
    progress: Progress | None,
    source: Path,
) -> CopyResult:
    """Copy only ``ranges`` (offset, length); zeros in them are cleared on a target that
    may hold data."""
    total = sum(length for _, length in ranges)
    done = written = zeroed = 0

    def step(offset: int, _: int) -> None:
        if progress is not None:
            progress(done + offset, total)

    view = memoryview(mmap.mmap(-1, CHUNK))  # one buffer for every range
    for start, length in ranges:
        part = _copy_loop(
            src, dst, length, target_zeroed, step, source, start=start, sync=False, view=view
        )
        written += part.written
        zeroed += part.zeroed
        done += length
    os.fsync(dst)
    return CopyResult(total, written, zeroed)


def _copy_loop(
    src: int,
    dst: int,
    total: int,
    target_zeroed: bool,
    progress: Progress | None,
    source: Path,
    *,
    start: int = 0,
    sync: bool = True,
    view: memoryview | None = None,
) -> CopyResult:
    """Copy ``total`` bytes from ``start``; progress counts from the start."""
    if view is None:
        view = memoryview(mmap.mmap(-1, CHUNK))  # page-aligned, as O_DIRECT requires
    written = zeroed = 0
    zero_from = -1  # start of a run of zero chunks not yet cleared on the target
    end = start + total
    offset = start
    while offset < end:
        n = os.preadv(src, [view[: min(CHUNK, end - offset)]], offset)
        if n <= 0:
            raise OSError(errno.EIO, f"short read from {source} at {offset}")
        chunk = view[:n]
        data = bytes(chunk)
        if data == _ZERO_CHUNK[:n]:
            if not target_zeroed and zero_from < 0:
                zero_from = offset
        else:
            if zero_from >= 0:
                zero_range(dst, zero_from, offset - zero_from)
                zeroed += offset - zero_from
                zero_from = -1
            w, c = _write_runs(dst, chunk, data, offset, clear=not target_zeroed)
            written += w
            zeroed += c
        offset += n
        if progress is not None:
            progress(offset - start, total)
    if zero_from >= 0:
        zero_range(dst, zero_from, end - zero_from)
        zeroed += end - zero_from
    if sync:
        os.fsync(dst)
    return CopyResult(total, written, zeroed)


def copy_blocks(
    source: Path,
    target: Path,
    *,
    length: int | None = None,
    target_zeroed: bool,
    progress: Progress | None = None,
    ranges: Sequence[tuple[int, int]] | None = None,
) -> CopyResult:
    """Copy ``length`` bytes (default: the whole source) from ``source`` to ``target``;
    with ``ranges`` (offset, length), only those (the rest of the target is left as it
    is), and progress counts the bytes of the ranges.

    Raises ValueError when the target is smaller than what is copied, OSError on I/O
    errors. The target is flushed (fsync) before returning.
    """
    probe = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = device_size(probe)
    finally:
        os.close(probe)
    total = size if length is None else length
    # Direct I/O needs sector-aligned sizes; the buffer below is page-aligned.
    direct = total % BLOCK == 0
    src = open_device(source, os.O_RDONLY, direct=direct)
    try:
        dst = open_device(target, os.O_WRONLY, direct=direct)
        try:
            if device_size(dst) < total:
                raise ValueError(
                    f"target {target} ({device_size(dst)} bytes) is smaller than the "
                    f"{total} bytes to copy"
                )
            if ranges is not None:
                return _copy_ranges(src, dst, ranges, target_zeroed, progress, source)
            os.posix_fadvise(src, 0, total, os.POSIX_FADV_SEQUENTIAL)
            return _copy_loop(src, dst, total, target_zeroed, progress, source)
        finally:
            os.close(dst)
    finally:
        os.close(src)
