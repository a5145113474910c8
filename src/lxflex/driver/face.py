"""One pool's driver as the layers above see it, and how it is put together.

:meth:`PoolDriver.open` resolves a pool's config against the gateway and this host (see
:func:`~lxflex.driver.pool.resolve`), then assembles what serves the pool: the gateway
client, the attacher of the pool's mode (NVMe/TCP: this host's NQN and the system's
targets; SDC: its ``drv_cfg``), the volume operations over both, instance volumes and
backups. Which host tools a mode needs, and how they are wired, is known here only.

Each pool has its own attacher: volume IDs are unique per system, so reference counts do
not overlap, and whether the host still has mappings (before a disconnect) is asked of
the array, which sees every pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..host.archive import Archives
from ..host.discovery import find_drv_cfg
from ..host.fs import Filesystems
from ..host.nvme import NvmeConfig, NvmeHost, host_nqn
from ..host.runner import Runner
from ..host.sdc import SdcHost
from ..powerflex import PowerFlexClient, RetryPolicy
from ..secret import Secret
from .attach import Attacher, AttachPolicy, NvmeAttacher, SdcAttacher
from .backup import Backups
from .config import MODE_SDC, bool_value
from .errors import Unavailable
from .instances import InstanceVolumes
from .leftovers import Leftovers
from .pool import ResolvedPool, client_for, resolve
from .spec import wrap
from .units import granularity
from .volumes import PowerFlexVolumes

__all__ = ["HostSide", "PoolDriver", "check_pool"]


@dataclass(frozen=True)
class HostSide:
    """What a pool's driver needs of this host."""

    runner: Runner  # every host command goes through it
    server_uuid: str  # this server's identity: its NVMe host NQN derives from it
    host_name: str  # how the array names this host (NVMe host entity)
    scratch: Path  # temporary mount points (grow, copy, backup)
    host_root: Path = Path("/")  # mode discovery reads <root>/sys/module, <root>/opt/emc
    nvme: NvmeConfig = field(default_factory=NvmeConfig)
    attach: AttachPolicy = field(default_factory=AttachPolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


async def check_pool(config: dict[str, str], password: Secret, host: HostSide) -> ResolvedPool:
    """Resolve a pool's config against the gateway and this host, with a throwaway
    client; ConfigError names the key at fault."""
    async with client_for(config, password, host.retry) as client:
        return await resolve(client, config, host.host_root)


@dataclass
class PoolDriver:
    """The driver of one pool: its client, what was resolved, and the operations."""

    client: PowerFlexClient
    resolved: ResolvedPool
    volumes: PowerFlexVolumes
    backups: Backups
    instances: InstanceVolumes

    @classmethod
    async def open(
        cls,
        config: dict[str, str],
        password: Secret,
        host: HostSide,
        leftovers: Leftovers | None = None,
    ) -> PoolDriver:
        """The pool's driver, its config resolved first; the driver hands the leftovers
        of failed cleanups to ``leftovers``."""
        client = client_for(config, password, host.retry)
        try:
            resolved = await resolve(client, config, host.host_root)
            attacher = _attacher(client, resolved, host, leftovers)
        except BaseException:
            await client.close()
            raise
        fs = Filesystems(host.runner)
        volumes = PowerFlexVolumes(
            client,
            resolved,
            attacher,
            fs,
            granularity=granularity(resolved.version),
            clone_copy=_clone_copy(config),
            scratch=host.scratch,
            leftovers=leftovers,
        )
        return cls(
            client,
            resolved,
            volumes,
            Backups(volumes, Archives(host.runner)),
            InstanceVolumes(volumes),
        )

    async def fence(self, server_uuid: str, volume_id: str | None = None) -> list[str]:
        """Take every mapping of another server's host away at the array (a cluster
        member that is gone, so that no volume is written from two hosts), or only its
        mapping of ``volume_id``; the IDs of the volumes it unmapped. NVMe/TCP hosts
        are found by the NQN the server's UUID gives; an SDC's ID is not known to other
        servers, so an SDC pool refuses."""
        if self.resolved.mode == MODE_SDC:
            raise Unavailable(
                "cannot fence a member's SDC from another server: unmap its volumes at "
                "the array (its SDC), then remove the member"
            )
        unmapped: list[str] = []
        try:
            found = await self.client.nvme_host_by_nqn(host_nqn(server_uuid))
            if found is None:
                return []  # it never mapped anything on this array
            for volume in await self.client.host_volumes(found.id):
                if volume_id in (None, volume.id):
                    await self.client.unmap_host(volume.id, found.id)
                    unmapped.append(volume.id)
        except Exception as exc:
            done = f" ({len(unmapped)} mapping(s) taken away before)" if unmapped else ""
            raise wrap(f"fencing the host of server {server_uuid}{done}", exc) from exc
        return unmapped

    async def close(self) -> None:
        await self.client.close()


def _attacher(
    client: PowerFlexClient, resolved: ResolvedPool, host: HostSide, leftovers: Leftovers | None
) -> Attacher:
    if resolved.mode == MODE_SDC:
        drv_cfg = find_drv_cfg(host.host_root)
        if drv_cfg is None:
            raise Unavailable("the SDC mode needs drv_cfg, which this host lacks")
        return SdcAttacher(
            client,
            SdcHost(host.runner, drv_cfg, host.nvme.by_id),
            system_id=resolved.system_id,
            policy=host.attach,
            leftovers=leftovers,
        )
    return NvmeAttacher(
        client,
        NvmeHost(host.runner, host.nvme),
        hostnqn=host_nqn(host.server_uuid),
        host_name=host.host_name,
        system_id=resolved.system_id,
        subsystem_nqn=resolved.system_nqn or "",
        targets=list(resolved.sdts),
        policy=host.attach,
        leftovers=leftovers,
    )


def _clone_copy(config: dict[str, str]) -> bool:
    if config.get("powerflex.snapshot_copy"):
        return not bool_value(config["powerflex.snapshot_copy"], False)
    return bool_value(config.get("powerflex.clone_copy"), True)
