"""A cluster of lxflexd members against one gateway and one PostgreSQL, in the same run:

* creates: ``--creates`` block-volume creates sent at once (20 ms of gateway latency
  each), all through one member, then spread over every member; the ratio of the two
  walls (more than 1: the members add throughput);
* forwarding: the median latency of ``GET /1.0/storage-pools/pf`` served by the member
  the client talks to, against the same request forwarded to another (``?target=``);
  the difference is the cost of forwarding (a mutual-TLS hop);
* failure: a member killed (SIGKILL) with creates under way through it, until another
  shows it Offline, against the offline threshold; then its removal through another
  member, which fences it and repairs the volumes it left under way.

The PostgreSQL cluster is a throwaway one on a unix socket (no TCP); the gateway is
``lxflex-sim`` in its own process. Needs root (PostgreSQL runs as ``postgres``) and the
PostgreSQL server binaries.

    python -m bench.cluster [--members 3] [--creates 60] [--latency-ms 20] [--in-flight 10]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.api_concurrency import Connection
from bench.common import simulator
from bench.daemon import Daemon, daemon


@contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL database; its URL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise SystemExit("PostgreSQL server binaries are not installed")
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="lxflex-bench-pg-"))
    user = "postgres" if os.geteuid() == 0 else None
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)

    def run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, user=user, cwd=root)

    data = root / "data"
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "lxflex", "--no-sync")
        options = f"-k {root} -c listen_addresses='' -c fsync=off"
        run(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "-o",
            options,
            "start",
        )
        run(str(bindir / "createdb"), "-h", str(root), "-U", "lxflex", "bench")
        yield f"postgresql://lxflex@/bench?host={root}"
    finally:
        if data.exists():
            subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                check=False,
                capture_output=True,
                user=user,
                cwd=root,
            )
        shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _burst(conns: list[Connection], prefix: str) -> float:
    started = time.perf_counter()

    answers = await asyncio.gather(*(_create(c, f"{prefix}{i}") for i, c in enumerate(conns)))
    assert all(status == 200 for status, _ in answers), answers
    return time.perf_counter() - started


async def _latency(conn: Connection, path: str, count: int) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        status, answer = await conn.request("GET", path)
        assert status == 200, answer
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def _measure(
    members: list[Daemon], sim_url: str, password: str, args: argparse.Namespace
) -> None:
    first = await Connection.open(members[0].socket)
    pool = {
        "name": "pf",
        "driver": "powerflex",
        "config": {
            "powerflex.gateway": sim_url,
            "powerflex.user.password": password,
            "powerflex.pool": "sp1",
            "powerflex.domain": "pd1",
        },
    }
    status, answer = await first.request("POST", "/1.0/storage-pools", pool)
    assert status == 201, answer
    one = [await Connection.open(members[0].socket) for _ in range(args.creates)]
    spread = [
        await Connection.open(m.socket)
        for _ in range(args.creates // len(members))
        for m in members
    ]
    try:
        await _burst(one[:5], "warm-one")
        await _burst(spread[: len(members)], "warm-all")
        walls_one, walls_all = [], []
        for round_ in range(args.rounds):
            walls_one.append(await _burst(one, f"r{round_}one"))
            walls_all.append(await _burst(spread, f"r{round_}all"))
        local = await _latency(first, "/1.0/storage-pools/pf", args.requests)
        forwarded = await _latency(first, "/1.0/storage-pools/pf?target=m2", args.requests)
    finally:
        for conn in (first, *one, *spread):
            conn.close()
    wall_one, wall_all = statistics.median(walls_one), statistics.median(walls_all)
    n = len(members)
    print(
        f"creates: {len(one)} at once, {args.latency_ms:g} ms gateway latency each, median of "
        f"{args.rounds} rounds"
    )
    print(
        f"  through 1 member:   {wall_one * 1000:8.1f} ms  ({len(one) / wall_one:6.1f} creates/s)"
    )
    rate_one, rate_all = len(one) / wall_one, len(spread) / wall_all
    print(f"  spread over {n}:      {wall_all * 1000:8.1f} ms  ({rate_all:6.1f} creates/s)")
    print(f"  throughput ratio {n} members / 1: {rate_all / rate_one:.2f}")
    print(f"forwarding: GET /1.0/storage-pools/pf, median of {args.requests}")
    print(f"  served locally:     {local * 1000:8.2f} ms")
    print(
        f"  forwarded to m2:    {forwarded * 1000:8.2f} ms  (+{(forwarded - local) * 1000:.2f} ms)"
    )


async def _failure(
    members: list[Daemon], threshold: float, in_flight: int
) -> tuple[float, float, int]:
    """Seconds from killing the last member, with ``in_flight`` creates under way
    through it, until the first shows it Offline; then of its removal through the first
    (fencing it in the pool, finishing its journal, repairing the volumes its work left
    under way); and how many volumes that repaired."""
    victim = members[-1]
    name = f"m{len(members)}"
    conn = await Connection.open(members[0].socket)
    cut = [await Connection.open(victim.socket) for _ in range(in_flight)]
    try:
        creates = [asyncio.create_task(_create(c, f"cut{i}")) for i, c in enumerate(cut)]
        await asyncio.sleep(0.2)  # each is at the gateway, held there
        victim.proc.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        await asyncio.gather(*creates, return_exceptions=True)
        while True:
            status, answer = await conn.request("GET", f"/1.0/cluster/members/{name}")
            assert status == 200, answer
            if json.loads(answer)["metadata"]["status"] == "Offline":
                noticed = time.perf_counter() - killed
                break
            if time.perf_counter() - killed > threshold * 3:
                raise RuntimeError(f"{name} never showed Offline")
            await asyncio.sleep(0.2)
        started = time.perf_counter()
        status, answer = await conn.request("DELETE", f"/1.0/cluster/members/{name}")
        assert status == 200, answer
        removed = time.perf_counter() - started
    finally:
        for c in (conn, *cut):
            c.close()
    said = re.search(
        rf"member {name} fenced: .* (\d+) volume\(s\) with work cut short",
        (members[0].state / "bench-daemon.log").read_text(),
    )
    return noticed, removed, int(said[1]) if said else 0


async def _create(conn: Connection, name: str) -> tuple[int, bytes]:
    body = {"name": name, "type": "custom", "content_type": "block", "config": {}}
    return await conn.request("POST", "/1.0/storage-pools/pf/volumes/custom", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--creates", type=int, default=60)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--offline-threshold", type=float, default=20.0)
    parser.add_argument("--in-flight", type=int, default=10)
    args = parser.parse_args()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lxflex-bench-")))
        db_url = stack.enter_context(postgres())
        sim = stack.enter_context(simulator())
        sim.call(
            "POST",
            "/_sim/faults",
            {"route": "POST /api/types/Volume/instances", "latency_ms": args.latency_ms},
        )
        root = tmp / "host"  # a host with the NVMe/TCP modules, for mode discovery
        for module in ("nvme_tcp", "nvme_fabrics"):
            (root / "sys" / "module" / module).mkdir(parents=True)
        members = []
        for i in range(1, args.members + 1):
            argv = (
                "--db",
                db_url,
                "--cluster-name",
                f"m{i}",
                "--cluster-address",
                f"127.0.0.1:{_free_port()}",
                "--offline-threshold",
                str(args.offline_threshold),
                "--host-root",
                str(root),
            )
            members.append(stack.enter_context(daemon(tmp / f"m{i}", *argv)))
        asyncio.run(_measure(members, sim.url, sim.password, args))
        sim.call(
            "POST",
            "/_sim/faults",
            {"route": "POST /api/types/Volume/instances", "latency_ms": 2000},
        )
        noticed, removed, repaired = asyncio.run(
            _failure(members, args.offline_threshold, args.in_flight)
        )
        print(
            f"failure: m{args.members} killed with {args.in_flight} creates under way, Offline "
            f"on m1 after {noticed:.1f} s (threshold {args.offline_threshold:g} s: "
            f"{noticed / args.offline_threshold:.2f}x); fenced, {repaired} volume(s) repaired "
            f"and removed through m1 in {removed * 1000:.0f} ms"
        )
        members[-1].proc.wait()


if __name__ == "__main__":
    main()
