"""Filesystem volume copy: lxflex against ``rsync -a`` of the same files, in the same run.

A 128 GiB filesystem volume (ext4, then XFS) receives 256 MiB of random data in a few
hundred files and is unmounted (clean). These are timed, each from cold caches:

* lxflex: ``copy`` of the volume through the service (attach, copy, new UUID, detach);
* rsync: ``rsync -a`` of its files into an empty directory on a second, fresh volume,
  both mounted (how LXD copies filesystem volumes); its writes stay in the page cache;
* flushed: the same rsync and then ``sync -f`` of the target, the like-for-like
  baseline: lxflex's copy is on the device when it returns, and LXD's unmount at the
  end of its copy waits for the same writeback;
* read: one read of the files' data (``cat`` of every file), the least any copy must do;
* blocks: the block copy of the whole device (what every filesystem copy was before it
  read the filesystem's map, and what a mounted one still takes), devices attached.

Goal: lxflex at most 1.5x rsync with its writes flushed; the ratio to rsync alone is
printed too. Also printed: what the copy allocates on the array against the source.
Needs root (loop devices).

    python -m bench.fscopy [--size-gib 128] [--data-mib 256] [--files 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import time
from pathlib import Path

from bench.stack import stack
from lxflex.host.copy import copy_blocks
from lxflex.service import Storage
from lxflex.sim import Simulator

MIB = 1024**2


def _drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def _fill(root: Path, data: int, files: int, rng: random.Random) -> None:
    sizes = [rng.randrange(1, 2 * data // files) for _ in range(files)]
    scale = data / sum(sizes)
    for i, size in enumerate(sizes):
        sub = root / f"d{i % 17}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i}").write_bytes(rng.randbytes(max(1, int(size * scale))))
    os.sync()


def _timed(argv: list[str]) -> float:
    _drop_caches()
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - started


async def _rsync(s: Storage, config: dict[str, str], source: Path) -> tuple[float, float]:
    """Seconds of ``rsync -a`` into a fresh volume, and of it with its writes flushed."""
    await s.volumes.create("pf", "rsync-target", config=config)
    target = await s.volumes.mount("pf", "rsync-target")
    _drop_caches()
    started = time.perf_counter()
    subprocess.run(["rsync", "-a", f"{source}/", f"{target}/copy/"], check=True)
    rsync = time.perf_counter() - started
    subprocess.run(["sync", "-f", str(target)], check=True)
    flushed = time.perf_counter() - started
    await s.volumes.unmount("pf", "rsync-target")
    await s.volumes.delete("pf", "rsync-target")
    return rsync, flushed


async def _ours(s: Storage, name: str) -> float:
    _drop_caches()
    started = time.perf_counter()
    await s.volumes.copy("pf", "src", "pf", name)
    return time.perf_counter() - started


async def _one(
    sim: Simulator, s: Storage, fstype: str, args: argparse.Namespace
) -> tuple[float, float]:
    config = {"size": f"{args.size_gib}GiB", "block.filesystem": fstype}
    await s.volumes.create("pf", "src", config=config)
    path = await s.volumes.mount("pf", "src")
    _fill(path, args.data_mib * MIB, args.files, random.Random(42))
    read = _timed(["sh", "-c", f"find {path} -type f -exec cat {{}} + > /dev/null"])
    rsyncs = [await _rsync(s, config, path) for _ in range(args.runs)]
    rsync = statistics.median(r for r, _ in rsyncs)
    flushed = statistics.median(f for _, f in rsyncs)
    await s.volumes.unmount("pf", "src")
    ours = statistics.median([await _ours(s, f"by-lxflex{i}") for i in range(args.runs)])
    blocks = await _block_copy(s, config)
    ids = {n: (await s.volumes.record("pf", n)).array_id for n in ("src", "by-lxflex0")}
    alloc = {n: sim.data.allocated(i) for n, i in ids.items() if i}
    same = _same(await s.volumes.mount("pf", "src"), await s.volumes.mount("pf", "by-lxflex0"))
    for name in ("src", *(f"by-lxflex{i}" for i in range(args.runs))):
        await s.volumes.unmount("pf", name)
        await s.volumes.delete("pf", name)
    print(
        f"{fstype:<6}{ours:>9.2f}{rsync:>9.2f}{flushed:>9.2f}{read:>9.2f}{blocks:>9.2f}"
        f"{ours / rsync:>10.2f}{ours / flushed:>10.2f}{ours / read:>10.2f}"
        f"{blocks / ours:>10.1f}{alloc['by-lxflex0'] / alloc['src']:>10.2f}  {same}"
    )
    return ours / rsync, ours / flushed


async def _block_copy(s: Storage, config: dict[str, str]) -> float:
    """Seconds of the whole-device block copy from src onto a fresh volume."""
    await s.volumes.create("pf", "by-blocks", config=config)
    driver = (await s.pools.runtime(await s.pools.record("pf"))).volumes
    ids = [(await s.volumes.record("pf", n)).array_id or "" for n in ("src", "by-blocks")]
    async with driver.attached(ids[0]) as src, driver.attached(ids[1]) as dst:
        _drop_caches()
        started = time.perf_counter()
        await asyncio.to_thread(copy_blocks, src, dst, target_zeroed=True)
        seconds = time.perf_counter() - started
    await s.volumes.delete("pf", "by-blocks")
    return seconds


def _same(a: Path, b: Path) -> bool:
    return subprocess.run(["diff", "-r", "-q", str(a), str(b)], check=False).returncode == 0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=int, default=128)
    parser.add_argument("--data-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"source: {args.size_gib} GiB volume, {args.data_mib} MiB of random data in "
        f"{args.files} files; seconds from cold caches, lxflex and rsync the median of "
        f"{args.runs} runs"
    )
    print(
        f"{'fs':<6}{'lxflex':>9}{'rsync':>9}{'flushed':>9}{'read':>9}{'blocks':>9}"
        f"{'x rsync':>10}{'x flushed':>10}{'x read':>10}{'blocks/lx':>10}{'alloc/src':>10}"
        "  identical"
    )
    async with stack() as (sim, s):
        ratios = [await _one(sim, s, fstype, args) for fstype in ("ext4", "xfs")]
    worst = max(flushed for _, flushed in ratios)
    print(
        f"worst lxflex/rsync with its writes flushed: {worst:.2f} (goal <= 1.5: "
        f"{_met(worst <= 1.5)}); against rsync's writes left in memory: "
        f"{max(plain for plain, _ in ratios):.2f}"
    )


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    asyncio.run(main())
