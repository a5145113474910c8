"""100 concurrent volume creates through lxflexd's API, 20 ms gateway latency each.

The gateway (lxflex-sim, in its own process as a real gateway is on its own machine)
delays every volume create by 20 ms. lxflexd runs against it with a pool on its sp1. The
baseline is the mean time of single block-volume creates through the API in the same
run; the result is the wall time of 100 creates sent at once (median of several rounds;
the first round, which also opens the daemon's connections to the gateway, is printed
too), and the speedup over 100 serial ones. Goal: at least 20x.

    python -m bench.api_concurrency [--count 100] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import cpu_seconds, simulator
from bench.daemon import daemon

URL = "http://lxd/1.0/storage-pools/powerflex/volumes/custom"


async def create(session: aiohttp.ClientSession, name: str) -> None:
    body = {"name": name, "type": "custom", "content_type": "block", "config": {}}
    async with session.post(URL, json=body) as r:
        doc = await r.json()
        assert r.status == 200, doc


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lxflex-bench-") as tmp, simulator() as sim:
        root = Path(tmp) / "host"  # a host with the NVMe/TCP modules, for mode discovery
        for module in ("nvme_tcp", "nvme_fabrics"):
            (root / "sys" / "module" / module).mkdir(parents=True)
        sim.call(
            "POST",
            "/_sim/faults",
            {"route": "POST /api/types/Volume/instances", "latency_ms": args.latency_ms},
        )
        with daemon(Path(tmp) / "state", "--host-root", str(root)) as d:
            connector = aiohttp.UnixConnector(path=d.socket, limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                pool = {
                    "name": "powerflex",
                    "driver": "powerflex",
                    "config": {
                        "powerflex.gateway": sim.url,
                        "powerflex.user.password": sim.password,
                        "powerflex.pool": "sp1",
                        "powerflex.domain": "pd1",
                    },
                }
                async with session.post("http://lxd/1.0/storage-pools", json=pool) as r:
                    assert r.status == 201, await r.text()
                singles = []
                for i in range(10):
                    started = time.perf_counter()
                    await create(session, f"single{i}")
                    singles.append(time.perf_counter() - started)
                single = statistics.mean(singles)
                walls = []
                cpu_daemon = cpu_seconds(d.proc.pid)
                cpu_sim = cpu_seconds(sim.pid)
                cpu_client = cpu_seconds(os.getpid())
                for round_ in range(args.rounds):
                    started = time.perf_counter()
                    await asyncio.gather(
                        *(create(session, f"r{round_}c{i}") for i in range(args.count))
                    )
                    walls.append(time.perf_counter() - started)
                wall = statistics.median(walls)
                creates = args.rounds * args.count
                cpu_daemon = (cpu_seconds(d.proc.pid) - cpu_daemon) / creates
                cpu_sim = (cpu_seconds(sim.pid) - cpu_sim) / creates
                cpu_client = (cpu_seconds(os.getpid()) - cpu_client) / creates
    serial = single * args.count
    print(
        f"{args.count} concurrent volume creates through the API, "
        f"{args.latency_ms:g} ms gateway latency each"
    )
    print(f"single create (baseline, mean of 10): {single * 1000:8.1f} ms")
    print(f"{args.count} x single (serial estimate):   {serial * 1000:8.1f} ms")
    print(
        f"{args.count} concurrent (wall, median of {args.rounds}): {wall * 1000:8.1f} ms"
        f"  (first round: {walls[0] * 1000:.1f} ms)"
    )
    print(
        f"CPU per concurrent create: lxflexd {cpu_daemon * 1000:.1f} ms, "
        f"gateway {cpu_sim * 1000:.1f} ms, this client {cpu_client * 1000:.1f} ms "
        f"({os.cpu_count()} CPUs)"
    )
    print(
        f"speedup: {serial / wall:.1f}x (goal >= 20x: {'met' if serial / wall >= 20 else 'MISSED'})"
    )


if __name__ == "__main__":
    asyncio.run(main())
