"""Listing 10,000 volumes through lxflexd, and the daemon's memory.

The state holds 10,000 custom volumes (rows written straight into the daemon's SQLite
database, with their configs, and 1,000 snapshots). Measured: the time of
``GET /1.0/storage-pools/powerflex/volumes?recursion=1`` (median of 5) against a
``GET /1.0`` round trip in the same run, the gateway requests the list made (goal 0: the
list is served from the state), and the daemon's RSS idle and after the lists. Goals:
under 300 ms, 0 gateway requests, idle RSS at most 80 MB. Needs root.

    python -m bench.api_list [--volumes 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from bench.common import cpu_seconds
from bench.daemon import daemon
from lxflex.state import Database, Status
from lxflex.state import store as st


async def populate(state: Path, count: int) -> None:
    db = await Database.open(f"sqlite:///{state}/lxflex/lxflex.db")
    try:
        async with db.write() as conn:
            pool = await st.get_pool(conn, "powerflex")
            assert pool is not None
            for i in range(count):
                vol = await st.create_volume(
                    conn,
                    pool.id,
                    "default",
                    f"vol{i:05d}",
                    "custom",
                    "block",
                    {
                        "size": "8GiB",
                        "block.type": "thin",
                        "volatile.uuid": str(uuid.uuid4()),
                        "user.index": str(i),
                    },
                    status=Status.CREATED,
                )
                await st.update_volume(conn, vol.id, array_id=f"{i:016x}")
                if i % 10 == 0:
                    await st.create_snapshot(
                        conn, vol.id, "snap0", {"size": "8GiB"}, status=Status.CREATED
                    )
    finally:
        await db.close()


ROUNDS = 5


async def timed_get(
    session: aiohttp.ClientSession, path: str, rounds: int = ROUNDS
) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        async with session.get(f"http://lxd{path}") as r:
            body = await r.read()
            assert r.status == 200, body[:200]
        times.append(time.perf_counter() - started)
        size = len(body)
    return statistics.median(times), size


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=10000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lxflex-bench-") as tmp:
        state = Path(tmp)
        with daemon(state):
            pass  # first start: creates the pool on the simulator
        await populate(state, args.volumes)
        with daemon(state) as d:
            await asyncio.sleep(1)
            idle = d.rss_mib()
            conn = aiohttp.UnixConnector(path=d.socket)
            async with aiohttp.ClientSession(connector=conn) as session:
                base, _ = await timed_get(session, "/1.0")
                before = d.gateway_requests()
                cpu = cpu_seconds(d.proc.pid)
                listed, size = await timed_get(
                    session, "/1.0/storage-pools/powerflex/volumes?recursion=1"
                )
                cpu = (
                    cpu_seconds(d.proc.pid) - cpu
                ) / ROUNDS  # per list: the machine's noise aside
                calls = d.gateway_requests() - before
            after = d.rss_mib()
    print(f"{args.volumes} volumes (+{args.volumes // 10} snapshots) in the state")
    print(f"GET /1.0 round trip (baseline): {base * 1000:8.1f} ms")
    print(
        f"GET .../volumes?recursion=1:    {listed * 1000:8.1f} ms  ({size / 1e6:.1f} MB, "
        f"{listed / base:.0f}x the baseline; goal < 300 ms: {'met' if listed < 0.3 else 'MISSED'})"
    )
    print(f"lxflexd CPU per list:            {cpu * 1000:8.1f} ms")
    print(
        f"gateway requests made by the lists: {calls} (goal 0: {'met' if calls == 0 else 'MISSED'})"
    )
    verdict = "met" if idle * 2**20 <= 80e6 else "MISSED"
    print(
        f"daemon RSS idle {idle:.1f} MiB (goal <= 80 MB: {verdict}),"
        f" after the lists {after:.1f} MiB"
    )


if __name__ == "__main__":
    asyncio.run(main())
