"""A sparse-aware stream of a block device's content, for copies between servers.

The source reads the device (or only the ranges a filesystem uses) and sends only its
data; the sink writes that data into a device of at least the same size, so a thin target
allocates what the source holds. The
stream is a byte sequence any transport can carry (a websocket, an HTTP body)::

    header   b"LXFLEXS1"  size:u64  block:u32            (big-endian)
    extent   b"D"  offset:u64  length:u32  <length bytes>   (repeated, rising offsets)
    end      b"E"  sha256(every extent frame, header included):32 bytes

The sink checks the order, the bounds and the digest, so a cut or damaged stream fails
instead of leaving a silently wrong volume. A sink whose target may hold old data
(``target_zeroed`` False) punches out the gaps between extents. Blocking I/O: run the
source and the sink in threads.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

from .copy import (
    BLOCK,
    CHUNK,
    CopyResult,
    Progress,
    chunk_ranges,
    data_runs,
    device_size,
    open_device,
    zero_range,
)

__all__ = ["StreamError", "StreamSink", "stream_out"]

MAGIC = b"LXFLEXS1"
_HEADER = struct.Struct(">8sQI")
_EXTENT = struct.Struct(">cQI")
_DIGEST = 32


class StreamError(ValueError):
    """The stream is not a valid device stream, or was cut short."""


def stream_out(
    source: Path,
    progress: Progress | None = None,
    ranges: Sequence[tuple[int, int]] | None = None,
) -> Iterator[bytes]:
    """The stream of ``source``'s content, as frames of at most a chunk of data each;
    with ``ranges`` (offset, length), of those only (the sink's other blocks are left
    zero), and progress counts their bytes."""
    probe = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = device_size(probe)
    finally:
        os.close(probe)
    fd = open_device(source, os.O_RDONLY, direct=size % BLOCK == 0)  # O_DIRECT: aligned only
    if ranges is None:
        ranges = [(0, size)]
    total = sum(length for _, length in ranges)
    try:
        digest = hashlib.sha256()
        header = _HEADER.pack(MAGIC, size, BLOCK)
        digest.update(header)
        yield header
        view = memoryview(mmap.mmap(-1, CHUNK))
        done = 0
        for offset, length in chunk_ranges(ranges):
            n = os.preadv(fd, [view[:length]], offset)
            if n < length:
                raise OSError(errno.EIO, f"short read from {source} at {offset + max(n, 0)}")
            data = bytes(view[:n])
            for start, end in data_runs(data):
                frame = _EXTENT.pack(b"D", offset + start, end - start) + data[start:end]
                digest.update(frame)
                yield frame
            done += n
            if progress is not None:
                progress(done, total)
        yield b"E" + digest.digest()
    finally:
        os.close(fd)


class StreamSink:
    """Write a stream, fed in pieces of any size, into ``target``."""

    def __init__(
        self, target: Path, *, target_zeroed: bool, progress: Progress | None = None
    ) -> None:
        self._fd = open_device(target, os.O_WRONLY, direct=False)
        self._target = target
        self._zeroed = target_zeroed
        self._progress = progress
        self._buf = bytearray()
        self._digest = hashlib.sha256()
        self._size: int | None = None
        self._next = 0  # the end of the last extent written
        self._done = False
        self.written = 0
        self.cleared = 0

    def feed(self, data: bytes) -> None:
        if self._done:
            raise StreamError("data after the end of the stream")
        self._buf += data
        while self._step():
            pass

    def _step(self) -> bool:
        """Consume one whole frame from the buffer; False when it holds none."""
        if self._size is None:
            if len(self._buf) < _HEADER.size:
                return False
            magic, size, block = _HEADER.unpack_from(self._buf)
            if magic != MAGIC or block != BLOCK:
                raise StreamError("not a device stream (bad header)")
            if device_size(self._fd) < size:
                raise StreamError(f"the target {self._target} is smaller than the stream ({size})")
            self._size = size
            self._take(_HEADER.size)
            return True
        if not self._buf:
            return False
        kind = bytes(self._buf[:1])
        if kind == b"E":
            if len(self._buf) < 1 + _DIGEST:
                return False
            if bytes(self._buf[1 : 1 + _DIGEST]) != self._digest.digest():
                raise StreamError("the stream is damaged (digest mismatch)")
            del self._buf[: 1 + _DIGEST]
            if self._buf:
                raise StreamError("data after the end of the stream")
            self._done = True
            return False
        if kind != b"D":
            raise StreamError(f"unknown frame {kind!r}")
        if len(self._buf) < _EXTENT.size:
            return False
        _, offset, length = _EXTENT.unpack_from(self._buf)
        if len(self._buf) < _EXTENT.size + length:
            return False
        if offset < self._next or offset + length > self._size:
            raise StreamError(f"extent at {offset} (+{length}) is out of order or bounds")
        frame = self._take(_EXTENT.size + length)
        self._clear_to(offset)
        view, at = memoryview(frame)[_EXTENT.size :], offset
        while view:
            n = os.pwrite(self._fd, view, at)
            view, at = view[n:], at + n
        self.written += length
        self._next = offset + length
        if self._progress is not None:
            self._progress(self._next, self._size)
        return True

    def _take(self, n: int) -> bytes:
        frame = bytes(self._buf[:n])
        del self._buf[:n]
        self._digest.update(frame)
        return frame

    def _clear_to(self, offset: int) -> None:
        if not self._zeroed and offset > self._next:
            zero_range(self._fd, self._next, offset - self._next)
            self.cleared += offset - self._next

    def finish(self) -> CopyResult:
        """Check the stream ended well; clear the tail; flush. Closes the target."""
        try:
            if not self._done or self._size is None:
                raise StreamError("the stream was cut short")
            self._clear_to(self._size)
            os.fsync(self._fd)
            return CopyResult(self._size, self.written, self.cleared)
        finally:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
