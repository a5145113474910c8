"""Concurrent volume creates with injected gateway latency: wall time against serial.

The simulator delays every volume create by 20 ms (a fault with latency only). The
baseline is the mean time of single creates measured in the same run; the result is the
wall time of 64 creates issued at once (median of several rounds; the first round also
opens the connections and is printed too), and the speedup over 64 serial creates.
Goal: a speedup of at least 20x.

    python -m bench.concurrency [--count 64] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.common import simulator
from lxflex.powerflex import PowerFlexClient
from lxflex.secret import Secret

GIB = 1024**3


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with simulator(api_version="4.5") as sim:
        sim.call(
            "POST",
            "/_sim/faults",
            {"route": "POST /api/types/Volume/instances", "latency_ms": args.latency_ms},
        )
        async with PowerFlexClient(sim.url, "admin", Secret(sim.password)) as pf:
            pd = await pf.protection_domain_by_name("pd1")
            pool = (await pf.storage_pool_by_name("sp1", pd.id)).id
            singles = []
            for _ in range(8):
                started = time.perf_counter()
                await pf.create_volume(pool, GIB)
                singles.append(time.perf_counter() - started)
            single = statistics.mean(singles)
            walls = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                ids = await asyncio.gather(
                    *(pf.create_volume(pool, GIB) for _ in range(args.count))
                )
                walls.append(time.perf_counter() - started)
                assert len(set(ids)) == args.count
    wall = statistics.median(walls)
    serial = single * args.count
    speedup = serial / wall
    print(f"{args.count} concurrent volume creates, {args.latency_ms:g} ms injected latency each")
    print(f"single create (baseline, mean of 8): {single * 1000:8.1f} ms")
    print(f"{args.count} x single (serial estimate):   {serial * 1000:8.1f} ms")
    print(
        f"{args.count} concurrent (wall, median of {args.rounds} rounds): {wall * 1000:8.1f} ms"
        f"  (first round, opening connections: {walls[0] * 1000:.1f} ms)"
    )
    print(f"speedup: {speedup:.1f}x (goal >= 20x: {'met' if speedup >= 20 else 'MISSED'})")


if __name__ == "__main__":
    asyncio.run(main())
