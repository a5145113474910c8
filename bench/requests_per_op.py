"""Gateway requests per client call: the lxflex client against Dell's PyPowerFlex.

Both run the same 50 cycles of volume create + get + delete against one simulator
(PowerFlex 4.5, HTTPS) and the simulator counts every request it serves. Goal: at most
1.1 requests per call for lxflex in steady state (one login per token lifetime).

    python -m bench.requests_per_op [--cycles 50]
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from bench.common import Sim, simulator
from lxflex.powerflex import PowerFlexClient, TlsPolicy
from lxflex.secret import Secret

GIB = 1024**3


def _counts(sim: Sim) -> tuple[int, int]:
    stats = sim.stats()
    return int(stats["total"]), int(stats["logins"])


def _result(
    before: tuple[int, int], warm: tuple[int, int], after: tuple[int, int], cycles: int
) -> dict[str, float]:
    """Requests and logins of the steady state (warm → after) and of start-up."""
    return {
        "requests": after[0] - warm[0],
        "logins": after[1] - warm[1],
        "startup": warm[0] - before[0],
        "calls": 3 * cycles,
    }


async def lxflex_cycles(sim: Sim, cycles: int) -> dict[str, float]:
    """Counts from the client's first request on: start-up plus steady state."""
    before = _counts(sim)
    tls = TlsPolicy(ca_file=sim.ca_file)
    async with PowerFlexClient(sim.url, "admin", Secret(sim.password), tls=tls) as pf:
        pd = await pf.protection_domain_by_name("pd1")
        pool = await pf.storage_pool_by_name("sp1", pd.id)
        warm = _counts(sim)
        for i in range(cycles):
            vol = await pf.create_volume(pool.id, 8 * GIB, f"lx-{i}")
            await pf.volume(vol)
            await pf.remove_volume(vol)
        after = _counts(sim)
    return _result(before, warm, after, cycles)


def dell_cycles(sim: Sim, cycles: int) -> dict[str, float]:
    from PyPowerFlex import PowerFlexClient as DellClient

    before = _counts(sim)
    dell = DellClient(
        gateway_address="127.0.0.1",
        gateway_port=int(sim.url.rsplit(":", 1)[1]),
        username="admin",
        password=sim.password,
        verify_certificate=True,
        certificate_path=sim.ca_file,
        log_level=logging.ERROR,
    )
    dell.initialize()
    pd = dell.protection_domain.get(filter_fields={"name": "pd1"})[0]
    pool = next(p for p in dell.protection_domain.get_storage_pools(pd["id"]) if p["name"] == "sp1")
    warm = _counts(sim)
    for i in range(cycles):
        vol = dell.volume.create(pool["id"], 8, name=f"dell-{i}", volume_type="ThinProvisioned")
        dell.volume.get(entity_id=vol["id"])
        dell.volume.delete(vol["id"], "ONLY_ME")
    after = _counts(sim)
    return _result(before, warm, after, cycles)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50)
    args = parser.parse_args()
    with simulator(api_version="4.5", tls=True) as sim:
        ours = await lxflex_cycles(sim, args.cycles)
        theirs = await asyncio.to_thread(dell_cycles, sim, args.cycles)
    print(
        f"{args.cycles} cycles of create + get + delete ({3 * args.cycles} calls), "
        "PowerFlex 4.5 simulator over HTTPS"
    )
    print("steady state: after the pool lookups; start-up: the lookups, with login and detection")
    print(f"{'client':<12}{'requests':>10}{'requests/call':>15}{'logins':>8}{'start-up':>10}")
    for name, r in (("lxflex", ours), ("PyPowerFlex", theirs)):
        print(
            f"{name:<12}{r['requests']:>10.0f}{r['requests'] / r['calls']:>15.2f}"
            f"{r['logins']:>8.0f}{r['startup']:>10.0f}"
        )
    ratio = (theirs["requests"] / theirs["calls"]) / (ours["requests"] / ours["calls"])
    print(f"PyPowerFlex makes {ratio:.1f}x the requests of lxflex per call")
    goal = ours["requests"] / ours["calls"] <= 1.1
    print(f"goal (<= 1.1 requests per call): {'met' if goal else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
