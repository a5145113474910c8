"""100 concurrent volume creates through lxflexd's API, 20 ms gateway latency each.

The gateway (lxflex-sim, in its own process as a real gateway is on its own machine)
delays every volume create by 20 ms. lxflexd runs against it with a pool on its sp1. The
baseline is the mean time of single block-volume creates through the API in the same
run; the result is the wall time of 100 creates sent at once (median of several rounds;
the first round, which also opens the daemon's connections to the gateway, is printed
too), and the speedup over 100 serial ones. Goal: at least 20x.

The client, the gateway and lxflexd share this machine's CPUs, so the client is kept
lean: one keep-alive HTTP/1.1 connection per concurrent request, requests written as
bytes, answers read by Content-Length (the same client times the baseline).

    python -m bench.api_concurrency [--count 100] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import cpu_seconds, simulator
from bench.daemon import daemon


class Connection:
    """One keep-alive HTTP/1.1 connection to lxflexd's unix socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, socket: str) -> Connection:
        return cls(*await asyncio.open_unix_connection(socket))

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: lxd\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def create(conn: Connection, name: str) -> None:
    body = {"name": name, "type": "custom", "content_type": "block", "config": {}}
    status, answer = await conn.request("POST", "/1.0/storage-pools/powerflex/volumes/custom", body)
    assert status == 200, answer


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
            conns = [await Connection.open(d.socket) for _ in range(args.count)]
            try:
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
                status, answer = await conns[0].request("POST", "/1.0/storage-pools", pool)
                assert status == 201, answer
                singles = []
                for i in range(10):
                    started = time.perf_counter()
                    await create(conns[0], f"single{i}")
                    singles.append(time.perf_counter() - started)
                single = statistics.mean(singles)
                walls = []
                cpu_daemon = cpu_seconds(d.proc.pid)
                cpu_sim = cpu_seconds(sim.pid)
                cpu_client = cpu_seconds(os.getpid())
                for round_ in range(args.rounds):
                    started = time.perf_counter()
                    await asyncio.gather(
                        *(create(conn, f"r{round_}c{i}") for i, conn in enumerate(conns))
                    )
                    walls.append(time.perf_counter() - started)
                wall = statistics.median(walls)
                creates = args.rounds * args.count
                cpu_daemon = (cpu_seconds(d.proc.pid) - cpu_daemon) / creates
                cpu_sim = (cpu_seconds(sim.pid) - cpu_sim) / creates
                cpu_client = (cpu_seconds(os.getpid()) - cpu_client) / creates
            finally:
                for conn in conns:
                    conn.close()
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
