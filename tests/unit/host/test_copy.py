import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lxflex.host.copy import BLOCK, CHUNK, copy_blocks, copy_in_thread

MIB = 1024 * 1024


def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def _sparse(path: Path, size: int, writes: dict[int, bytes]) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in writes.items():
            f.seek(offset)
            f.write(data)


def test_copy_keeps_a_zeroed_target_thin(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    writes = {
        0: os.urandom(BLOCK),
        5 * MIB + 3 * BLOCK: os.urandom(3 * BLOCK),
        40 * MIB - BLOCK: os.urandom(BLOCK),
    }
    _sparse(src, 40 * MIB, writes)
    _sparse(dst, 40 * MIB, {})
    seen: list[tuple[int, int]] = []
    result = copy_blocks(src, dst, target_zeroed=True, progress=lambda d, t: seen.append((d, t)))
    assert dst.read_bytes() == src.read_bytes()
    assert result.written == 5 * BLOCK
    assert result.total == 40 * MIB
    assert _allocated(dst) <= 5 * BLOCK + 64 * 1024
    assert seen[-1] == (40 * MIB, 40 * MIB)
    assert len(seen) == 40 * MIB // CHUNK


def test_copy_over_old_data_clears_what_the_source_lacks(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _sparse(src, 16 * MIB, {MIB: b"new" * 100})
    _sparse(dst, 16 * MIB, {0: b"\xff" * MIB, 9 * MIB: b"\xee" * (2 * MIB)})
    result = copy_blocks(src, dst, target_zeroed=False)
    assert dst.read_bytes() == src.read_bytes()
    assert result.zeroed > 0
    assert _allocated(dst) <= CHUNK + 64 * 1024  # old data punched out, not overwritten


def test_copy_refuses_a_small_target(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _sparse(src, 8 * MIB, {})
    _sparse(dst, 4 * MIB, {})
    with pytest.raises(ValueError, match="smaller"):
        copy_blocks(src, dst, target_zeroed=True)
    assert copy_blocks(src, dst, length=4 * MIB, target_zeroed=True).total == 4 * MIB


def test_a_copy_of_ranges_writes_only_them_and_counts_their_bytes(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    data = {0: b"a" * BLOCK, 3 * CHUNK: b"b" * BLOCK, 5 * CHUNK + BLOCK: b"c" * BLOCK}
    _sparse(src, 8 * CHUNK, data)
    _sparse(dst, 8 * CHUNK, {})
    seen: list[tuple[int, int]] = []
    ranges = [(0, CHUNK), (5 * CHUNK, 2 * BLOCK)]  # the block at 3 * CHUNK is left out
    result = copy_blocks(
        src, dst, target_zeroed=True, ranges=ranges, progress=lambda d, t: seen.append((d, t))
    )
    assert (result.total, result.written) == (CHUNK + 2 * BLOCK, 2 * BLOCK)
    assert seen[-1] == (CHUNK + 2 * BLOCK, CHUNK + 2 * BLOCK)
    with dst.open("rb") as f:
        f.seek(0)
        assert f.read(BLOCK) == data[0]
        f.seek(3 * CHUNK)
        assert f.read(BLOCK) == bytes(BLOCK)  # not in a range: still zeros
        f.seek(5 * CHUNK + BLOCK)
        assert f.read(BLOCK) == data[5 * CHUNK + BLOCK]
    assert _allocated(dst) == 2 * BLOCK


def test_a_copy_of_ranges_onto_old_data_clears_zeros_in_them_only(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _sparse(src, 4 * CHUNK, {0: b"new" * 100})
    old = {0: b"o" * BLOCK, 2 * BLOCK: b"o" * BLOCK, 3 * CHUNK: b"o" * BLOCK}
    _sparse(dst, 4 * CHUNK, old)
    result = copy_blocks(src, dst, target_zeroed=False, ranges=[(0, 4 * BLOCK)])
    assert result.zeroed == 3 * BLOCK  # the range's zero blocks that held old data
    with dst.open("rb") as f:
        assert f.read(300) == b"new" * 100
        f.seek(2 * BLOCK)
        assert f.read(BLOCK) == bytes(BLOCK)
        f.seek(3 * CHUNK)
        assert f.read(BLOCK) == b"o" * BLOCK  # outside the ranges: left as it was


def _copy_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("lxflex-")]


def test_a_read_that_fails_midway_raises_and_leaves_no_thread(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _sparse(src, 8 * MIB, {0: os.urandom(CHUNK)})
    _sparse(dst, 16 * MIB, {})
    with pytest.raises(OSError, match="short read"):
        copy_blocks(src, dst, length=16 * MIB, target_zeroed=True)
    assert _copy_threads() == []


_WRITE_FAILS = """
import errno, resource, signal, sys, threading
from pathlib import Path
from lxflex.host.copy import copy_blocks
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 20, 8 << 20))
seen = []
try:
    copy_blocks(Path(sys.argv[1]), Path(sys.argv[2]), target_zeroed=True,
                progress=lambda done, total: seen.append(done))
except OSError as exc:
    assert exc.errno == errno.EFBIG, exc
    assert max(seen, default=0) <= 8 << 20, seen  # nothing counted past the failure
    assert not [t for t in threading.enumerate() if t.name.startswith("lxflex-")]
    print("raised")
"""


def test_a_write_that_fails_midway_raises_and_counts_only_what_was_written(
    tmp_path: Path,
) -> None:
    """The target refuses writes past 8 MiB (a file size limit, in a child process)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    _sparse(src, 32 * MIB, {o: os.urandom(BLOCK) for o in range(0, 32 * MIB, MIB)})
    _sparse(dst, 32 * MIB, {})
    done = subprocess.run(
        [sys.executable, "-c", _WRITE_FAILS, str(src), str(dst)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "raised"), done.stderr


def test_progress_only_grows_and_ends_at_the_total(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    writes = {o: os.urandom(BLOCK) for o in range(0, 64 * MIB, 3 * MIB)}
    _sparse(src, 64 * MIB, writes)
    _sparse(dst, 64 * MIB, {0: b"\xff" * (8 * MIB)})
    seen: list[int] = []
    copy_blocks(src, dst, target_zeroed=False, progress=lambda d, _: seen.append(d))
    assert seen == sorted(seen)
    assert seen[-1] == 64 * MIB
    assert dst.read_bytes() == src.read_bytes()


async def test_cancelling_a_copy_stops_it_within_a_chunk_and_waits_for_its_thread(
    tmp_path: Path,
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    size = 2 << 30  # sparse: read as zeros, fast, yet hundreds of chunks
    _sparse(src, size, {0: os.urandom(BLOCK)})
    _sparse(dst, size, {})
    started = asyncio.Event()
    seen: list[int] = []
    loop = asyncio.get_running_loop()

    def progress(done: int, _: int) -> None:
        seen.append(done)
        loop.call_soon_threadsafe(started.set)

    copy = asyncio.create_task(copy_in_thread(src, dst, target_zeroed=True, progress=progress))
    await asyncio.wait_for(started.wait(), 30)
    copy.cancel()
    with pytest.raises(asyncio.CancelledError):
        await copy
    assert _copy_threads() == []  # the thread let go of both files before the cancel went on
    stopped_at = seen[-1]
    await asyncio.sleep(0.1)
    assert seen[-1] == stopped_at < size
