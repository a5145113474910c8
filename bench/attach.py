"""Attach latency: how soon after the by-id link appears is the device reported ready.

A first volume stays attached, so the host keeps its NVMe/TCP connection, as a host with
running instances does; then, each round, a second volume is attached (map, wait for the
device) and detached. The baseline is the moment the kernel (here, the fabric emulation,
which like udev creates links after the gateway has answered) created the link: its
symlink's modification time. Goal: ready within 50 ms of the link. The first attach,
which also connects (through the simulator's nvme shim, a Python process), is printed
apart.
Also printed: the whole attach time, and the gateway requests of a block and a
filesystem volume's create + delete (the state caches array IDs, so no lookups by name).
Needs root (loop devices).

    python -m bench.attach [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.stack import stack


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    async with stack() as (sim, s):
        await s.volumes.create("pf", "anchor", content_type="block")
        await s.volumes.create("pf", "att", content_type="block")
        anchor = (await s.volumes.record("pf", "anchor")).array_id
        vol_id = (await s.volumes.record("pf", "att")).array_id
        assert vol_id is not None
        assert anchor is not None
        driver = (await s.pools.runtime(await s.pools.record("pf"))).volumes
        started = time.time()
        await driver.attacher.attach(anchor)
        first = time.time() - started
        lags, totals = [], []
        for _ in range(args.rounds):
            started = time.time()
            device = await driver.attacher.attach(vol_id)
            ready = time.time()
            link_made = device.lstat().st_mtime
            lags.append(ready - link_made)
            totals.append(ready - started)
            await driver.attacher.detach(vol_id)
        await driver.attacher.detach(anchor)
        await s.volumes.delete("pf", "att")
        await s.volumes.delete("pf", "anchor")

        counts = {}
        for content in ("block", "filesystem"):
            sim.counters.clear()
            await s.volumes.create("pf", f"cycle-{content}", content_type=content)
            created = sum(sim.counters.values())
            await s.volumes.delete("pf", f"cycle-{content}")
            counts[content] = (created, sum(sim.counters.values()) - created)
    ms = [x * 1000 for x in lags]
    print(f"{args.rounds} attach rounds over the emulated NVMe/TCP fabric")
    print(
        f"device ready after its link appeared: median {statistics.median(ms):.1f} ms, "
        f"max {max(ms):.1f} ms (goal <= 50 ms: {'met' if max(ms) <= 50 else 'MISSED'})"
    )
    print(
        f"whole attach (map, wait): median {statistics.median(totals) * 1000:.1f} ms; "
        f"first attach, connecting too: {first * 1000:.1f} ms"
    )
    print("gateway requests per create + delete cycle (simulator counters):")
    for content, (create, delete) in counts.items():
        print(f"  {content:<11} create {create:>3}, delete {delete:>3}, total {create + delete:>3}")


if __name__ == "__main__":
    asyncio.run(main())
