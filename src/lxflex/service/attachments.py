"""Volumes in use: a custom volume attached to this host until it is detached, across
restarts of lxflexd.

An attachment maps and connects the volume; a filesystem volume is mounted at its path
under the state directory (the one snapshots freeze and usage reads) and, when the
operator names a PATH, bound there too; a block volume's use is its device, by the
stable ``/dev/disk/by-id`` link. Each use is a row in the shared state
(:mod:`lxflex.state.attachments`): a volume is attached on one host at a time (a block
volume with ``security.shared`` on several: PowerFlex's multiple mappings). lxflexd
re-establishes this host's attachments when it starts (:meth:`AttachmentService.restore`),
after start-up repair, which leaves attached volumes mapped.

A volume may also be given to an instance of this host's LXD or Incus
(:meth:`AttachmentService.attach_instance`): a ``disk`` device whose source is the mount
(its files shifted on disk to an unprivileged container's ID map) or a block device.
The daemon's lifecycle events are followed, so that a device removed or an instance
deleted releases the volume, and a renamed instance keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ..driver import Conflict, Content, InvalidRequest, NotFound, PoolDriver, Unavailable
from ..host.fs import is_mounted
from ..host.idmap import Idmap, shift_tree
from ..host.lxd import LxdClient, LxdError, find_socket
from ..revert import Reverter
from ..state import Database, NameTaken
from ..state import attachments as at
from ..state import store as st
from ..state.attachments import Attachment
from .kinds import CUSTOM
from .pools import PoolService
from .specs import spec_of
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


@dataclass(frozen=True)
class AttachmentView:
    pool: str
    project: str
    volume: str
    server_uuid: str  # the host's server
    path: str  # where the volume is usable on that host: a directory, or a device
    instance: str  # "" for the host's own use
    instance_project: str
    device: str
    created_at: datetime.datetime


class AttachedElsewhere(Conflict):
    """The volume is in use on another host: ``holders`` are its uses there (a move
    takes it from them first)."""

    def __init__(self, message: str, holders: list[at.Attachment]) -> None:
        super().__init__(message)
        self.holders = holders


@dataclass(frozen=True)
class BrokenAttachment:
    """An attachment of this host whose mount or device is missing (for storage check)."""

    volume: str
    project: str
    path: str
    problem: str
    repair: Callable[[], Awaitable[None]]  # attaches it again (a stray: unmounts it)
    stray: bool = False  # a mount of a volume another host has


# (pool, volume, project, the uses on other hosts): each given up by its member, only if
# its instance does not run (Conflict if it does); a member that is Offline fenced.
Mover = Callable[[str, str, str, list[Attachment]], Awaitable[None]]


def shared(vol: st.Volume) -> bool:
    """Whether several hosts may use the volume at once (``security.shared``)."""
    return vol.content_type == Content.BLOCK and vol.config.get("security.shared") == "true"


def _view(pool: str, vol: st.Volume, row: at.Attachment) -> AttachmentView:
    return AttachmentView(
        pool,
        vol.project,
        vol.name,
        row.server_uuid,
        row.path,
        row.instance,
        row.instance_project,
        row.device,
        row.created_at,
    )


class AttachmentService:
    """Attachments of custom volumes to this host (server ``server_uuid``)."""

    def __init__(
        self, db: Database, pools: PoolService, volumes: VolumeService, server_uuid: str
    ) -> None:
        self.db, self.pools, self.volumes, self.server_uuid = db, pools, volumes, server_uuid
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._watched: set[str] = set()  # this host's daemons, followed all along
        self._arrivals: set[asyncio.Task[None]] = set()
        # Set by the API in a cluster: takes a volume from its uses on other hosts (their
        # members asked to give them up) for an instance that arrived here.
        self.mover: Mover | None = None
        volumes.instances_stopped = self.stopped
        volumes.reshift = self._reshift
        volumes.rename_uses = self._rename_uses

    async def of_volume(
        self, pool_name: str, name: str, *, project: str = "default"
    ) -> list[AttachmentView]:
        """The volume's attachments, on every host."""
        _, vol = await self.volumes.load(pool_name, project, name)
        async with self.db.read() as conn:
            rows = await at.list_attachments(conn, volume_id=vol.id)
        return [_view(pool_name, vol, r) for r in rows]

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
                return _view(pool_name, vol, mine)
            self._may_join(name, vol, rows)
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
            return _view(pool_name, vol, row)

    def _may_join(self, name: str, vol: st.Volume, rows: list[at.Attachment]) -> None:
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
            await self._release(await self.pools.runtime(pool), pool_name, vol, mine, rows)

    async def _stop_using(
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

    # --- instances of this host's LXD or Incus -----------------------------------------

    async def attach_instance(
        self,
        pool_name: str,
        name: str,
        *,
        project: str = "default",
        instance: str,
        instance_project: str = "default",
        path: str = "",
        device: str = "",
        socket: Path | None = None,
        arrived: dict[str, str] | None = None,
    ) -> AttachmentView:
        """Give the volume to an instance of this host's LXD or Incus (at ``socket``,
        else found) as a device (named ``device``, else after the volume): a filesystem
        volume mounted here and shared as a directory at ``path`` in the instance (its
        files shifted on disk to an unprivileged container's ID map, as LXD does, unless
        ``security.shifted`` or ``security.unmapped`` says otherwise), a block volume as
        its device (``path`` in a container; a disk of a virtual machine).

        ``arrived``: the instance came from another host with the volume's device (its
        config, as there): the device is pointed at the volume here."""
        where = socket or _found_socket()
        client = LxdClient(where)
        try:
            async with self.volumes.lock(pool_name, project, CUSTOM.lock_key(name)):
                pool, vol = await self.volumes.load(pool_name, project, name)
                if vol.content_type not in (Content.FILESYSTEM, Content.BLOCK):
                    raise InvalidRequest(f"a {vol.content_type} volume is not given to instances")
                doc, tag = await _instance(client, instance, instance_project, where)
                vm = doc.get("type") == "virtual-machine"
                if not path.startswith("/") and not (vm and vol.content_type == Content.BLOCK):
                    raise InvalidRequest("give the absolute path the volume takes in the instance")
                async with self.db.read() as conn:
                    rows = await at.list_attachments(conn, volume_id=vol.id)
                self._may_join(name, vol, rows)
                taken = [
                    r
                    for r in rows
                    if r.server_uuid == self.server_uuid
                    and (r.instance_project, r.instance) == (instance_project, instance)
                ]
                if taken:
                    raise Conflict(
                        f"storage volume {name!r} is attached to instance {instance!r} already "
                        f"(device {taken[0].device!r})"
                    )
                runtime = await self.pools.runtime(pool)
                async with Reverter() as revert:
                    disk = await self._instance_disk(
                        runtime, pool_name, vol, doc, rows, path, vm, revert
                    )
                    device = device or name
                    given = disk if arrived is None else {**arrived, **disk}
                    try:
                        await client.set_device(
                            instance,
                            instance_project,
                            device,
                            given,
                            new=arrived is None,
                            known=(doc, tag),
                        )
                    except LxdError as exc:
                        raise _lxd_error(
                            exc, f"cannot give {name!r} to instance {instance!r}"
                        ) from None
                    revert.add(
                        functools.partial(
                            self._device_back, client, instance, instance_project, device, arrived
                        ),
                        f"device {device} of instance {instance}",
                    )
                    async with self.db.write() as conn:
                        row = await at.add(
                            conn,
                            vol.id,
                            self.server_uuid,
                            disk["source"],
                            instance=instance,
                            instance_project=instance_project,
                            device=device,
                            socket=str(where),
                        )
                    revert.success()
                log.info(
                    "volume %s/%s given to instance %s as device %s",
                    pool_name,
                    name,
                    instance,
                    device,
                )
                self._follow(where)
                return _view(pool_name, vol, row)
        finally:
            await client.close()

    async def _instance_disk(
        self,
        runtime: PoolDriver,
        pool_name: str,
        vol: st.Volume,
        doc: dict[str, object],
        rows: list[at.Attachment],
        path: str,
        vm: bool,
        revert: Reverter,
    ) -> dict[str, str]:
        """Make the volume ready for the instance on this host: the device's config."""
        array_id = array_of(vol)
        if vol.content_type == Content.BLOCK:
            held = await runtime.volumes.hold(array_id, shared=shared(vol))
            revert.add(lambda: runtime.volumes.let_go(array_id), f"attachment of {vol.name}")
            # LXD takes device nodes under /dev only: the stable link, where it is there
            # (the host's by-id directory), else the node it leads to.
            source = str(held) if held.is_relative_to("/dev") else str(held.resolve())
            if vm:
                return {"type": "disk", "source": source}
            return {"type": "unix-block", "source": source, "path": path}
        stable = self.volumes.mount_path(pool_name, vol.project, vol.name)
        if not is_mounted(stable):
            await runtime.volumes.mount(spec_of(vol.content_type, vol.config), array_id, stable)
            revert.add(lambda: runtime.volumes.unmount(array_id, stable), f"mount of {vol.name}")
        disk = {"type": "disk", "source": str(stable), "path": path}
        config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        assert isinstance(config, dict)  # noqa: S101 - narrowed above
        if vm or str(config.get("security.privileged", "")).lower() == "true":
            return disk
        if vol.config.get("security.shifted") == "true":
            return {**disk, "shift": "true"}
        if vol.config.get("security.unmapped") == "true":
            return disk
        await self._shift(vol, stable, _idmap_of(config), rows, revert)
        return disk

    @staticmethod
    async def _device_back(
        client: LxdClient,
        instance: str,
        project: str,
        device: str,
        was: dict[str, str] | None,
    ) -> None:
        """An instance's device as it was before a failed attach: none, or ``was``."""
        if was is None:
            await client.remove_device(instance, project, device)
        else:
            await client.set_device(instance, project, device, was)

    async def _shift(
        self,
        vol: st.Volume,
        root: Path,
        target: Idmap | None,
        rows: list[at.Attachment],
        revert: Reverter | None = None,
    ) -> None:
        """Shift the volume's files on disk to ``target``, the container's map, and
        record it (``volatile.idmap.last``); refused while another instance uses the
        volume under another map. ``revert`` shifts them back if a later step fails."""
        last_text = vol.config.get("volatile.idmap.last", "")
        last = Idmap.parse(last_text) if last_text else None
        if last == target:
            return
        if any(r.instance for r in rows):
            raise Conflict(
                f"storage volume {vol.name!r} is shifted for another instance's ID map: "
                "the two instances' maps differ"
            )
        changed = await asyncio.to_thread(shift_tree, root, last, target)
        config = {k: v for k, v in vol.config.items() if k != "volatile.idmap.last"}
        if target is not None:
            config["volatile.idmap.last"] = target.to_json()
        if revert is not None:

            async def back() -> None:
                await asyncio.to_thread(shift_tree, root, target, last)
                async with self.db.write() as conn:
                    await st.update_volume(conn, vol.id, config=vol.config)

            revert.add(back, f"shift of {vol.name}'s files")
        async with self.db.write() as conn:
            await st.update_volume(conn, vol.id, config=config)
        log.info("volume %s: %d file(s) shifted to the instance's ID map", vol.name, changed)

    async def detach_instance(
        self,
        pool_name: str,
        name: str,
        *,
        project: str = "default",
        instance: str,
        instance_project: str = "default",
        only_stopped: bool = False,
    ) -> None:
        """Take the volume from the instance (its device removed, if it is still
        there) and let go of it on this host once nothing else here uses it.
        ``only_stopped``: refused (Conflict) while the instance runs (the volume is
        wanted by a copy of it on another host)."""
        async with self.volumes.lock(pool_name, project, CUSTOM.lock_key(name)):
            pool, vol = await self.volumes.load(pool_name, project, name)
            async with self.db.read() as conn:
                rows = await at.list_attachments(
                    conn, volume_id=vol.id, server_uuid=self.server_uuid
                )
            row = next(
                (
                    r
                    for r in rows
                    if (r.instance_project, r.instance) == (instance_project, instance)
                ),
                None,
            )
            if row is None:
                if only_stopped:
                    return  # its instance let go of it meanwhile (deleted at a move's end)
                raise NotFound(f"storage volume {name!r} is not attached to instance {instance!r}")
            client = LxdClient(Path(row.socket))
            try:
                if only_stopped:
                    await _refuse_running(client, name, instance, instance_project)
                await client.remove_device(instance, instance_project, row.device)
            except LxdError as exc:
                if exc.status != 404:  # an instance that is gone has no device to remove
                    raise _lxd_error(
                        exc, f"cannot take {name!r} from instance {instance!r}"
                    ) from None
            finally:
                await client.close()
            await self._release(await self.pools.runtime(pool), pool_name, vol, row, rows)

    async def _release(
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
        await self._stop_using(runtime, pool_name, vol, row, last=last)
        async with self.db.write() as conn:
            await at.remove(conn, row.id)
        user = f"instance {row.instance}" if row.instance else "this host"
        log.info("volume %s/%s released by %s", pool_name, vol.name, user)

    # --- following the instances --------------------------------------------------------

    def _follow(self, socket: Path) -> None:
        """Follow the lifecycle events of the daemon at ``socket`` (once per daemon)."""
        key = str(socket)
        task = self._followers.get(key)
        if task is None or task.done():
            self._followers[key] = asyncio.create_task(self._following(socket))

    def watch(self, socket: Path) -> None:
        """Follow this host's daemon at ``socket`` for as long as lxflexd runs (in a
        cluster): an instance that arrives from another member's host (moved or copied
        there by migration) with a device of one of the pool's volumes gets the volume
        here, moved from that host (see :meth:`take_in`)."""
        self._watched.add(str(socket))
        self._follow(socket)

    async def _following(self, socket: Path) -> None:
        """Release what an instance no longer uses: its device removed, or the
        instance deleted; and, for a watched daemon, take in the volumes of instances
        that arrive. Each (re)connection first catches up on what was missed."""
        watched = str(socket) in self._watched
        while True:
            client = LxdClient(socket)
            try:
                if not await self.reconcile(socket) and not watched:
                    return  # nothing of this daemon's is attached any more
                if watched:  # arrivals missed
                    others = await self._elsewhere()
                    for doc in await client.instances():
                        if _came_with(doc, others):
                            self._arrival(socket, str(doc.get("name")), str(doc.get("project")))
                async for event in client.events():
                    meta = event.get("metadata") or {}
                    action = str(meta.get("action", ""))
                    if action == "instance-renamed":
                        await self._renamed(socket, event)
                    if action == "instance-created" and watched:
                        project = str(event.get("project") or "default")
                        self._arrival(socket, _named(meta), project)
                    if action.startswith("instance-"):
                        await self.reconcile(socket)
            except Exception as exc:
                log.warning("following LXD at %s: %s", socket, exc)
            finally:
                await client.close()
            await asyncio.sleep(2.0)  # the daemon restarts, or was away

    def _arrival(self, socket: Path, instance: str, project: str) -> None:
        task = asyncio.create_task(self._arrived(socket, instance, project or "default"))
        self._arrivals.add(task)
        task.add_done_callback(self._arrivals.discard)

    async def _arrived(self, socket: Path, instance: str, project: str) -> None:
        try:
            await self.take_in(socket, instance, project)
        except Exception as exc:
            log.warning("instance %s arrived, its volumes not taken in: %s", instance, exc)

    async def take_in(self, socket: Path, instance: str, project: str = "default") -> int:
        """Give an instance of the daemon at ``socket`` the volumes it came with from
        another host: each device of the instance that is a volume's use there (the same
        device, its source there) is pointed at the volume on this host, moved here
        (that host gives it up, refused while its instance runs there; an Offline member
        is fenced). The uses are read as soon as the instance is announced (its host
        forgets them once it deletes its own, at the end of a move), the volumes moved
        once its daemon is done making it. Returns how many it was given."""
        client = LxdClient(socket)
        try:
            doc = await _instance_or_none(client, instance, project)
            came = _came_with(doc, await self._elsewhere(), project) if doc else []
            if not came:
                return 0
            await client.settled(instance, project)
            doc = await _instance_or_none(client, instance, project)
        finally:
            await client.close()
        devices = (doc or {}).get("devices") or {}
        given = 0
        for device, config, use in came:
            if devices.get(device, {}).get("source") != use.path:
                continue  # changed meanwhile: not ours to point
            async with self.db.read() as conn:
                found = await st.get_volume_by_id(conn, use.volume_id)
            if found is not None:
                await self._take_in(socket, instance, project, device, config, *found)
                given += 1
        return given

    async def _take_in(
        self,
        socket: Path,
        instance: str,
        project: str,
        device: str,
        config: dict[str, Any],
        pool_name: str,
        vol: st.Volume,
    ) -> None:
        give = functools.partial(
            self.attach_instance,
            pool_name,
            vol.name,
            project=vol.project,
            instance=instance,
            instance_project=project,
            path=str(config.get("path", "")),
            device=device,
            socket=socket,
            arrived={str(k): str(v) for k, v in config.items()},
        )
        for attempt in range(4):
            try:
                await give()
                break
            except AttachedElsewhere as exc:
                if self.mover is None:
                    raise
                try:
                    await self.mover(pool_name, vol.name, vol.project, exc.holders)
                except Unavailable:
                    if attempt == 3:
                        raise
                    await asyncio.sleep(2.0**attempt)  # its host may be deleting it
        else:
            raise Unavailable(f"storage volume {vol.name!r} stays in use on another host")
        log.info(
            "volume %s/%s moved here with instance %s (device %s)",
            pool_name,
            vol.name,
            instance,
            device,
        )

    async def _elsewhere(self) -> list[at.Attachment]:
        """The instance attachments of the other hosts."""
        async with self.db.read() as conn:
            rows = await at.list_attachments(conn)
        return [r for r in rows if r.instance and r.server_uuid != self.server_uuid]

    async def refuse_running(
        self, pool_name: str, name: str, *, project: str, instance: str, instance_project: str
    ) -> None:
        """Conflict while the instance of this host that has the volume runs."""
        _, vol = await self.volumes.load(pool_name, project, name)
        async with self.db.read() as conn:
            rows = await at.list_attachments(conn, volume_id=vol.id, server_uuid=self.server_uuid)
        for row in rows:
            if (row.instance_project, row.instance) == (instance_project, instance):
                client = LxdClient(Path(row.socket))
                try:
                    await _refuse_running(client, name, instance, instance_project)
                except LxdError as exc:
                    raise _lxd_error(exc, f"cannot read instance {instance!r}") from None
                finally:
                    await client.close()

    async def _renamed(self, socket: Path, event: dict[str, object]) -> None:
        meta = event.get("metadata")
        if not isinstance(meta, dict):
            return
        context = meta.get("context") if isinstance(meta.get("context"), dict) else {}
        old = context.get("old_name") if isinstance(context, dict) else None
        new = _named(meta)
        if isinstance(old, str) and old and new:
            project = str(event.get("project") or "default")
            async with self.db.write() as conn:
                await at.rename_instance(conn, self.server_uuid, str(socket), project, old, new)

    async def _reshift(self, pool_name: str, vol: st.Volume) -> None:
        """After a restore under a stopped instance (the volume lock held): its files
        shifted to that instance's map again, as the snapshot's may not be."""
        async with self.db.read() as conn:
            rows = await at.list_attachments(conn, volume_id=vol.id, server_uuid=self.server_uuid)
        row = next((r for r in rows if r.instance), None)
        if row is None or vol.content_type != Content.FILESYSTEM:
            return
        if "true" in (vol.config.get("security.shifted"), vol.config.get("security.unmapped")):
            return
        client = LxdClient(Path(row.socket))
        try:
            doc, _ = await client.instance(row.instance, row.instance_project)
        finally:
            await client.close()
        config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
        assert isinstance(config, dict)  # noqa: S101 - narrowed above
        privileged = str(config.get("security.privileged", "")).lower() == "true"
        if privileged or doc.get("type") == "virtual-machine":
            return
        stable = self.volumes.mount_path(pool_name, vol.project, vol.name)
        await self._shift(vol, stable, _idmap_of(config), [])

    async def _rename_uses(
        self, pool_name: str, vol: st.Volume, new_name: str, revert: Reverter
    ) -> None:
        """Before a volume in use by stopped instances of this host is renamed (its lock
        held): its mount moved to the new name's path (bound there, then unmounted from
        the old one: the volume stays held), each instance's device pointed there, the
        rows following; each step undone by ``revert``. A block volume's device has no
        name in it: nothing moves."""
        if vol.content_type != Content.FILESYSTEM:
            return
        pool = await self.pools.record(pool_name)
        fs = (await self.pools.runtime(pool)).volumes.fs
        old = self.volumes.mount_path(pool_name, vol.project, vol.name)
        new = self.volumes.mount_path(pool_name, vol.project, new_name)
        if not is_mounted(old):
            return  # no use here has it mounted (block uses, or another host's)
        await fs.bind(old, new)
        revert.add(lambda: fs.unmount(new), f"mount of {vol.name} at {new}")
        async with self.db.read() as conn:
            rows = await at.list_attachments(conn, volume_id=vol.id, server_uuid=self.server_uuid)
        for row in (r for r in rows if r.path == str(old)):
            client = LxdClient(Path(row.socket))
            try:
                doc, tag = await client.instance(row.instance, row.instance_project)
                device = dict((doc.get("devices") or {}).get(row.device) or {})
                await client.set_device(
                    row.instance,
                    row.instance_project,
                    row.device,
                    {**device, "source": str(new)},
                    known=(doc, tag),
                )
            except LxdError as exc:
                raise _lxd_error(exc, f"cannot point {row.instance!r} at {new_name!r}") from None
            finally:
                await client.close()
            # Undone while the old mount is back (LXD checks a source is there).
            revert.add(
                functools.partial(self._point, row, device),
                f"device {row.device} of instance {row.instance}",
            )
            async with self.db.write() as conn:
                await at.move_path(conn, row.id, str(new))
        await fs.unmount(old)
        revert.add(lambda: fs.bind(new, old), f"mount of {vol.name} at {old}")
        with contextlib.suppress(OSError):
            old.rmdir()  # nothing may take the empty directory for the volume

    async def _point(self, row: at.Attachment, device: dict[str, Any]) -> None:
        """Put an instance's device and its row back as they were (a rename undone)."""
        client = LxdClient(Path(row.socket))
        try:
            await client.set_device(row.instance, row.instance_project, row.device, device)
        finally:
            await client.close()
        async with self.db.write() as conn:
            await at.move_path(conn, row.id, row.path)

    async def stopped(self, rows: list[at.Attachment]) -> bool:
        """Whether every instance of these uses is on this host and stopped (its LXD
        says so), so that its volume may be restored under it."""
        for row in rows:
            if row.server_uuid != self.server_uuid or not row.instance:
                return False
            client = LxdClient(Path(row.socket))
            try:
                doc, _ = await client.instance(row.instance, row.instance_project)
            except LxdError:
                return False
            finally:
                await client.close()
            if doc.get("status") != "Stopped":
                return False
        return True

    async def reconcile(self, socket: Path) -> int:
        """Check each instance attachment of this host through the daemon at ``socket``:
        one whose instance is gone or no longer has its device is released. Returns how
        many attachments are left to follow."""
        async with self.db.read() as conn:
            rows = [
                r
                for r in await at.list_attachments(conn, server_uuid=self.server_uuid)
                if r.instance and r.socket == str(socket)
            ]
        client = LxdClient(socket)
        left = 0
        try:
            for row in rows:
                if await _has(client, row) is not False or not await self._released(client, row):
                    left += 1
        finally:
            await client.close()
        return left

    async def _released(self, client: LxdClient, row: at.Attachment) -> bool:
        """Release a use whose instance no longer has it, judged again under the
        volume's lock (a rename or a move may be pointing the device elsewhere
        meanwhile). Whether it is released."""
        async with self.db.read() as conn:
            found = await st.get_volume_by_id(conn, row.volume_id)
        if found is None:
            return True
        pool_name, vol = found
        async with self.volumes.lock(pool_name, vol.project, CUSTOM.lock_key(vol.name)):
            async with self.db.read() as conn:
                now = await st.get_volume_by_id(conn, row.volume_id)
                rows = await at.list_attachments(
                    conn, volume_id=vol.id, server_uuid=self.server_uuid
                )
            current = next((r for r in rows if r.id == row.id), None)
            if now is None or current is None:
                return True
            if now[1].name != vol.name:
                return False  # renamed meanwhile (its lock is another): judged next time
            if await _has(client, current) is not False:
                return False
            runtime = await self.pools.runtime(await self.pools.record(pool_name))
            await self._release(runtime, pool_name, vol, current, rows)
        return True

    async def close(self) -> None:
        """Stop following the instances' daemons."""
        tasks = [*self._followers.values(), *self._arrivals]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._followers.clear()

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
                    self._follow(Path(row.socket))  # what changed while lxflexd was down
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


def _found_socket() -> Path:
    try:
        return find_socket()
    except LxdError as exc:
        raise Unavailable(str(exc)) from None


async def _instance(
    client: LxdClient, name: str, project: str, socket: Path
) -> tuple[dict[str, Any], str]:
    try:
        return await client.instance(name, project)
    except LxdError as exc:
        if exc.status == 404:
            raise NotFound(f"instance {name!r} not found in the LXD at {socket}") from None
        raise _lxd_error(exc, f"cannot read instance {name!r}") from None


def _lxd_error(exc: LxdError, doing: str) -> Exception:
    if exc.status == 0:
        return Unavailable(f"{doing}: {exc}")
    if exc.status == 409:
        return Conflict(f"{doing}: {exc}")
    return InvalidRequest(f"{doing}: LXD said: {exc}")


def _idmap_of(config: dict[str, object]) -> Idmap | None:
    """The ID map an unprivileged container runs with (or will, once started)."""
    for key in ("volatile.idmap.current", "volatile.idmap.next", "volatile.last_state.idmap"):
        text = config.get(key)
        if isinstance(text, str) and text:
            return Idmap.parse(text)
    return None


def _came_with(
    doc: dict[str, Any], elsewhere: list[at.Attachment], project: str | None = None
) -> list[tuple[str, dict[str, Any], at.Attachment]]:
    """The devices of an instance (LXD's document) that are uses of a volume on another
    host (``elsewhere``): the same device name and source, in the same project (the
    instance came from there): each with its config and that use."""
    project = project or str(doc.get("project") or "default")
    found = []
    for device, config in (doc.get("devices") or {}).items():
        if not isinstance(config, dict):
            continue
        for row in elsewhere:
            if (row.instance_project, row.device, row.path) == (
                project,
                device,
                config.get("source"),
            ):
                found.append((str(device), config, row))
                break
    return found


def _named(meta: dict[str, Any]) -> str:
    """The instance a lifecycle event is about (the last part of its ``source``)."""
    return unquote(str(meta.get("source", "")).rpartition("/")[2].partition("?")[0])


async def _instance_or_none(client: LxdClient, name: str, project: str) -> dict[str, Any] | None:
    try:
        doc, _ = await client.instance(name, project)
    except LxdError as exc:
        if exc.status == 404:
            return None  # gone (a migration that failed; deleted)
        raise
    return doc


async def _has(client: LxdClient, row: at.Attachment) -> bool | None:
    """Whether the instance of a use has its device still (as given: the source is the
    use's path); None when its daemon does not answer (judged when it does)."""
    try:
        doc, _ = await client.instance(row.instance, row.instance_project)
    except LxdError as exc:
        return False if exc.status == 404 else None
    device = (doc.get("devices") or {}).get(row.device) or {}
    return bool(device.get("source") == row.path)


async def _refuse_running(client: LxdClient, volume: str, instance: str, project: str) -> None:
    doc = await _instance_or_none(client, instance, project)
    if doc is not None and doc.get("status") != "Stopped":
        raise Conflict(
            f"storage volume {volume!r} is in use by instance {instance!r}, which is "
            f"{str(doc.get('status', 'running')).lower()} on its host: stop it there first"
        )
