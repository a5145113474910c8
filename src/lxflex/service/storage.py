"""The service as one object: state, runtimes, pools, volumes, backups and trust."""

from __future__ import annotations

import datetime
import logging
import socket
from collections.abc import Collection
from dataclasses import dataclass

from ..driver import Unavailable
from ..host.runner import Runner
from ..state import Database
from ..state import attachments as at
from ..state import store as st
from .attachments import AttachmentService
from .backups import BackupService
from .check import CheckContext, Report, check_pool
from .cluster import ClusterService, ClusterSettings
from .instances import InstanceService
from .iso import IsoService
from .pools import PoolService
from .projects import ProjectService
from .recovery import sweep_scratch
from .runtime import HostSettings, Runtimes
from .schedule import run_schedule
from .trust import TrustService
from .volumes import VolumeService

__all__ = ["Storage"]

log = logging.getLogger("lxflex.service")


@dataclass
class Storage:
    db: Database
    runtimes: Runtimes
    pools: PoolService
    volumes: VolumeService
    trust: TrustService
    backups: BackupService
    isos: IsoService
    instances: InstanceService
    projects: ProjectService
    cluster: ClusterService
    attachments: AttachmentService

    @classmethod
    async def open(
        cls,
        settings: HostSettings,
        db_url: str | None = None,
        runner: Runner | None = None,
        cluster: ClusterSettings | None = None,
    ) -> Storage:
        """Open (and migrate) the state, and register this server in it; with
        ``cluster``, as that member (it joins when :meth:`ClusterService.join` is called).

        ``db_url`` defaults to SQLite at ``<state>/lxflex.db``.
        """
        db = await Database.open(db_url or f"sqlite:///{settings.state_dir}/lxflex.db")
        try:
            for private in (settings.backups, settings.scratch):  # volume data: root's only
                private.mkdir(mode=0o700, parents=True, exist_ok=True)
                private.chmod(0o700)
            runtimes = Runtimes(settings, runner)
            async with db.write() as conn:
                await st.ensure_server(conn, runtimes.uuid, socket.gethostname())
        except BaseException:
            await db.close()
            raise
        pools = PoolService(db, runtimes)
        volumes = VolumeService(db, pools)
        return cls(
            db,
            runtimes,
            pools,
            volumes,
            TrustService(db, runtimes.uuid),
            BackupService(db, pools, volumes),
            IsoService(db, pools, volumes),
            InstanceService(db, pools, volumes),
            ProjectService(db, pools.events),
            ClusterService(db, runtimes.uuid, cluster),
            AttachmentService(db, pools, volumes, runtimes.uuid),
        )

    async def recover(self) -> int:
        """At start, before serving: repair what interrupted operations left on this host
        (scratch) and in every pool (see :func:`~.recovery.recover_pool`); a pool whose
        gateway cannot be reached now is left for the next start (and logged). Then
        this host's attachments are taken up again."""
        repaired = await sweep_scratch(self.runtimes.fs, self.runtimes.host.scratch)
        await self.backups.prune()
        for pool in await self.pools.all():
            if pool.status == "pending":  # nothing on the array yet
                continue
            try:
                repaired += await self.volumes.recover(pool.name, shared=self.cluster.clustered)
            except Exception as exc:  # one unreachable pool must not keep the others down
                log.warning("pool %s: recovery postponed: %s", pool.name, exc)
        await self.attachments.restore()  # what cannot be restored is logged, and checked
        return repaired

    async def remove_member(self, name: str, *, force: bool = False) -> None:
        """Take a member out of the cluster, fencing it first: in every pool, its host's
        mappings are taken away at the array (no volume may then be written from it and
        from another host), what its journal left is finished (array volumes its work
        made without a row are removed), and the rows its work left under way are
        repaired, and its volumes' attachments (their mappings are gone) are forgotten.
        A pool that cannot be fenced keeps the member, so removing it again retries."""
        member = await self.cluster.removable(name, force=force)
        for pool in await self.pools.all():
            if pool.status == "pending":
                continue
            record = await self.pools.record(pool.name)
            runtime = await self.pools.runtime(record)
            unmapped = await runtime.fence(member.server_uuid)
            repairs = await self.pools.journal.repair(
                record.id, runtime.volumes, fenced=member.server_uuid
            )
            if repairs.failed:
                entry, why = repairs.failed[0]
                raise Unavailable(
                    f"pool {pool.name}: what member {name} left cannot be finished now "
                    f"({entry.kind} {entry.array_id or entry.name}: {why}); try again"
                )
            rows = await self.volumes.repair_rows(pool.name)  # its locks went with it
            log.warning(
                "pool %s: member %s fenced: %d mapping(s) taken away, %d leftover(s) and "
                "%d volume(s) with work cut short repaired",
                pool.name,
                name,
                len(unmapped),
                len(repairs.done),
                rows,
            )
        async with self.db.write() as conn:  # its uses went with its mappings
            forgotten = await at.forget_server(conn, member.server_uuid)
        if forgotten:
            log.warning("member %s: %d attachment(s) of volumes forgotten", name, forgotten)
        await self.cluster.leave(name)

    async def check(
        self, pool: str, *, repair: bool = False, remove: Collection[str] = ()
    ) -> Report:
        """Compare the pool's array, this host and the state (see :mod:`.check`)."""
        host = self.runtimes.host
        context = CheckContext(
            self.db,
            self.pools,
            self.runtimes.fs,
            host.mounts,
            host.scratch,
            lock=self.volumes.lock,
            busy=self.volumes.busy,
            idle=self.volumes.idle,
            broken=self.attachments.broken,
        )
        return await check_pool(context, pool, repair=repair, remove=remove)

    async def scheduled(self, now: datetime.datetime) -> tuple[int, int]:
        """Scheduled snapshots and snapshot expiry at ``now`` (see :mod:`.schedule`)."""
        return await run_schedule(self.volumes, now)

    async def close(self) -> None:
        await self.attachments.close()
        await self.runtimes.close()
        await self.db.close()
