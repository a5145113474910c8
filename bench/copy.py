"""Volume copy: lxflex's sparse-aware copy against LXD's ``dd``, in the same run.

An 8 GiB thin volume receives 1 GiB of random data in 1 MiB extents scattered over the
whole device. Each copier then fills a fresh 8 GiB volume from it, both through the
emulated NVMe/TCP devices, from cold caches; the median of ``--runs`` runs, each onto
fresh targets:

* lxflex: ``copy_blocks`` as the driver runs it (several reads and writes in flight);
* lxflex 1+1: the same with one read and one write in flight, which shows what the
  read-ahead is worth;
* dd: ``dd bs=16M iflag=direct oflag=direct``, how LXD copies a block volume.

Printed: time, and bytes each target allocates on the array. Goals: lxflex's time at
most 1.0x dd's and at most 1.0x one at a time's, its target allocation at most 1.1x the
data. Needs root (loop devices).

    python -m bench.copy [--data-mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bench.stack import stack
from lxflex.host.copy import IN_FLIGHT, InFlight, copy_blocks
from lxflex.service import Storage
from lxflex.sim import Simulator

GIB = 1024**3
MIB = 1024**2

Copier = Callable[[Path, Path], None]


def _drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def _ours(in_flight: InFlight) -> Copier:
    def run(src: Path, dst: Path) -> None:
        copy_blocks(src, dst, target_zeroed=True, in_flight=in_flight)

    return run


def _dd(src: Path, dst: Path) -> None:
    argv = ["dd", f"if={src}", f"of={dst}", "bs=16M", "iflag=direct", "oflag=direct"]
    subprocess.run([*argv, "status=none"], check=True)


COPIERS: dict[str, Copier] = {
    "lxflex": _ours(IN_FLIGHT),
    "lxflex 1+1": _ours(InFlight(reads=1, writes=1)),
    "dd": _dd,
}


async def _one(sim: Simulator, s: Storage, src: Path, copier: Copier) -> tuple[float, int, bool]:
    """Seconds, bytes the target allocates, and whether it equals the source."""
    await s.volumes.create("pf", "target", content_type="block", config={"size": "8GiB"})
    driver = (await s.pools.runtime(await s.pools.record("pf"))).volumes
    array_id = (await s.volumes.record("pf", "target")).array_id or ""
    async with driver.attached(array_id) as dst:
        _drop_caches()
        started = time.perf_counter()
        await asyncio.to_thread(copier, src, dst)
        seconds = time.perf_counter() - started
        same = subprocess.run(["cmp", str(src), str(dst)], check=False).returncode == 0
    allocated = sim.data.allocated(array_id)
    await s.volumes.delete("pf", "target")
    return seconds, allocated, same


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COPIERS}
    allocated: dict[str, int] = {}
    identical: dict[str, bool] = dict.fromkeys(COPIERS, True)
    async with stack() as (sim, s):
        await s.volumes.create("pf", "source", content_type="block", config={"size": "8GiB"})
        source_id = (await s.volumes.record("pf", "source")).array_id or ""
        driver = (await s.pools.runtime(await s.pools.record("pf"))).volumes
        rng = random.Random(42)
        async with driver.attached(source_id) as src:
            fd = os.open(src, os.O_WRONLY)
            try:
                for slot in rng.sample(range(8 * GIB // MIB), args.data_mib):
                    os.pwrite(fd, rng.randbytes(MIB), slot * MIB)
                os.fsync(fd)
            finally:
                os.close(fd)
            for _ in range(args.runs):
                for name, copier in COPIERS.items():
                    seconds, allocated[name], same = await _one(sim, s, src, copier)
                    times[name].append(seconds)
                    identical[name] = identical[name] and same
        await s.volumes.delete("pf", "source")
    data = args.data_mib * MIB
    median = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"source: 8 GiB thin volume, {args.data_mib} MiB random data in 1 MiB extents; "
        f"median of {args.runs} runs, cold caches; lxflex in flight: "
        f"{IN_FLIGHT.reads} reads, {IN_FLIGHT.writes} writes"
    )
    print(f"{'copier':<12}{'seconds':>9}{'target allocated':>20}{'x data':>8}  identical")
    for name in COPIERS:
        print(
            f"{name:<12}{median[name]:>9.2f}{allocated[name] / MIB:>16.0f} MiB"
            f"{allocated[name] / data:>8.2f}  {identical[name]}"
        )
    ours = median["lxflex"]
    for baseline in ("dd", "lxflex 1+1"):
        ratio = ours / median[baseline]
        print(f"time ratio lxflex/{baseline}: {ratio:.2f} (goal <= 1.0: {_met(ratio <= 1.0)})")
    ratio = allocated["lxflex"] / data
    print(f"allocation ratio lxflex/data: {ratio:.2f} (goal <= 1.1: {_met(ratio <= 1.1)})")


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    asyncio.run(main())
