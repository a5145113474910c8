"""A full storage stack for benchmarks: simulator with fabric emulation (needs root),
SQLite state and the service, all on this host, in one temporary directory."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from lxflex.host.nvme import NvmeConfig
from lxflex.service import HostSettings, PoolService, Runtimes, VolumeService
from lxflex.sim import SimConfig, Simulator
from lxflex.state import Database


@dataclass
class Stack:
    sim: Simulator
    pools: PoolService
    volumes: VolumeService
    runtimes: Runtimes


@asynccontextmanager
async def stack(api_version: str = "4.5") -> AsyncIterator[Stack]:
    password = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="lxflex-bench-") as tmp:
        root = Path(tmp)
        sim = Simulator(
            SimConfig(state_dir=root / "sim", admin_password=password, api_version=api_version)
        )
        await sim.start()
        host = sim.fabric.hosts["local"]
        settings = HostSettings(
            state_dir=root / "lxflex",
            nvme=NvmeConfig(nvme=str(host.bin_dir / "nvme"), by_id=host.by_id, sys=host.sys_root),
            host_root=host.root,
        )
        db = await Database.open(f"sqlite:///{root}/lxflex/state.db")
        runtimes = Runtimes(settings)
        pools = PoolService(db, runtimes)
        try:
            await pools.create(
                "pf",
                "powerflex",
                {
                    "powerflex.gateway": sim.url,
                    "powerflex.user.password": password,
                    "powerflex.pool": "sp1",
                    "powerflex.domain": "pd1",
                },
            )
            yield Stack(sim, pools, VolumeService(db, pools), runtimes)
        finally:
            await runtimes.close()
            await db.close()
            await sim.stop()
