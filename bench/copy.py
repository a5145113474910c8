"""Volume copy: lxflex's sparse-aware copy against ``dd bs=4M``, in the same run.

An 8 GiB thin volume receives 1 GiB of random data in 1 MiB extents scattered over the
whole device. Each copier then fills a fresh 8 GiB volume from it, both through the
emulated NVMe/TCP devices: time, and bytes the target allocates on the array. Goals: time
at most 1.0x dd's, target allocation at most 1.1x the data. Needs root (loop devices).

    python -m bench.copy [--data-mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import time

from bench.stack import stack
from lxflex.host.copy import copy_blocks

GIB = 1024**3
MIB = 1024**2


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-mib", type=int, default=1024)
    args = parser.parse_args()
    async with stack() as (sim, s):
        for name in ("source", "by-lxflex", "by-dd"):
            await s.volumes.create("pf", name, content_type="block", config={"size": "8GiB"})
        ids = {}
        for name in ("source", "by-lxflex", "by-dd"):
            ids[name] = (await s.volumes.record("pf", name)).array_id
        driver = (await s.pools.runtime(await s.pools.record("pf"))).volumes
        rng = random.Random(42)
        slots = rng.sample(range(8 * GIB // MIB), args.data_mib)
        async with driver.attached(ids["source"]) as src:
            fd = os.open(src, os.O_WRONLY)
            try:
                for slot in slots:
                    os.pwrite(fd, rng.randbytes(MIB), slot * MIB)
                os.fsync(fd)
            finally:
                os.close(fd)
            async with driver.attached(ids["by-lxflex"]) as dst:
                started = time.perf_counter()
                result = await asyncio.to_thread(copy_blocks, src, dst, target_zeroed=True)
                ours = time.perf_counter() - started
                same_ours = subprocess.run(["cmp", str(src), str(dst)], check=False).returncode == 0
            async with driver.attached(ids["by-dd"]) as dst:
                started = time.perf_counter()
                subprocess.run(
                    ["dd", f"if={src}", f"of={dst}", "bs=4M", "conv=fsync", "status=none"],
                    check=True,
                )
                theirs = time.perf_counter() - started
                same_dd = subprocess.run(["cmp", str(src), str(dst)], check=False).returncode == 0
        alloc = {n: sim.data.allocated(i) for n, i in ids.items() if i}
        data = args.data_mib * MIB
        print(f"source: 8 GiB thin volume, {args.data_mib} MiB random data in 1 MiB extents")
        print(f"{'copier':<10}{'seconds':>9}{'target allocated':>20}{'x data':>8}")
        print(
            f"{'lxflex':<10}{ours:>9.2f}{alloc['by-lxflex'] / MIB:>16.0f} MiB"
            f"{alloc['by-lxflex'] / data:>8.2f}"
        )
        print(
            f"{'dd bs=4M':<10}{theirs:>9.2f}{alloc['by-dd'] / MIB:>16.0f} MiB"
            f"{alloc['by-dd'] / data:>8.2f}"
        )
        print(
            f"time ratio lxflex/dd: {ours / theirs:.2f} (goal <= 1.0: "
            f"{'met' if ours <= theirs else 'MISSED'}); lxflex wrote {result.written / MIB:.0f} MiB"
        )
        print(
            f"allocation ratio lxflex/data: {alloc['by-lxflex'] / data:.2f} (goal <= 1.1: "
            f"{'met' if alloc['by-lxflex'] <= 1.1 * data else 'MISSED'})"
        )
        print(f"targets identical to the source: lxflex {same_ours}, dd {same_dd}")
        for name in ("source", "by-lxflex", "by-dd"):
            await s.volumes.delete("pf", name)


if __name__ == "__main__":
    asyncio.run(main())
