"""Per-pool runtime objects: the gateway client and the driver, built once per pool.

A pool's runtime is created on first use from its stored config, after re-resolving it
against the gateway; it is dropped when the pool's config changes or the service closes.
Each pool has its own attacher: volume IDs are unique per system, so reference counts do
not overlap, and whether the host still has mappings (before a disconnect) is asked of
the array, which sees every pool.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ..driver.attach import Attacher, AttachPolicy, NvmeAttacher, SdcAttacher
from ..driver.backup import Backups
from ..driver.config import MODE_SDC, bool_value
from ..driver.errors import Unavailable
from ..driver.instances import InstanceVolumes
from ..driver.leftovers import Leftovers
from ..driver.pool import ResolvedPool, client_for, resolve
from ..driver.units import granularity
from ..driver.volumes import PowerFlexVolumes
from ..host.archive import Archives
from ..host.discovery import find_drv_cfg
from ..host.fs import Filesystems
from ..host.identity import server_uuid
from ..host.nvme import NvmeConfig, NvmeHost, host_nqn
from ..host.runner import Runner, SubprocessRunner
from ..host.sdc import SdcHost
from ..powerflex import PowerFlexClient, RetryPolicy
from ..secret import Secret

__all__ = ["HostSettings", "PoolRuntime", "Runtimes"]


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


@dataclass
class PoolRuntime:
    client: PowerFlexClient
    resolved: ResolvedPool
    volumes: PowerFlexVolumes
    backups: Backups
    instances: InstanceVolumes


class Runtimes:
    """The live runtime of each pool, keyed by pool name."""

    def __init__(self, host: HostSettings, runner: Runner | None = None) -> None:
        self.host = host
        self.runner = runner or SubprocessRunner()
        self.fs = Filesystems(self.runner)
        self.archives = Archives(self.runner)
        self.uuid = server_uuid(host.state_dir)
        self._pools: dict[str, PoolRuntime] = {}
        self._lock = asyncio.Lock()

    async def check(self, config: dict[str, str], password: Secret) -> ResolvedPool:
        """Resolve a config against the gateway and this host, with a throwaway client."""
        async with client_for(config, password, self.host.retry) as client:
            return await resolve(client, config, self.host.host_root)

    async def get(
        self,
        name: str,
        config: dict[str, str],
        password: Secret,
        leftovers: Leftovers | None = None,
    ) -> PoolRuntime:
        """The pool's runtime, built on first use; its driver hands the leftovers of
        failed cleanups to ``leftovers``."""
        runtime = self._pools.get(name)
        if runtime is not None:
            return runtime
        async with self._lock:
            runtime = self._pools.get(name)
            if runtime is None:
                runtime = await self._build(config, password, leftovers)
                self._pools[name] = runtime
            return runtime

    async def _build(
        self, config: dict[str, str], password: Secret, leftovers: Leftovers | None
    ) -> PoolRuntime:
        client = client_for(config, password, self.host.retry)
        try:
            resolved = await resolve(client, config, self.host.host_root)
        except BaseException:
            await client.close()
            raise
        volumes = PowerFlexVolumes(
            client,
            resolved,
            self._attacher(client, resolved, leftovers),
            self.fs,
            granularity=granularity(resolved.version),
            clone_copy=_clone_copy(config),
            scratch=self.host.scratch,
            leftovers=leftovers,
        )
        return PoolRuntime(
            client, resolved, volumes, Backups(volumes, self.archives), InstanceVolumes(volumes)
        )

    def _attacher(
        self, client: PowerFlexClient, resolved: ResolvedPool, leftovers: Leftovers | None
    ) -> Attacher:
        if resolved.mode == MODE_SDC:
            drv_cfg = find_drv_cfg(self.host.host_root)
            if drv_cfg is None:
                raise Unavailable("the SDC mode needs drv_cfg, which this host lacks")
            return SdcAttacher(
                client,
                SdcHost(self.runner, drv_cfg, self.host.nvme.by_id),
                system_id=resolved.system_id,
                policy=self.host.attach,
                leftovers=leftovers,
            )
        return NvmeAttacher(
            client,
            NvmeHost(self.runner, self.host.nvme),
            hostnqn=host_nqn(self.uuid),
            host_name=f"lxflex-{socket.gethostname()}"[:31],
            system_id=resolved.system_id,
            subsystem_nqn=resolved.system_nqn or "",
            targets=list(resolved.sdts),
            policy=self.host.attach,
            leftovers=leftovers,
        )

    async def drop(self, name: str) -> None:
        runtime = self._pools.pop(name, None)
        if runtime is not None:
            await runtime.client.close()

    async def close(self) -> None:
        for name in list(self._pools):
            await self.drop(name)


def _clone_copy(config: dict[str, str]) -> bool:
    if config.get("powerflex.snapshot_copy"):
        return not bool_value(config["powerflex.snapshot_copy"], False)
    return bool_value(config.get("powerflex.clone_copy"), True)
