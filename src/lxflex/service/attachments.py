"""Volumes in use: a custom volume attached to this host until it is detached, across
restarts of lxflexd.

An attachment maps and connects the volume; a filesystem volume is mounted at its path
under the state directory (the one snapshots freeze and usage reads) and, when the
operator names a PATH, bound there too; a block volume's use is its device, by the
stable ``/dev/disk/by-id`` link. Each use is a row in the shared state
(:mod:`lxflex.state.attachments`): a volume is attached on one host at a time (a block
volume with ``security.shared`` on several: PowerFlex's multiple mappings). lxflexd
re-establishes this host's attachments when it starts (:meth:`AttachmentService.restore`),
after start-up repair, which leaves attached volumes mapped; ``storage check`` finds
those whose mount or device went (:meth:`AttachmentService.broken`).

A volume may also be given to an instance of this host's LXD or Incus: that is
:mod:`.instance_uses` (``AttachmentService.instances``), on the primitives here.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

from ..driver import Conflict, Content, InvalidRequest, NotFound, PoolDriver
from ..host.fs import is_mounted
from ..revert import Reverter
from ..state import Database, NameTaken
from ..state import attachments as at
from ..state import store as st
from .instance_uses import InstanceUses
from .kinds import CUSTOM
from .pools import PoolService
from .specs import spec_of
from .uses import (
    AttachedElsewhere,
    Attachment,
    AttachmentView,
    BrokenAttachment,
    Mover,
    shared,
    use_view,
)
from .views import array_of
from .volumes import VolumeService

__all__ = [
    "AttachedElsewhere",
    "Attachment",
    "AttachmentService",
    "AttachmentView",
    "BrokenAttachment",
    "Mover",
]

log = logging.getLogger("lxflex.service")


class AttachmentService:
    """Attachments of custom volumes to this host (server ``server_uuid``): its own
    uses here, its instances' in :attr:`instances`."""

    def __init__(
        self, db: Database, pools: PoolService, volumes: VolumeService, server_uuid: str
    ) -> None:
        self.db, self.pools, self.volumes, self.server_uuid = db, pools, volumes, server_uuid
        self.instances = InstanceUses(self)

    async def of_volume(
        self, pool_name: str, name: str, *, project: str = "default"
    ) -> list[AttachmentView]:
        """The volume's attachments, on every host."""
        _, vol = await self.volumes.load(pool_name, project, name)
        async with self.db.read() as conn:
            rows = await at.list_attachments(conn, volume_id=vol.id)
        return [use_view(pool_name, vol, r) for r in rows]

    async def holder(self, pool_name: str, name: str, *, project: str = "default") -> str | None:
        """The server whose host alone has the volume attached (none for a volume not
        in use, or shared): where work on it belongs."""
        try:
            uses = await self.of_volume(pool_name, name, project=project)
        except NotFound:
            return None
        servers = {u.server_uuid for u in uses}
        return servers.pop() if len(servers) == 1 else None

    async def host_use(
        self, pool_name: str, name: str, *, project: str = "default"
    ) -> AttachmentView | None:
        """This host's own use of the volume, if it is attached so."""
        for view in await self.of_volume(pool_name, name, project=project):
            if view.server_uuid == self.server_uuid and not view.instance:
                return view
        return None

    async def attach(
        self, pool_name: str, name: str, *, project: str = "default", path: Path | None = None
    ) -> AttachmentView:
        """Attach the volume for this host's own use: a filesystem mounted (also at
        ``path``, an absolute directory, when given), a block volume's device. Attaching
        again as before is no change."""
        if path is not None and not path.is_absolute():
            raise InvalidRequest(f"the path {str(path)!r} is not absolute")
        async with self.volumes.lock(pool_name, project, CUSTOM.lock_key(name)):
            pool, vol = await self.volumes.load(pool_name, project, name)
            if vol.content_type == Content.BLOCK and path is not None:
                raise InvalidRequest(
                    f"storage volume {name!r} is a block volume: its device is where it is "
                    "used (give no path)"
                )
            if vol.content_type not in (Content.FILESYSTEM, Content.BLOCK):
                raise InvalidRequest(f"a {vol.content_type} volume is not attached to a host")
            async with self.db.read() as conn:
                rows = await at.list_attachments(conn, volume_id=vol.id)
            mine = next((r for r in rows if r.server_uuid == self.server_uuid and r.for_host), None)
            stable = self.volumes.mount_path(pool_name, project, name)
            wanted = str(path or stable) if vol.content_type == Content.FILESYSTEM else None
            if mine is not None:
                if wanted not in (None, mine.path):
                    raise Conflict(
                        f"storage volume {name!r} is attached to this host at {mine.path} "
                        "already: detach it first to move it"
                    )
                return use_view(pool_name, vol, mine)
            self.may_join(name, vol, rows)
            runtime = await self.pools.runtime(pool)
            async with Reverter() as revert:
                where = await self._use(runtime, vol, stable, path, revert)
                async with self.db.write() as conn:
                    try:
                        row = await at.add(conn, vol.id, self.server_uuid, where)
                    except NameTaken as exc:
                        raise Conflict(str(exc)) from None
                revert.success()
            log.info("volume %s/%s attached to this host at %s", pool_name, name, where)
            return use_view(pool_name, vol, row)

    def may_join(self, name: str, vol: st.Volume, rows: list[at.Attachment]) -> None:
        """Refuse a use on this host while another host uses the volume: one host
        writes a volume at a time, unless it is a block volume with security.shared."""
        elsewhere = [r for r in rows if r.server_uuid != self.server_uuid]
        if elsewhere and not shared(vol):
            raise AttachedElsewhere(
                f"storage volume {name!r} is attached on another host "
                f"({elsewhere[0].path}): detach it there first (a block volume several "
                "hosts write with care may be set security.shared=true)",
                elsewhere,
            )

    async def _use(
        self,
        runtime: PoolDriver,
        vol: st.Volume,
        stable: Path,
        path: Path | None,
        revert: Reverter,
    ) -> str:
        """Make the volume usable here (undone by ``revert`` if a later step fails):
        where it is."""
        array_id = array_of(vol)
        if vol.content_type == Content.BLOCK:
            device = await runtime.volumes.hold(array_id, shared=shared(vol))
            revert.add(lambda: runtime.volumes.let_go(array_id), f"attachment of {vol.name}")
            return str(device)
        spec = spec_of(vol.content_type, vol.config)
        if not is_mounted(stable):
            await runtime.volumes.mount(spec, array_id, stable)
            revert.add(lambda: runtime.volumes.unmount(array_id, stable), f"mount of {vol.name}")
        if path is None or path == stable:
            return str(stable)
        if is_mounted(path):
            raise Conflict(f"{path} is a mount point already")
        await runtime.volumes.fs.bind(stable, path)
        revert.add(lambda: runtime.volumes.fs.unmount(path), f"bind mount at {path}")
        return str(path)

    async def detach(self, pool_name: str, name: str, *, project: str = "default") -> None:
        """Undo this host's own use of the volume: unmounted (the bind mount first) and
        unmapped once nothing else on this host uses it. NotFound when it is not
        attached here."""
        async with self.volumes.lock(pool_name, project, CUSTOM.lock_key(name)):
            pool, vol = await self.volumes.load(pool_name, project, name)
            async with self.db.read() as conn:
                rows = await at.list_attachments(
                    conn, volume_id=vol.id, server_uuid=self.server_uuid
                )
            mine = next((r for r in rows if r.for_host), None)
            if mine is None:
                raise NotFound(f"storage volume {name!r} is not attached to this host")
            await self.release(await self.pools.runtime(pool), pool_name, vol, mine, rows)

    async def stop_using(
        self, runtime: PoolDriver, pool_name: str, vol: st.Volume, row: at.Attachment, *, last: bool
    ) -> None:
        array_id = array_of(vol)
        if vol.content_type == Content.BLOCK:
            await runtime.volumes.let_go(array_id)
            return
        stable = self.volumes.mount_path(pool_name, vol.project, vol.name)
        if row.path != str(stable):
            await runtime.volumes.fs.unmount(Path(row.path))
        if last:
            await runtime.volumes.unmount(array_id, stable)
            # Gone, so that no instance given this path (one that came from another host
            # and starts before the volume is here) takes the empty directory for it.
            with contextlib.suppress(OSError):
                stable.rmdir()

    async def release(
        self,
        runtime: PoolDriver,
        pool_name: str,
        vol: st.Volume,
        row: at.Attachment,
        rows: list[at.Attachment],
    ) -> None:
        """Undo one use (``row``, one of this host's ``rows`` of the volume): its device
        let go of, its bind mount undone; the mount too once it was the last use."""
        last = not [r for r in rows if r.id != row.id]
        await self.stop_using(runtime, pool_name, vol, row, last=last)
        async with self.db.write() as conn:
            await at.remove(conn, row.id)
        user = f"instance {row.instance}" if row.instance else "this host"
        log.info("volume %s/%s released by %s", pool_name, vol.name, user)

    async def close(self) -> None:
        """Stop following the instances' daemons."""
        await self.instances.close()

    async def take_from(
        self, pool_name: str, name: str, server_uuid: str, *, project: str = "default"
    ) -> int:
        """Take the volume from a host that cannot give it up itself (its member is
        Offline): its mapping removed at the array first (fenced: no write from that
        host reaches the volume after this), then its uses forgotten. The rows removed."""
        async with self.volumes.lock(pool_name, project, CUSTOM.lock_key(name)):
            pool, vol = await self.volumes.load(pool_name, project, name)
            runtime = await self.pools.runtime(pool)
            await runtime.fence(server_uuid, array_of(vol))
            async with self.db.write() as conn:
                rows = await at.list_attachments(conn, volume_id=vol.id, server_uuid=server_uuid)
                for row in rows:
                    await at.remove(conn, row.id)
        log.warning(
            "volume %s/%s taken from server %s (fenced): %d use(s) forgotten",
            pool_name,
            name,
            server_uuid,
            len(rows),
        )
        return len(rows)

    async def restore(self) -> list[str]:
        """At start, after start-up repair (which leaves attached volumes mapped): make
        this host's attachments usable again. A mount that outlived lxflexd is kept; a
        missing one is made again, as is a block volume's device; the instances' daemons
        are followed again (an instance deleted meanwhile releases its volumes). Returns
        what could not be restored, one line each (also logged); storage check reports
        it too."""
        problems = []
        for pool in await self.pools.all():
            if pool.status == "pending":
                continue
            record = await self.pools.record(pool.name)
            async with self.db.read() as conn:
                rows = await at.list_attachments(
                    conn, pool_id=record.id, server_uuid=self.server_uuid
                )
                vols = {v.id: v for v in await st.list_volumes(conn, record.id)}
            for row in rows:
                vol = vols[row.volume_id]
                try:
                    runtime = await self.pools.runtime(record)
                    await self._reestablish(runtime, pool.name, vol, row)
                except Exception as exc:
                    problem = f"{pool.name}/{vol.name} at {row.path}: {exc}"
                    log.error("attachment not restored: %s", problem)
                    problems.append(problem)
                if row.instance:
                    self.instances.follow(Path(row.socket))  # what changed while lxflexd was down
        return problems

    async def _reestablish(
        self, runtime: PoolDriver, pool_name: str, vol: st.Volume, row: at.Attachment
    ) -> None:
        """Make the attachment whole again: at start (nothing of this process holds the
        volume yet) or from storage check (a hold whose device or mount went is let go
        of first, so the volume is held once)."""
        array_id = array_of(vol)
        attacher = runtime.volumes.attacher
        if vol.content_type == Content.BLOCK:
            if attacher.attached(array_id):
                if Path(row.path).exists():
                    return
                await runtime.volumes.let_go(array_id)
            await runtime.volumes.hold(array_id, shared=shared(vol))
            return
        stable = self.volumes.mount_path(pool_name, vol.project, vol.name)
        if is_mounted(stable):
            if not attacher.attached(array_id):
                attacher.adopt(array_id)  # a restart left it mounted
        else:
            if attacher.attached(array_id):
                await runtime.volumes.let_go(array_id)
            spec = spec_of(vol.content_type, vol.config)
            await runtime.volumes.mount(spec, array_id, stable)
        path = Path(row.path)
        if path != stable and not is_mounted(path):
            await runtime.volumes.fs.bind(stable, path)

    async def broken(self, pool_name: str) -> list[BrokenAttachment]:
        """This host's attachments in the pool whose mount or device is missing, and
        mounts here of volumes another host has now."""
        record = await self.pools.record(pool_name)
        async with self.db.read() as conn:
            rows = await at.list_attachments(conn, pool_id=record.id, server_uuid=self.server_uuid)
            vols = {v.id: v for v in await st.list_volumes(conn, record.id)}
        found = []
        for row in rows:
            vol = vols[row.volume_id]
            problem = self._problem(pool_name, vol, row)
            if problem:
                repair = functools.partial(self._repair, pool_name, vol.project, vol.name, row.id)
                found.append(BrokenAttachment(vol.name, vol.project, row.path, problem, repair))
        mine = {r.volume_id for r in rows}
        async with self.db.read() as conn:
            used = {r.volume_id for r in await at.list_attachments(conn, pool_id=record.id)}
        for vol in vols.values():
            stable = self.volumes.mount_path(pool_name, vol.project, vol.name)
            if vol.id in used - mine and is_mounted(stable):
                found.append(
                    BrokenAttachment(
                        vol.name,
                        vol.project,
                        str(stable),
                        "it is mounted here while another host has it (taken from this one, "
                        "fenced, while this member was Offline): unmount it, nothing here "
                        "may write it",
                        functools.partial(self._unmount_stray, pool_name, vol.project, vol.name),
                        stray=True,
                    )
                )
        return found

    async def _unmount_stray(self, pool_name: str, project: str, name: str) -> None:
        async with self.volumes.lock(pool_name, project, CUSTOM.lock_key(name)):
            pool, vol = await self.volumes.load(pool_name, project, name)
            runtime = await self.pools.runtime(pool)
            stable = self.volumes.mount_path(pool_name, project, name)
            if runtime.volumes.attacher.attached(array_of(vol)):
                await runtime.volumes.unmount(array_of(vol), stable)
            else:
                await runtime.volumes.fs.unmount(stable)  # its device is gone (fenced)

    def _problem(self, pool_name: str, vol: st.Volume, row: at.Attachment) -> str:
        if vol.content_type == Content.BLOCK:
            return "" if Path(row.path).exists() else f"its device {row.path} is missing"
        stable = self.volumes.mount_path(pool_name, vol.project, vol.name)
        if not is_mounted(stable):
            return f"it is not mounted at {stable}"
        if row.path != str(stable) and not is_mounted(Path(row.path)):
            return f"it is not mounted at {row.path}"
        return ""

    async def _repair(self, pool_name: str, project: str, name: str, row_id: int) -> None:
        async with self.volumes.lock(pool_name, project, CUSTOM.lock_key(name)):
            pool, vol = await self.volumes.load(pool_name, project, name)
            async with self.db.read() as conn:
                rows = await at.list_attachments(conn, volume_id=vol.id)
            row = next((r for r in rows if r.id == row_id), None)
            if row is None:
                return  # detached meanwhile
            await self._reestablish(await self.pools.runtime(pool), pool_name, vol, row)
