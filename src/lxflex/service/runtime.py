"""Each pool's driver, opened once: this host's settings, and the cache of drivers.

A pool's driver (:class:`~lxflex.driver.PoolDriver`, the gateway client and the
operations) is opened on first use from its stored config, which is resolved against the
gateway again; it is dropped when the pool's config changes or the service closes.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ..driver import AttachPolicy, HostSide, Leftovers, PoolDriver, ResolvedPool, check_pool
from ..host.archive import Archives
from ..host.fs import Filesystems
from ..host.identity import server_uuid
from ..host.nvme import NvmeConfig
from ..host.runner import Runner, SubprocessRunner
from ..powerflex import RetryPolicy
from ..secret import Secret

__all__ = ["HostSettings", "Runtimes"]


@dataclass(frozen=True)
class HostSettings:
    """Where this server keeps its files and finds its host tooling."""

    state_dir: Path
    nvme: NvmeConfig = field(default_factory=NvmeConfig)
    host_root: Path = Path("/")  # mode discovery reads <root>/sys/module, <root>/opt/emc
    attach: AttachPolicy = field(default_factory=AttachPolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def mounts(self) -> Path:
        return self.state_dir / "storage-pools"

    @property
    def scratch(self) -> Path:
        return self.state_dir / "scratch"

    @property
    def backups(self) -> Path:
        return self.state_dir / "backups"


class Runtimes:
    """The driver of each pool, keyed by pool name."""

    def __init__(self, host: HostSettings, runner: Runner | None = None) -> None:
        self.host = host
        self.runner = runner or SubprocessRunner()
        self.fs = Filesystems(self.runner)
        self.archives = Archives(self.runner)
        self.uuid = server_uuid(host.state_dir)
        self._pools: dict[str, PoolDriver] = {}
        self._lock = asyncio.Lock()

    def _side(self) -> HostSide:
        host = self.host
        return HostSide(
            self.runner,
            self.uuid,
            f"lxflex-{socket.gethostname()}"[:31],
            host.scratch,
            host_root=host.host_root,
            nvme=host.nvme,
            attach=host.attach,
            retry=host.retry,
        )

    async def check(self, config: dict[str, str], password: Secret) -> ResolvedPool:
        """Resolve a config against the gateway and this host, with a throwaway client."""
        return await check_pool(config, password, self._side())

    async def get(
        self,
        name: str,
        config: dict[str, str],
        password: Secret,
        leftovers: Leftovers | None = None,
    ) -> PoolDriver:
        """The pool's driver, opened on first use; it hands the leftovers of failed
        cleanups to ``leftovers``."""
        runtime = self._pools.get(name)
        if runtime is not None:
            return runtime
        async with self._lock:
            runtime = self._pools.get(name)
            if runtime is None:
                runtime = await PoolDriver.open(config, password, self._side(), leftovers)
                self._pools[name] = runtime
            return runtime

    async def drop(self, name: str) -> None:
        runtime = self._pools.pop(name, None)
        if runtime is not None:
            await runtime.close()

    async def close(self) -> None:
        for name in list(self._pools):
            await self.drop(name)
