"""The driver alone, without root, opened through its face (PoolDriver.open): the
gateway simulator on loopback, and a host seen through the driver's own seams.

* The gateway: the real client against the simulator, whose faults make any call fail.
* The host: a :class:`SimHost` runner (the Runner seam) that answers ``nvme`` by running
  the simulator's nvme-cli stand-in in this process, and fails any other command, so a
  test notices a command it did not expect; ``answers`` scripts the answer of one nvme
  subcommand instead (a failure, or a success that does nothing).
  The simulator's fabric runs with ``fabric_devices="file"``: a connected volume's
  by-id link leads to its backing file, so block I/O needs no loop device.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lxflex.driver import (
    AttachPolicy,
    HostSide,
    Leftover,
    PoolDriver,
    PowerFlexVolumes,
    ResolvedPool,
)
from lxflex.host.nvme import NvmeConfig
from lxflex.host.runner import CommandError, Completed
from lxflex.powerflex import PowerFlexClient, RetryPolicy
from lxflex.secret import Secret
from lxflex.sim import SimConfig, Simulator
from lxflex.sim.commands import run_nvme
from lxflex.sim.fabric import FabricHost

from ...conftest import Control

FAST = RetryPolicy(attempts=3, initial_backoff=0.001, max_backoff=0.001)
HOST_UUID = "5f0c2d1e-8a7b-4c3d-9e2f-1a0b9c8d7e6f"


@dataclass
class SimHost:
    """The Runner of an emulated host: ``nvme`` goes to the simulator's fabric."""

    sim: Simulator
    host: FabricHost
    ran: list[tuple[str, ...]] = field(default_factory=list)
    answers: dict[str, tuple[int, str]] = field(default_factory=dict)  # subcommand: rc, stderr

    async def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 300.0
    ) -> Completed:
        args = tuple(str(a) for a in argv)
        self.ran.append(args)
        if Path(args[0]).name != "nvme":
            raise CommandError(args, 127, f"{args[0]}: not a command of this test host")
        if len(args) > 1 and args[1] in self.answers:
            rc, stderr = self.answers[args[1]]
            done = Completed(args, rc, "", stderr)
        else:
            async with self.sim.mutex:
                result = await run_nvme(self.sim.fabric, self.host, list(args[1:]))
            if result.settle:
                self.sim.settle()
            out = result.as_dict()
            done = Completed(args, result.rc, str(out["stdout"]), str(out["stderr"]))
        if check and done.rc != 0:
            raise CommandError(args, done.rc, done.stderr)
        return done


class KeptLeftovers:
    """The driver's leftovers port, recording what a failed cleanup left."""

    def __init__(self) -> None:
        self.kept: list[Leftover] = []

    async def keep(self, leftover: Leftover) -> None:
        self.kept.append(leftover)


@dataclass
class Driver:
    sim: Simulator
    control: Control
    client: PowerFlexClient
    resolved: ResolvedPool
    runner: SimHost
    leftovers: KeptLeftovers
    volumes: PowerFlexVolumes

    def mapped(self) -> list[str]:
        return sorted(v.id for v in self.sim.array.volumes.values() if v.mappings)

    def names(self) -> list[str]:
        return sorted(v.name or v.id for v in self.sim.array.volumes.values())

    def links(self) -> list[str]:
        return sorted(p.name for p in self.runner.host.by_id.iterdir())


@pytest.fixture
async def driver(tmp_path: Path, password: str) -> AsyncIterator[Driver]:
    import aiohttp

    sim = Simulator(SimConfig(tmp_path / "sim", admin_password=password, fabric_devices="file"))
    await sim.start()
    host = sim.fabric.hosts["local"]
    runner = SimHost(sim, host)
    config = {
        "powerflex.gateway": sim.url,
        "powerflex.pool": "sp1",
        "powerflex.domain": "pd1",
        "powerflex.mode": "nvme/tcp",
    }
    leftovers = KeptLeftovers()
    side = HostSide(
        runner,
        HOST_UUID,
        "lxflex-unit",
        tmp_path / "scratch",
        host_root=host.root,
        nvme=NvmeConfig(nvme="nvme", by_id=host.by_id, sys=host.sys_root),
        attach=AttachPolicy(appear=5.0, vanish=5.0),
        retry=FAST,
    )
    try:
        pool = await PoolDriver.open(config, Secret(password), side, leftovers)
        try:
            async with aiohttp.ClientSession(base_url=sim.url) as session:
                yield Driver(
                    sim,
                    Control(session),
                    pool.client,
                    pool.resolved,
                    runner,
                    leftovers,
                    pool.volumes,
                )
        finally:
            await pool.close()
    finally:
        await sim.stop()
