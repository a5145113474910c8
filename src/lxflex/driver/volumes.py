"""Volume operations of one PowerFlex pool: the driver proper.

Theory of operation: a :class:`PowerFlexVolumes` holds the pool's client, its resolved
settings, the host attacher and the filesystem tools. Each operation takes the array IDs
the caller keeps in its state (no lookup by name) and a :class:`VolumeSpec` describing the
volume. Every multi-step operation undoes its finished steps when a later one fails, so a
failure leaves no array volume, mapping or mount behind; a cleanup that fails is logged
and kept as a :class:`~.leftovers.Leftover` for repair, and never hides the original
error. Work that is done is not failed by a cleanup after it (an unmap after a copy).

Copies are :mod:`lxflex.driver.copies`; the vocabulary shared with it (specs, plans, the
wrapping of lower errors) is :mod:`lxflex.driver.spec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from ..host.copy import copy_in_thread
from ..host.fs import Filesystems, is_mounted
from ..host.images import DiskImages, ImageError
from ..host.runner import CommandError
from ..host.stream import StreamError, StreamSink, stream_out
from ..powerflex import (
    CapacityError,
    NotMappedError,
    PowerFlexClient,
    PowerFlexError,
    RemoveMode,
    SnapshotDef,
    VolumeNotFoundError,
    version_tuple,
)
from ..powerflex import Volume as ArrayVolume
from .attach import Attacher
from .copies import copy_volume
from .errors import Conflict, DriverError, InsufficientSpace, InvalidRequest
from .leftovers import Leftover, Leftovers, LoggedLeftovers, keep_quietly
from .naming import VolumeType, parse_name, volume_name
from .pool import ResolvedPool
from .refresh import RefreshPlan, refresh_volume
from .spec import CopyPlan, CopyResult, Progress, VolumeSpec, wrap
from .units import format_size, round_up

__all__ = ["CopyPlan", "CopyResult", "PowerFlexVolumes", "Progress", "VolumeSpec"]

log = logging.getLogger("lxflex.driver")


class PowerFlexVolumes:
    def __init__(
        self,
        client: PowerFlexClient,
        pool: ResolvedPool,
        attacher: Attacher,
        fs: Filesystems,
        *,
        granularity: int,
        clone_copy: bool = True,
        scratch: Path,
        leftovers: Leftovers | None = None,
    ) -> None:
        self.client = client
        self.pool = pool
        self.attacher = attacher
        self.fs = fs
        self.granularity = granularity
        self.clone_copy = clone_copy
        self.scratch = scratch  # temporary mount points for grow/copy
        self.leftovers: Leftovers = leftovers or LoggedLeftovers()

    @property
    def gen2(self) -> bool:
        """PowerFlex 5: createSnapshot, thin clones and refresh; 1 GiB steps."""
        return version_tuple(self.pool.version)[0] >= 5

    @property
    def snapshot_limit(self) -> int:
        return 1022 if self.gen2 else 126

    def rounded(self, size: int) -> int:
        return round_up(size, self.granularity)

    def array_name(self, spec: VolumeSpec, *, snapshot: bool = False) -> str:
        return volume_name(spec.volume_type, spec.content, spec.uuid, snapshot=snapshot)

    # --- create and delete ------------------------------------------------------------

    async def new_volume(self, spec: VolumeSpec, size: int) -> str:
        """An empty array volume for ``spec`` of ``size`` (rounded up); its ID."""
        try:
            return await self.client.create_volume(
                self.pool.pool_id, self.rounded(size), self.array_name(spec), thin=spec.thin
            )
        except CapacityError as exc:
            raise await self.out_of_space("create volume", exc, self.rounded(size)) from exc
        except PowerFlexError as exc:
            raise wrap("create volume", exc) from exc

    async def out_of_space(
        self, action: str, exc: CapacityError, wanted: int | None = None
    ) -> InsufficientSpace:
        """The error for an array that refused for lack of space, with the pool's figures."""
        text = str(wrap(action, exc))
        try:
            used, total = await self.usage()
        except DriverError:
            return InsufficientSpace(text)
        free = max(total - used, 0)
        asked = f"; asked for {format_size(wanted)}" if wanted else ""
        return InsufficientSpace(f"{text}: {format_size(free)} free of {format_size(total)}{asked}")

    @asynccontextmanager
    async def _filling(self, spec: VolumeSpec, action: str) -> AsyncIterator[str]:
        """A new array volume for ``spec`` to fill in the block; removed again if the
        block fails (the error then says what ``action`` was under way)."""
        vol_id = await self.new_volume(spec, spec.size)
        try:
            yield vol_id
        except BaseException as exc:
            await self.remove_quietly(vol_id)
            if isinstance(exc, Exception):
                raise wrap(action, exc) from exc
            raise

    async def create(self, spec: VolumeSpec) -> str:
        """Create the volume (and its filesystem); return its array ID."""
        async with self._filling(spec, "make filesystem") as vol_id:
            if spec.is_filesystem:
                async with self.attached(vol_id) as device:
                    await self.fs.make(device, spec.filesystem)
        return vol_id

    async def create_filled(self, spec: VolumeSpec, fill: Callable[[Path], Awaitable[None]]) -> str:
        """A new filesystem volume whose content ``fill`` writes into the directory where
        it is mounted for the call (on this host, then unmounted). Return its array ID."""
        async with self._filling(spec, "fill volume") as vol_id, self.attached(vol_id) as device:
            await self.fs.make(device, spec.filesystem)
            target = self.scratch / f"fill-{vol_id}"
            await self.fs.mount(device, target, spec.filesystem, spec.mount_options)
            try:
                await fill(target)
            finally:
                await self.fs.unmount(target)
                with contextlib.suppress(OSError):
                    target.rmdir()
        return vol_id

    async def create_from_image(
        self, spec: VolumeSpec, image: Path, progress: Progress | None = None
    ) -> str:
        """Create a block (or ISO) volume holding the bytes of ``image``; zeros are not
        written, so a thin volume allocates what the image holds. Return its array ID."""
        if spec.is_filesystem:
            raise InvalidRequest("an image fills a block or ISO volume, not a filesystem")
        if image.stat().st_size > self.rounded(spec.size):
            raise InvalidRequest("the image is larger than the volume")
        async with (
            self._filling(spec, "write image") as vol_id,
            self.attached(vol_id) as device,
        ):
            await copy_in_thread(image, device, target_zeroed=True, progress=progress)
        return vol_id

    async def create_from_disk_image(
        self, spec: VolumeSpec, image: Path, progress: Progress | None = None
    ) -> str:
        """A block volume holding a raw or qcow2 disk image, at least as large as the
        disk the image describes (rounded up to the granularity). Return its ID."""
        images = DiskImages(self.fs.runner)
        try:
            raw, size = await images.raw(image, self.scratch / f"image-{uuid.uuid4().hex}")
        except ImageError as exc:
            raise InvalidRequest(str(exc)) from exc
        except CommandError as exc:
            raise InvalidRequest(f"not a usable disk image: {exc}") from exc
        try:
            sized = dataclasses.replace(spec, size=max(spec.size, size))
            vol_id = await self.create_from_image(sized, raw, progress)
            if self.rounded(sized.size) > size:
                try:
                    async with self.attached(vol_id) as device:
                        await images.fit_partition_table(device)
                except BaseException as exc:
                    await self.remove_quietly(vol_id)
                    if isinstance(exc, Exception):
                        raise wrap("move the partition table's backup header", exc) from exc
                    raise
            return vol_id
        finally:
            if raw != image:
                raw.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    raw.parent.rmdir()

    async def stream_out(
        self, vol_id: str, progress: Progress | None = None, *, filesystem: str | None = None
    ) -> AsyncIterator[bytes]:
        """The volume's content as a sparse device stream (:mod:`lxflex.host.stream`), for
        a copy to another server; the volume is attached while the stream is read. Given
        the ``filesystem`` it holds, a clean one streams only the blocks it uses (as a
        copy does; see :mod:`lxflex.driver.copies`)."""
        loop = asyncio.get_running_loop()
        frames: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=8)
        stop = threading.Event()
        async with self.attached(vol_id) as device:
            ranges = None
            if filesystem is not None:
                ranges = await self.fs.used_ranges(device, filesystem)

            def produce() -> None:
                try:
                    for frame in stream_out(device, progress, ranges):
                        if stop.is_set():
                            return
                        asyncio.run_coroutine_threadsafe(frames.put(frame), loop).result()
                    asyncio.run_coroutine_threadsafe(frames.put(None), loop).result()
                except BaseException as exc:  # handed to the reader
                    if not stop.is_set():
                        asyncio.run_coroutine_threadsafe(frames.put(exc), loop).result()

            reader = asyncio.create_task(asyncio.to_thread(produce))
            try:
                while (frame := await frames.get()) is not None:
                    if isinstance(frame, BaseException):
                        raise wrap("stream", frame) if isinstance(frame, Exception) else frame
                    yield frame
            finally:
                stop.set()
                while not frames.empty():  # unblock the producer
                    frames.get_nowait()
                with contextlib.suppress(BaseException):
                    await reader

    async def stream_in(
        self, spec: VolumeSpec, stream: AsyncIterator[bytes], progress: Progress | None = None
    ) -> str:
        """A new volume holding the content a device stream carries; its array ID. A
        damaged or cut stream leaves nothing."""
        async with self._filling(spec, "stream") as vol_id, self.attached(vol_id) as device:
            sink = StreamSink(device, target_zeroed=True, progress=progress)
            try:
                async for piece in stream:
                    await asyncio.to_thread(sink.feed, piece)
                await asyncio.to_thread(sink.finish)
            except StreamError as exc:
                raise InvalidRequest(f"the copy stream is not usable: {exc}") from exc
            finally:
                sink.close()
        return vol_id

    async def delete(self, vol_id: str) -> None:
        """Unmap from every host and remove. A volume already gone is not an error.

        The caller deletes the volume's snapshots first (each with this method).
        """
        await self._remove(vol_id, [vol_id], RemoveMode.ONLY_ME)

    async def _remove(self, vol_id: str, members: Sequence[str], mode: RemoveMode) -> None:
        """Unmap ``members`` from every host, then remove ``vol_id`` in ``mode`` (which
        takes the members with it); members already gone are not an error."""
        for member in members:
            with contextlib.suppress(Exception):
                if self.attacher.attached(member):
                    await self.attacher.detach(member, force=True)
        try:
            for member in members:
                with contextlib.suppress(NotMappedError, VolumeNotFoundError):
                    await self.client.unmap_host(member)
            await self.client.remove_volume(vol_id, mode)
        except VolumeNotFoundError:
            return
        except PowerFlexError as exc:
            raise wrap("delete volume", exc) from exc
        finally:
            await self.attacher.disconnect_if_unused()

    async def delete_with_snapshots(self, vol_id: str | None, snapshot_ids: Sequence[str]) -> None:
        """Remove a volume (None: one never made) and its snapshots. When nothing else
        descends from the volume in its VTree (no clone made from it), this is one array
        call, all or nothing; otherwise the snapshots go one by one, newest first, then
        the volume, and a failure leaves the volume with the snapshots not yet removed."""
        if vol_id is None:
            descendants = None
        else:
            try:
                vol = await self.client.volume(vol_id)
                descendants = _descendants(vol_id, await self.client.vtree_volumes(vol.vtree_id))
            except VolumeNotFoundError:
                descendants = None  # gone already
            except PowerFlexError as exc:
                raise wrap("delete volume", exc) from exc
        rest = list(snapshot_ids)  # removed one by one, newest first
        if vol_id is not None and descendants is not None:
            if set(descendants) <= set(snapshot_ids):
                members = [vol_id, *descendants]
                await self._remove(vol_id, members, RemoveMode.INCLUDING_DESCENDANTS)
                rest = [i for i in rest if i not in members]
            else:
                rest.insert(0, vol_id)  # the volume goes last
        for array_id in reversed(rest):
            await self.delete(array_id)

    async def find(self, spec: VolumeSpec, *, snapshot: bool = False) -> str | None:
        """The array ID of the volume named after ``spec``, or None: how an operation cut
        short by a crash finds what it may have created before it recorded the ID."""
        return await self.lookup(self.array_name(spec, snapshot=snapshot))

    async def size_of(self, vol_id: str) -> int:
        """The array volume's size in bytes."""
        try:
            return (await self.client.volume(vol_id)).size_bytes
        except PowerFlexError as exc:
            raise wrap("read volume size", exc) from exc

    async def exists(self, vol_id: str) -> bool:
        """Whether the array still has the volume (a failure to ask counts as yes)."""
        try:
            await self.client.volume(vol_id)
        except VolumeNotFoundError:
            return False
        except PowerFlexError:
            return True
        return True

    async def lookup(self, name: str) -> str | None:
        """The array ID of the volume of this array name, or None."""
        try:
            return await self.client.volume_id(name)
        except VolumeNotFoundError:
            return None
        except PowerFlexError as exc:
            raise wrap("look up volume", exc) from exc

    async def listed(self) -> list[ArrayVolume]:
        """The array volumes of this storage pool named by this driver's scheme (which
        LXD's PowerFlex driver shares: not all of them need be ours)."""
        try:
            found = await self.client.pool_volumes(self.pool.pool_id)
        except PowerFlexError as exc:
            raise wrap("list volumes", exc) from exc
        return [v for v in found if v.name and parse_name(v.name) is not None]

    async def remove_quietly(self, vol_id: str) -> None:
        """Remove a volume as a cleanup: never raises; a removal that fails is logged
        and kept as a leftover, which repair removes later."""
        try:
            await self.delete(vol_id)
        except Exception as exc:
            log.warning("cleanup: cannot remove volume %s: %s", vol_id, exc)
            leftover = Leftover("volume", vol_id, reason=f"cleanup failed: {exc}")
            await keep_quietly(self.leftovers, leftover)

    # --- attach and mount -------------------------------------------------------------

    async def _attach(self, vol_id: str, *, shared: bool = False) -> Path:
        """The volume's device, made ready on this host; a failure of the gateway or
        the host is a driver error that says why (nothing of the attach is left)."""
        try:
            return await self.attacher.attach(vol_id, shared=shared)
        except (PowerFlexError, CommandError, TimeoutError, OSError) as exc:
            raise wrap("attach", exc) from exc

    async def hold(self, vol_id: str, *, shared: bool = False) -> Path:
        """Attach the volume to this host until :meth:`let_go` (an attachment that
        outlives the operation, such as a volume in use): its device. ``shared``: other
        hosts may hold it too."""
        return await self._attach(vol_id, shared=shared)

    async def let_go(self, vol_id: str) -> None:
        """Undo one :meth:`hold`: the volume is unmapped once nothing else holds it. A
        failed unmap raises (the hold is gone all the same)."""
        try:
            await self.attacher.detach(vol_id)
        except (PowerFlexError, CommandError, TimeoutError, OSError) as exc:
            raise wrap("detach", exc) from exc

    @asynccontextmanager
    async def attached(self, vol_id: str) -> AsyncIterator[Path]:
        """The volume's device for the duration of the block."""
        device = await self._attach(vol_id)
        try:
            yield device
        finally:
            await self.attacher.release(vol_id)

    async def mount(
        self, spec: VolumeSpec, vol_id: str, target: Path, *, read_only: bool = False
    ) -> None:
        if is_mounted(target):
            return
        device = await self._attach(vol_id)
        options = ",".join(o for o in (spec.mount_options, "ro" if read_only else "") if o)
        try:
            await self.fs.mount(device, target, spec.filesystem, options)
        except BaseException as exc:
            await self.attacher.release(vol_id)
            if isinstance(exc, Exception):
                raise wrap("mount", exc) from exc
            raise

    async def unmount(self, vol_id: str, target: Path) -> None:
        if is_mounted(target):
            try:
                await self.fs.unmount(target)
            except CommandError as exc:
                raise wrap("unmount", exc) from exc
            await self.attacher.release(vol_id)

    @asynccontextmanager
    async def _frozen(self, mounted_at: Path | None) -> AsyncIterator[None]:
        if mounted_at is None or not is_mounted(mounted_at):
            yield
            return
        await self.fs.freeze(mounted_at)
        try:
            yield
        finally:
            await self.fs.thaw(mounted_at)

    # --- snapshots and restore --------------------------------------------------------

    async def snapshot(
        self, spec: VolumeSpec, vol_id: str, snap_uuid: uuid.UUID, mounted_at: Path | None = None
    ) -> str:
        """Snapshot into the volume's VTree (frozen while mounted); return the snapshot's ID."""
        return (await self.snapshot_set([(spec, vol_id)], snap_uuid, mounted_at))[0]

    async def snapshot_set(
        self,
        members: Sequence[tuple[VolumeSpec, str]],
        snap_uuid: uuid.UUID,
        mounted_at: Path | None = None,
    ) -> list[str]:
        """Snapshot volumes as one consistent set (one array call: all or none), each
        into its own VTree, named after ``snap_uuid``; the filesystem mounted at
        ``mounted_at`` is frozen meanwhile. Return the snapshots' IDs, in order."""
        defs = []
        for spec, vol_id in members:
            try:
                vol = await self.client.volume(vol_id)
                count = await self.client.vtree_snapshot_count(vol.vtree_id)
            except PowerFlexError as exc:
                raise wrap("snapshot", exc) from exc
            if count >= self.snapshot_limit:
                raise Conflict(
                    f"the volume's VTree already holds {count} snapshots, the most PowerFlex "
                    f"allows ({self.snapshot_limit}); delete some, or copy the volume (a copy "
                    "starts a new VTree)"
                )
            name = volume_name(spec.volume_type, spec.content, snap_uuid, snapshot=True)
            defs.append(SnapshotDef(vol_id, name))
        try:
            async with self._frozen(mounted_at):
                if self.gen2:
                    result = await self.client.create_snapshot(self.pool.system_id, defs)
                else:
                    result = await self.client.snapshot_volumes(defs)
        except CapacityError as exc:
            raise await self.out_of_space("snapshot", exc) from exc
        except (PowerFlexError, CommandError) as exc:
            raise wrap("snapshot", exc) from exc
        return list(result.volume_id_list)

    async def restore(
        self, spec: VolumeSpec, vol_id: str, snap_id: str, mounted_at: Path | None = None
    ) -> None:
        """Overwrite the volume with the snapshot's content, remounting around it."""
        remount = mounted_at is not None and is_mounted(mounted_at)
        if remount and mounted_at is not None:
            await self.unmount(vol_id, mounted_at)
        try:
            await self.client.overwrite_volume_content(vol_id, snap_id)
        except PowerFlexError as exc:
            raise wrap("restore", exc) from exc
        finally:
            if remount and mounted_at is not None:
                await self.mount(spec, vol_id, mounted_at)

    # --- resize -----------------------------------------------------------------------

    async def resize(
        self, spec: VolumeSpec, vol_id: str, size: int, mounted_at: Path | None = None
    ) -> int:
        """Grow to ``size`` rounded up; grow the filesystem too (or, on a virtual
        machine's disk, move its GPT's backup header to the end). Return the new size.

        Converges: an array volume that is already that large (a grow whose filesystem
        step failed) is not grown again, but its filesystem still is, so the caller can
        retry a failed resize with the same size."""
        try:
            current = (await self.client.volume(vol_id)).size_bytes
        except PowerFlexError as exc:
            raise wrap("resize", exc) from exc
        new = self.rounded(size)
        if new < current:
            raise InvalidRequest(
                f"volumes can only grow: {format_size(size)} is less than the current "
                f"{format_size(current)}"
            )
        if new > current:
            try:
                await self.client.set_volume_size(vol_id, new)
            except CapacityError as exc:
                raise await self.out_of_space("resize", exc, new - current) from exc
            except PowerFlexError as exc:
                raise wrap("resize", exc) from exc
        try:
            if self.attacher.attached(vol_id):
                await self.attacher.refresh()  # the SDC sees the new size after a rescan
            if spec.is_filesystem:
                await self.grow_filesystem(spec, vol_id, new, mounted_at)
            elif spec.volume_type is VolumeType.VIRTUAL_MACHINE:
                # A VM's disk: its GPT's backup header moves to the new end, as LXD does.
                async with self.attached(vol_id) as device:
                    await _wait_size(device, new)
                    await DiskImages(self.fs.runner).fit_partition_table(device)
        except Exception as exc:
            step = "grow the filesystem" if spec.is_filesystem else "move the GPT backup header"
            context = (
                f"the volume grew to {format_size(new)} but could not {step} (retry the "
                "resize with the same size to finish it)"
            )
            if isinstance(exc, DriverError):  # an attach that failed says why already
                raise type(exc)(f"{context}: {exc}") from exc
            raise wrap(context, exc) from exc
        return new

    async def grow_filesystem(
        self, spec: VolumeSpec, vol_id: str, size: int, mounted_at: Path | None
    ) -> None:
        async with self.attached(vol_id) as device:
            await _wait_size(device, size)
            if mounted_at is not None and is_mounted(mounted_at):
                try:
                    await self.fs.grow(device, spec.filesystem, mounted_at)
                except CommandError:
                    if spec.filesystem != "ext4":
                        raise
                    # Online ext4 growth needs CAP_SYS_RESOURCE; without it, grow offline.
                    log.info("online resize of %s refused; growing it unmounted", vol_id)
                    await self.fs.unmount(mounted_at)
                    try:
                        await self.fs.grow(device, spec.filesystem, None)
                    finally:
                        await self.fs.mount(device, mounted_at, spec.filesystem, spec.mount_options)
            elif spec.filesystem == "ext4":
                await self.fs.grow(device, spec.filesystem, None)
            else:  # xfs and btrfs grow only while mounted
                temp = self.scratch / f"grow-{vol_id}"
                await self.fs.mount(device, temp, spec.filesystem)
                try:
                    await self.fs.grow(device, spec.filesystem, temp)
                finally:
                    await self.fs.unmount(temp)
                    with contextlib.suppress(OSError):
                        temp.rmdir()

    # --- copy -------------------------------------------------------------------------

    async def copy(self, plan: CopyPlan, progress: Progress | None = None) -> CopyResult:
        """Copy a volume (with the plan's snapshots) into a new volume; see
        :mod:`lxflex.driver.copies` for the ways, and a failure leaves no part of it."""
        return await copy_volume(self, plan, progress)

    async def refresh(self, plan: RefreshPlan, progress: Progress | None = None) -> list[str]:
        """Bring an existing target up to its source; see :mod:`lxflex.driver.refresh`.
        Return the IDs of the target's new snapshots."""
        return await refresh_volume(self, plan, progress)

    # --- pool -------------------------------------------------------------------------

    async def usage(self) -> tuple[int, int]:
        """(used, total) bytes of the storage pool."""
        try:
            stats = await self.client.pool_statistics(self.pool.pool_id)
        except PowerFlexError as exc:
            raise wrap("pool resources", exc) from exc
        return stats.used_bytes, stats.total_bytes


def _descendants(vol_id: str, tree: Sequence[ArrayVolume]) -> list[str]:
    """The IDs of the volumes descending from ``vol_id`` in its VTree, nearest first."""
    children: dict[str, list[str]] = {}
    for member in tree:
        if member.ancestor_volume_id:
            children.setdefault(member.ancestor_volume_id, []).append(member.id)
    found: list[str] = []
    frontier = [vol_id]
    while frontier:
        nxt = [c for parent in frontier for c in children.get(parent, [])]
        found.extend(nxt)
        frontier = nxt
    return found


async def _wait_size(device: Path, size: int, timeout: float = 30.0) -> None:
    """Wait until the kernel reports the device's new size (NVMe sees it at once)."""
    name = device.resolve().name
    path = Path("/sys/class/block") / name / "size"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.01
    while True:
        try:
            if int(path.read_text()) * 512 >= size:
                return
        except (OSError, ValueError):
            return  # no sysfs entry (not a kernel block device): nothing to wait for
        if loop.time() > deadline:
            raise TimeoutError(f"{device} did not grow to {size} bytes")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
