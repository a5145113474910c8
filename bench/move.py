"""A volume in use moved between cluster members by remapping: time and gateway requests.

Two members, each on its own emulated host of one simulator (with its fabric: volumes
appear as devices, so they mount), one throwaway PostgreSQL. A filesystem volume
attached on one member is attached through the other: the first is asked to give it up
(unmounted, unmapped there), the second maps and mounts it; no data is copied. Each
round moves it one way and back; printed: the median time and gateway requests of a
move, against the same two steps sent by the client itself (detach on one member, then
attach on the other), and the volume's size against the bytes a copy would move.

    python -m bench.move [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

from bench.cluster import _free_port, postgres
from bench.daemon import Daemon, daemon
from lxflex.host.lxd import LxdClient

VOLS = "/1.0/storage-pools/pf/volumes/custom"


def _call(url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = Request(url, data=data, headers={"Content-Type": "application/json"})
    with urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


@contextmanager
def simulator(state: Path) -> Iterator[tuple[str, str]]:
    """``lxflex-sim`` with its host fabric: its URL and admin password."""
    password = secrets.token_urlsafe(16)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "lxflex-sim"), "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "LXFLEX_SIM_ADMIN_PASSWORD": password},
    )
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())["url"], password
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def _member(stack: ExitStack, tmp: Path, sim: str, db: str, name: str) -> Daemon:
    host = _call(f"{sim}/_sim/fabric/hosts", {"name": name})
    argv = (
        "--db",
        db,
        "--cluster-name",
        name,
        "--cluster-address",
        f"127.0.0.1:{_free_port()}",
        "--nvme",
        str(Path(host["bin"]) / "nvme"),
        "--by-id-dir",
        host["by_id"],
        "--sysfs",
        host["sys_root"],
        "--host-root",
        str(Path(host["bin"]).parent),
    )
    return stack.enter_context(daemon(tmp / name, *argv))


def _requests(sim: str) -> int:
    return int(_call(f"{sim}/_sim/stats")["total"])


async def measure(members: list[Daemon], sim: str, password: str, rounds: int) -> None:
    m1 = LxdClient(Path(members[0].socket))
    try:
        config = {
            "powerflex.gateway": sim,
            "powerflex.user.password": password,
            "powerflex.pool": "sp1",
            "powerflex.domain": "pd1",
        }
        await m1.request(
            "POST", "/1.0/storage-pools", {"name": "pf", "driver": "powerflex", "config": config}
        )
        await m1.request("POST", VOLS, {"name": "data", "config": {"size": "64GiB"}})
        await m1.request("POST", f"{VOLS}/data/attachments?target=m1", {})
        moves, steps = [], []
        for _ in range(rounds):
            for there in ("m2", "m1"):
                before, started = _requests(sim), time.perf_counter()
                await m1.request("POST", f"{VOLS}/data/attachments?target={there}", {})
                moves.append((time.perf_counter() - started, _requests(sim) - before))
            for here, there in (("m1", "m2"), ("m2", "m1")):
                before, started = _requests(sim), time.perf_counter()
                await m1.request("DELETE", f"{VOLS}/data/attachments/host?target={here}")
                await m1.request("POST", f"{VOLS}/data/attachments?target={there}", {})
                steps.append((time.perf_counter() - started, _requests(sim) - before))
        await m1.request("DELETE", f"{VOLS}/data/attachments/host?target=m1")
    finally:
        await m1.close()
    move_s = statistics.median(t for t, _ in moves)
    step_s = statistics.median(t for t, _ in steps)
    print(
        f"moving an attached 64 GiB filesystem volume between two members, median of {len(moves)}"
    )
    print(
        f"  a move (attach where it is used elsewhere): {move_s * 1000:7.1f} ms, "
        f"{statistics.median(n for _, n in moves):.0f} gateway requests"
    )
    print(
        f"  detach, then attach, by the client:         {step_s * 1000:7.1f} ms, "
        f"{statistics.median(n for _, n in steps):.0f} gateway requests  (baseline)"
    )
    print(f"  ratio move / by hand: {move_s / step_s:.2f}; data copied: 0 bytes of 64 GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lxflex-bench-")))
        db = stack.enter_context(postgres())
        sim, password = stack.enter_context(simulator(tmp / "sim"))
        members = [_member(stack, tmp, sim, db, name) for name in ("m1", "m2")]
        asyncio.run(measure(members, sim, password, args.rounds))


if __name__ == "__main__":
    main()
