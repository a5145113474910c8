"""Sparse-aware block copy between devices (or files).

The source is read in large chunks; a chunk of zeros is not written, and a chunk with
data is written only where its 4 KiB blocks hold data. A thin target therefore allocates
what the source holds and no more. When the target may hold old data (``target_zeroed``
False), zero runs are punched out (discard with zeroing, which keeps a thin volume thin),
falling back to writing zeros where the device cannot punch. Several chunks are read and
written at once (:class:`InFlight`). Progress is reported through a callback with
``(bytes_done, bytes_total)``. This is blocking I/O: run it in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import mmap
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BLOCK",
    "CHUNK",
    "IN_FLIGHT",
    "CopyResult",
    "CopyStopped",
    "InFlight",
    "chunk_ranges",
    "copy_blocks",
    "copy_in_thread",
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
class InFlight:
    """How many chunks are read, and written, at once (each by threads of their own)."""

    reads: int
    writes: int


# A device, and a network path to it, serves several requests at once faster than one
# after another: bench.copy measures this against one read and one write in flight.
IN_FLIGHT = InFlight(reads=4, writes=2)


class CopyStopped(Exception):
    """The copy was asked to stop (whoever waited for it was cancelled)."""


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


def chunk_ranges(ranges: Sequence[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """``ranges`` (offset, length) cut into reads of at most CHUNK bytes."""
    for start, length in ranges:
        for offset in range(start, start + length, CHUNK):
            yield offset, min(CHUNK, start + length - offset)


def _read_fully(fd: int, view: memoryview, offset: int, source: Path) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise OSError(errno.EIO, f"short read from {source} at {offset + done}")
        done += n


class _Pipeline:
    """Copy ``ranges``: a chunk of zeros is not written (cleared instead on a target that
    may hold data, runs of them at once), a chunk with data only where its blocks do.

    Reads and writes overlap, as many at once as ``in_flight`` says. Chunks are taken in
    order; progress counts a chunk once it and every chunk before it are written."""

    def __init__(
        self,
        src: int,
        dst: int,
        target_zeroed: bool,
        progress: Progress | None,
        source: Path,
        in_flight: InFlight,
        stop: threading.Event | None,
    ) -> None:
        self.src, self.dst, self.source, self.in_flight = src, dst, source, in_flight
        self.stop = stop
        self.clear, self.progress = not target_zeroed, progress
        self.total = self.written = self.zeroed = 0
        self.zero_from = -1  # start of a run of zero chunks not yet cleared on the target
        self.end = -1  # where the last chunk ended: a range that starts elsewhere ends a run
        self.free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for _ in range(in_flight.reads + in_flight.writes + 1):
            self.free.put(memoryview(mmap.mmap(-1, CHUNK)))  # page-aligned, for O_DIRECT
        self.reads: deque[tuple[int, int, memoryview, Future[None]]] = deque()
        # Bytes done once each write is finished (None: nothing to wait for), oldest first.
        self.writes: deque[tuple[int, Future[tuple[int, int]] | None]] = deque()

    def run(self, ranges: Sequence[tuple[int, int]]) -> CopyResult:
        self.total = sum(length for _, length in ranges)
        chunks = chunk_ranges(ranges)
        done = 0
        with (
            ThreadPoolExecutor(self.in_flight.reads, "lxflex-read") as readers,
            ThreadPoolExecutor(self.in_flight.writes, "lxflex-write") as writers,
        ):
            try:
                while True:
                    if self.stop is not None and self.stop.is_set():
                        raise CopyStopped(f"the copy from {self.source} was stopped")
                    while len(self.reads) < self.in_flight.reads and (item := next(chunks, None)):
                        buffer = self.free.get()  # waits for a writer to give one back
                        view = buffer[: item[1]]
                        job = readers.submit(_read_fully, self.src, view, item[0], self.source)
                        self.reads.append((*item, buffer, job))
                    if not self.reads:
                        break
                    offset, length, buffer, read = self.reads.popleft()
                    read.result()
                    done += length
                    self.writes.append((done, self._take(writers, offset, length, buffer)))
                    self._settle(wait=False)
                self._end_zero_run()
                self._settle(wait=True)
            finally:
                readers.shutdown(cancel_futures=True)
                writers.shutdown(cancel_futures=True)
        os.fsync(self.dst)
        return CopyResult(self.total, self.written, self.zeroed)

    def _take(
        self, writers: ThreadPoolExecutor, offset: int, length: int, buffer: memoryview
    ) -> Future[tuple[int, int]] | None:
        """Hand a chunk that was read to a writer; None if it is zeros."""
        if self.end != offset:
            self._end_zero_run()
        self.end = offset + length
        data = bytes(buffer[:length])
        if data == _ZERO_CHUNK[:length]:
            self.free.put(buffer)
            if self.clear and self.zero_from < 0:
                self.zero_from = offset
            return None
        self._end_zero_run(offset)
        return writers.submit(self._write, buffer, length, data, offset)

    def _write(self, buffer: memoryview, length: int, data: bytes, offset: int) -> tuple[int, int]:
        """A writer's job: one chunk's data runs; then its buffer is free again."""
        try:
            return _write_runs(self.dst, buffer[:length], data, offset, clear=self.clear)
        finally:
            self.free.put(buffer)

    def _end_zero_run(self, at: int | None = None) -> None:
        """Clear the run of zero chunks that ends at ``at`` (default: where the last
        chunk ended)."""
        if self.zero_from >= 0:
            end = self.end if at is None else at
            zero_range(self.dst, self.zero_from, end - self.zero_from)
            self.zeroed += end - self.zero_from
            self.zero_from = -1

    def _settle(self, *, wait: bool) -> None:
        """Count the writes finished, oldest first (all of them with ``wait``); a write
        that failed raises here."""
        while self.writes:
            upto, job = self.writes[0]
            if job is not None and not wait and not job.done():
                return
            self.writes.popleft()
            if job is not None:
                w, c = job.result()
                self.written += w
                self.zeroed += c
            if self.progress is not None:
                self.progress(upto, self.total)


def copy_blocks(
    source: Path,
    target: Path,
    *,
    length: int | None = None,
    target_zeroed: bool,
    progress: Progress | None = None,
    ranges: Sequence[tuple[int, int]] | None = None,
    in_flight: InFlight = IN_FLIGHT,
    stop: threading.Event | None = None,
) -> CopyResult:
    """Copy ``length`` bytes (default: the whole source) from ``source`` to ``target``;
    with ``ranges`` (offset, length), only those (the rest of the target is left as it
    is), and progress counts the bytes of the ranges. ``in_flight`` says how many chunks
    are read and written at once; ``stop``, once set, ends the copy within a chunk.

    Raises ValueError when the target is smaller than what is copied, OSError on I/O
    errors, CopyStopped when stopped. The target is flushed (fsync) before returning.
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
            if ranges is None:
                ranges = [(0, total)]
                os.posix_fadvise(src, 0, total, os.POSIX_FADV_SEQUENTIAL)
            pipeline = _Pipeline(src, dst, target_zeroed, progress, source, in_flight, stop)
            return pipeline.run(ranges)
        finally:
            os.close(dst)
    finally:
        os.close(src)


async def copy_in_thread(
    source: Path,
    target: Path,
    *,
    length: int | None = None,
    target_zeroed: bool,
    progress: Progress | None = None,
    ranges: Sequence[tuple[int, int]] | None = None,
) -> CopyResult:
    """:func:`copy_blocks` in a worker thread. Cancelling the caller stops the copy
    within a chunk, and the cancellation goes on only once the thread has let go of
    both devices, so that whatever cleans up after it (a detach, a delete) never races
    a write still under way."""
    stop = threading.Event()
    work = asyncio.ensure_future(
        asyncio.to_thread(
            copy_blocks,
            source,
            target,
            length=length,
            target_zeroed=target_zeroed,
            progress=progress,
            ranges=ranges,
            stop=stop,
        )
    )
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.wait([work])
        with contextlib.suppress(asyncio.CancelledError):
            work.exception()  # retrieved: CopyStopped, or whatever ended it first
        raise
