"""100 concurrent volume creates through lxflexd's API, 20 ms gateway latency each.

The gateway (lxflex-sim, in its own process as a real gateway is on its own machine)
delays every volume create by 20 ms (a create makes one gateway request). lxflexd runs
against it with a pool on its sp1. Each round times a few block-volume creates one after
another (the baseline: 100 serial creates take 100 times their mean) and then 100 sent at
once; the speedup of a round is the ratio of the two, and the result is the median over
the rounds. A warm-up create (building the pool's runtime) and a warm-up burst (opening
the daemon's connections to the gateway) come first and are not counted. Goal: at least
20x.

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


async def concurrent(conns: list[Connection], prefix: str) -> float:
    """Wall time of one create on each connection, all sent at once."""
    started = time.perf_counter()
    await asyncio.gather(*(create(conn, f"{prefix}c{i}") for i, conn in enumerate(conns)))
    return time.perf_counter() - started


async def create(conn: Connection, name: str) -> None:
    body = {"name": name, "type": "custom", "content_type": "block", "config": {}}
    status, answer = await conn.request("POST", "/1.0/storage-pools/powerflex/volumes/custom", body)
    assert status == 200, answer


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--serial", type=int, default=5, help="serial creates per round")
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
                await create(conns[0], "warm-up")  # builds the pool's runtime: not timed
                first = await concurrent(conns, "warm")  # opens the gateway connections
                singles, walls, ratios = [], [], []
                pids = {"lxflexd": d.proc.pid, "gateway": sim.pid, "client": os.getpid()}
                cpu = dict.fromkeys(pids, 0.0)
                for round_ in range(args.rounds):
                    # Each round pairs a serial baseline with a concurrent burst, so a change
                    # in the machine's speed (VMs here vary by half within minutes) moves both.
                    serial = []
                    for i in range(args.serial):
                        started = time.perf_counter()
                        await create(conns[0], f"r{round_}s{i}")
                        serial.append(time.perf_counter() - started)
                    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                    wall = await concurrent(conns, f"r{round_}")
                    for name, pid in pids.items():
                        cpu[name] += cpu_seconds(pid) - before[name]
                    single = statistics.mean(serial)
                    singles.append(single)
                    walls.append(wall)
                    ratios.append(single * args.count / wall)
            finally:
                for conn in conns:
                    conn.close()
    creates = args.rounds * args.count
    single, wall, ratio = (statistics.median(x) for x in (singles, walls, ratios))
    print(
        f"{args.count} concurrent volume creates through the API, "
        f"{args.latency_ms:g} ms gateway latency each; {args.rounds} rounds, each "
        f"{args.serial} serial creates (the baseline) then {args.count} at once"
    )
    print(f"single create (baseline, median of the rounds' means): {single * 1000:8.1f} ms")
    print(f"{args.count} x single (serial estimate):   {single * args.count * 1000:8.1f} ms")
    print(
        f"{args.count} concurrent (wall, median):       {wall * 1000:8.1f} ms"
        f"  (warm-up round, opening the gateway connections: {first * 1000:.1f} ms)"
    )
    print(
        "CPU per concurrent create: "
        + ", ".join(f"{name} {total / creates * 1000:.2f} ms" for name, total in cpu.items())
        + f" ({os.cpu_count()} CPUs)"
    )
    print("speedup per round: " + " ".join(f"{r:.1f}x" for r in ratios))
    print(f"speedup: {ratio:.1f}x, median (goal >= 20x: {'met' if ratio >= 20 else 'MISSED'})")


if __name__ == "__main__":
    asyncio.run(main())
