"""Volumes given to the instances of this host's LXD or Incus: a ``disk`` device whose
source is the volume's mount (its files shifted on disk to an unprivileged container's
ID map, as LXD does for its own custom volumes) or a block device.

The daemon's lifecycle events are followed: a device removed or an instance deleted
releases the volume, a renamed instance keeps it; in a cluster, an instance that arrives
from another member's host with one of its uses there gets the volume here
(:meth:`InstanceUses.take_in`). The rules for volumes in use that need the instances'
state (a restore or a rename under stopped instances) are answered here for
:class:`~.volumes.VolumeService`. Built on :class:`~.attachments.AttachmentService`'s
primitives: one host at a time, one release path.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ..driver import Conflict, Content, InvalidRequest, NotFound, PoolDriver, Unavailable
from ..host.fs import is_mounted
from ..host.idmap import Idmap, shift_tree
from ..host.lxd import LxdClient, LxdError, find_socket
from ..revert import Reverter
from ..state import attachments as at
from ..state import store as st
from .kinds import CUSTOM
from .specs import spec_of
from .uses import AttachedElsewhere, AttachmentView, Mover, shared, use_view
from .views import array_of

if TYPE_CHECKING:
    from .attachments import AttachmentService

__all__ = ["InstanceUses"]

log = logging.getLogger("lxflex.service")


class InstanceUses:
    """The uses of volumes by the instances of this host's LXD or Incus daemons."""

    def __init__(self, host: AttachmentService) -> None:
        self.host = host
        self.db, self.pools, self.volumes = host.db, host.pools, host.volumes
        self.server_uuid = host.server_uuid
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._watched: set[str] = set()  # this host's daemons, followed all along
        self._arrivals: set[asyncio.Task[None]] = set()
        # Set by the API in a cluster: takes a volume from its uses on other hosts (their
        # members asked to give them up) for an instance that arrived here.
        self.mover: Mover | None = None
        self.volumes.instances_stopped = self.stopped
        self.volumes.reshift = self._reshift
        self.volumes.rename_uses = self._rename_uses
        self.volumes.move_uses = self._move_uses

    async def attach(
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
                self.host.may_join(name, vol, rows)
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
                self.follow(where)
                return use_view(pool_name, vol, row)
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
        source = await self._ready(runtime, pool_name, vol, revert)
        if vol.content_type == Content.BLOCK:
            if vm:
                return {"type": "disk", "source": source}
            return {"type": "unix-block", "source": source, "path": path}
        stable = Path(source)
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

    async def _ready(
        self, runtime: PoolDriver, pool_name: str, vol: st.Volume, revert: Reverter
    ) -> str:
        """The volume usable on this host for one more use (undone by ``revert``): the
        path of its mount, or of its block device."""
        array_id = array_of(vol)
        if vol.content_type == Content.BLOCK:
            held = await runtime.volumes.hold(array_id, shared=shared(vol))
            revert.add(lambda: runtime.volumes.let_go(array_id), f"attachment of {vol.name}")
            # LXD takes device nodes under /dev only: the stable link, where it is there
            # (the host's by-id directory), else the node it leads to.
            return str(held) if held.is_relative_to("/dev") else str(held.resolve())
        stable = self.volumes.mount_path(pool_name, vol.project, vol.name)
        if not is_mounted(stable):
            await runtime.volumes.mount(spec_of(vol.content_type, vol.config), array_id, stable)
            revert.add(lambda: runtime.volumes.unmount(array_id, stable), f"mount of {vol.name}")
        return str(stable)

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

    async def detach(
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
            await self.host.release(await self.pools.runtime(pool), pool_name, vol, row, rows)

    def follow(self, socket: Path) -> None:
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
        self.follow(socket)

    async def _following(self, socket: Path) -> None:
        """Release what an instance no longer uses: its device removed, or the
        instance deleted; and, for a watched daemon, take in the volumes of instances
        that arrive. Each (re)connection first catches up on what was missed."""
        watched = str(socket) in self._watched
        quiet = False  # said already that the daemon is away
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
                quiet = False  # it answers
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
                (log.debug if quiet else log.warning)("following LXD at %s: %s", socket, exc)
                quiet = True
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
            self.attach,
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
            # Undone while the old mount is back (LXD checks a source is there).
            await self._repoint(row, str(new), row.volume_id, revert)
        await fs.unmount(old)
        revert.add(lambda: fs.bind(new, old), f"mount of {vol.name} at {old}")
        with contextlib.suppress(OSError):
            old.rmdir()  # nothing may take the empty directory for the volume

    async def _repoint(
        self, row: at.Attachment, source: str, volume_id: int, revert: Reverter
    ) -> None:
        """Point a use's instance device at ``source``, its row following (at the volume
        ``volume_id``); ``revert`` puts both back."""
        client = LxdClient(Path(row.socket))
        try:
            doc, tag = await client.instance(row.instance, row.instance_project)
            device = dict((doc.get("devices") or {}).get(row.device) or {})
            await client.set_device(
                row.instance,
                row.instance_project,
                row.device,
                {**device, "source": source},
                known=(doc, tag),
            )
        except LxdError as exc:
            raise _lxd_error(exc, f"cannot point {row.instance!r} at {source}") from None
        finally:
            await client.close()
        revert.add(
            functools.partial(self._point, row, device),
            f"device {row.device} of instance {row.instance}",
        )
        async with self.db.write() as conn:
            await at.move_path(conn, row.id, source, volume_id=volume_id)

    async def _point(self, row: at.Attachment, device: dict[str, Any]) -> None:
        """Put an instance's device and its row back as they were (a rename or a move
        undone)."""
        client = LxdClient(Path(row.socket))
        try:
            await client.set_device(row.instance, row.instance_project, row.device, device)
        finally:
            await client.close()
        async with self.db.write() as conn:
            await at.move_path(conn, row.id, row.path, volume_id=row.volume_id)

    async def _move_uses(
        self, pool_name: str, vol: st.Volume, target_pool: str, target: str
    ) -> None:
        """A volume in use by stopped instances of this host was copied to another pool
        (its move), and is about to be deleted: its uses move to the copy (made ready
        here, each instance's device pointed at it, the rows following), then the
        source is let go of. A failure puts every use back on the source."""
        async with (
            self.volumes.lock(pool_name, vol.project, CUSTOM.lock_key(vol.name)),
            self.volumes.lock(target_pool, vol.project, CUSTOM.lock_key(target)),
        ):
            async with self.db.read() as conn:
                rows = await at.list_attachments(
                    conn, volume_id=vol.id, server_uuid=self.server_uuid
                )
            if not rows:
                return
            pool, copy = await self.volumes.load(target_pool, vol.project, target)
            runtime = await self.pools.runtime(pool)
            async with Reverter() as revert:
                for row in rows:
                    source = await self._ready(runtime, target_pool, copy, revert)
                    await self._repoint(row, source, copy.id, revert)
                revert.success()
            old = await self.pools.runtime(await self.pools.record(pool_name))
            for row in rows:  # each use held it (a block volume), or shares its mount
                await self.host.stop_using(old, pool_name, vol, row, last=row is rows[-1])

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
            await self.host.release(runtime, pool_name, vol, current, rows)
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
