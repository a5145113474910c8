"""A full storage stack for benchmarks: simulator with fabric emulation (needs root) and
the storage service on SQLite, all on this host, in one temporary directory."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from lxflex.host.nvme import NvmeConfig
from lxflex.service import HostSettings, Storage
from lxflex.sim import SimConfig, Simulator


@asynccontextmanager
async def stack(api_version: str = "4.5") -> AsyncIterator[tuple[Simulator, Storage]]:
    """The simulator and the service, with pool ``pf`` on the simulator's ``sp1``."""
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
        storage = await Storage.open(settings)
        try:
            await storage.pools.create(
                "pf",
                "powerflex",
                {
                    "powerflex.gateway": sim.url,
                    "powerflex.user.password": password,
                    "powerflex.pool": "sp1",
                    "powerflex.domain": "pd1",
                },
            )
            yield sim, storage
        finally:
            await storage.close()
            await sim.stop()
