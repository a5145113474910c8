"""The embedded default: the PowerFlex simulator and the storage service wired together.

Everything lives under one state directory: ``sim/`` for the simulator (gateway state,
volume data, the emulated host), ``lxflex/`` for the service (SQLite state, mounts,
``server.uuid``). The service reaches the simulator's emulated host through its ``nvme``
shim, by-id directory and fake sysfs, exactly as it reaches a real host through nvme-cli,
``/dev/disk/by-id`` and ``/sys``. Used by the demo, the benchmarks and the tests.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from .host.nvme import NvmeConfig
from .secret import Secret
from .service import HostSettings, Storage
from .sim import SimConfig, Simulator

__all__ = ["Embedded", "embedded", "host_settings"]


def host_settings(sim: Simulator, state_dir: Path, host: str = "local") -> HostSettings:
    """Host settings that point the service at one of the simulator's emulated hosts."""
    fabric_host = sim.fabric.hosts[host]
    return HostSettings(
        state_dir=state_dir,
        nvme=NvmeConfig(
            nvme=str(fabric_host.bin_dir / "nvme"),
            by_id=fabric_host.by_id,
            sys=fabric_host.sys_root,
        ),
        host_root=fabric_host.root,
    )


@dataclass
class Embedded:
    sim: Simulator
    storage: Storage
    password: str

    def pool_config(self, pool: str = "sp1", domain: str = "pd1") -> dict[str, str]:
        """The config of a pool on the simulator's storage pool ``pool`` (its password
        is :attr:`secret`)."""
        return {
            "powerflex.gateway": self.sim.url,
            "powerflex.pool": pool,
            "powerflex.domain": domain,
        }

    @property
    def secret(self) -> Secret:
        """The simulator's gateway password, for a pool's ``password``."""
        return Secret(self.password)


@asynccontextmanager
async def embedded(
    state_dir: Path,
    *,
    api_version: str = "4.5",
    db_url: str | None = None,
    password: str | None = None,
    port: int = 0,
) -> AsyncIterator[Embedded]:
    """Start the simulator and open the service; stop both at the end.

    Without ``password`` the simulator gets a fresh random one.
    """
    password = password or secrets.token_urlsafe(16)
    sim = Simulator(
        SimConfig(
            state_dir=state_dir / "sim", admin_password=password, api_version=api_version, port=port
        )
    )
    await sim.start()
    try:
        storage = await Storage.open(host_settings(sim, state_dir / "lxflex"), db_url)
        try:
            yield Embedded(sim, storage, password)
        finally:
            await storage.close()
    finally:
        await sim.stop()
