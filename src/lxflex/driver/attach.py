"""Attaching array volumes to this host, over NVMe/TCP or the SDC, reference-counted.

Lifecycle of one volume on this host::

    detached --map--> mapped --connect (NVMe: once per subsystem; SDC: rescan)-->
             --by-id link appears--> device ready  (--mount--> mounted, in the driver)

:meth:`Attacher.attach` walks it forward and undoes its own steps if a later one fails;
:meth:`Attacher.detach` walks it back once the last user lets go. Both are idempotent:
mapping an already mapped volume and unmapping an unmapped one are not errors. The
transports differ in three places only: who this host is on the array (NVMe: a host
entity by NQN from ``server.uuid``, found or created; SDC: the SDC of the GUID that
``drv_cfg --query_guid`` prints, which must be registered), what follows a mapping (NVMe:
connect once; SDC: ``drv_cfg --rescan``), and the device link (``nvme-eui.<NGUID>`` or
``emc-vol-<system>-<volume>``). NVMe disconnects the subsystem when no volume of this
host remains mapped; the SDC rescans after a resize, which NVMe sees by itself.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ..host.fs import device_in_use
from ..host.nvme import NvmeHost
from ..host.runner import CommandError
from ..host.sdc import SdcHost
from ..host.watch import wait_for_path
from ..locks import KeyedLocks
from ..powerflex import (
    AlreadyMappedError,
    NameInUseError,
    NotMappedError,
    PowerFlexClient,
    VolumeNotFoundError,
)
from ..revert import Reverter
from .errors import Unavailable
from .leftovers import Leftover, Leftovers, LoggedLeftovers, keep_quietly

__all__ = ["AttachPolicy", "Attacher", "NvmeAttacher", "SdcAttacher"]

log = logging.getLogger("lxflex.driver")


@dataclass(frozen=True)
class AttachPolicy:
    """Seconds to wait for a device to appear, and to vanish after an unmap."""

    appear: float = 30.0
    vanish: float = 10.0


class Attacher(abc.ABC):
    """Reference-counted mapping of volumes to this host; subclasses are the transports."""

    def __init__(
        self,
        client: PowerFlexClient,
        system_id: str,
        policy: AttachPolicy | None = None,
        leftovers: Leftovers | None = None,
    ) -> None:
        self.client = client
        self.system_id = system_id
        self.policy = policy or AttachPolicy()
        self.leftovers: Leftovers = leftovers or LoggedLeftovers()
        self._host_id: str | None = None
        self._host_lock = asyncio.Lock()
        self._refs: dict[str, int] = defaultdict(int)
        self._locks: KeyedLocks[str] = KeyedLocks()
        self._connect_lock = asyncio.Lock()

    # --- what a transport provides ----------------------------------------------------

    @abc.abstractmethod
    def device(self, volume_id: str) -> Path:
        """The by-id link of the volume's device on this host."""

    def _ready(self, volume_id: str) -> Callable[[Path], bool]:
        """When the device link counts as ready: it exists (a transport that can tell
        which volume a device is checks that too)."""
        return Path.exists

    @abc.abstractmethod
    def linked(self) -> dict[str, Path]:
        """The by-id links of this system's volumes on this host, by volume ID."""

    @abc.abstractmethod
    async def _find_host(self) -> str:
        """This host's ID on the array."""

    @abc.abstractmethod
    async def _ensure_connected(self) -> None:
        """Make a newly mapped volume reach this host."""

    @abc.abstractmethod
    async def disconnect_if_unused(self) -> None:
        """Let go of the transport when no volume of this host needs it."""

    @abc.abstractmethod
    async def refresh(self) -> None:
        """Make attached devices show their volumes' new sizes."""

    # --- the lifecycle ----------------------------------------------------------------

    def attached(self, volume_id: str) -> bool:
        return self._refs.get(volume_id, 0) > 0

    def busy(self, volume_id: str) -> bool:
        """Whether the volume is held, being attached or detached, or its device is
        mounted: a mapping of it is no leftover."""
        return (
            self.attached(volume_id)
            or self._locks.held(volume_id)
            or device_in_use(self.device(volume_id))
        )

    async def mapped_here(self) -> set[str]:
        """The IDs of the volumes the array maps to this host (none if this host was
        never on the array)."""
        host_id = await self._existing_host()
        if host_id is None:
            return set()
        return {v.id for v in await self.client.host_volumes(host_id)}

    def idle_connection(self) -> bool:
        """Whether the transport holds a connection that no mapping needs (after
        :meth:`mapped_here` found none): NVMe only."""
        return False

    async def host_id(self) -> str:
        """This host's ID on the array, found (or made) once."""
        if self._host_id is not None:
            return self._host_id
        async with self._host_lock:
            if self._host_id is None:
                self._host_id = await self._find_host()
            return self._host_id

    async def attach(self, volume_id: str, *, shared: bool = False) -> Path:
        """Make the volume's block device available; return its by-id path. ``shared``:
        the volume may be mapped to other hosts too (PowerFlex's allowMultipleMappings);
        otherwise the array refuses a volume another host has mapped."""
        async with self._locks.hold(volume_id):
            if self._refs[volume_id] > 0:
                self._refs[volume_id] += 1
                return self.device(volume_id)
            host_id = await self.host_id()
            async with Reverter() as revert:
                try:
                    await self.client.map_host(volume_id, host_id, allow_multiple=shared)
                    revert.add(
                        lambda: self._unmap(volume_id, host_id),
                        f"mapping of volume {volume_id}",
                        kept=self._keeper(volume_id),
                    )
                except AlreadyMappedError:
                    pass  # left mapped by an earlier run: reuse it
                await self._ensure_connected()
                device = self.device(volume_id)
                try:
                    await wait_for_path(
                        device, timeout=self.policy.appear, ready=self._ready(volume_id)
                    )
                except TimeoutError:
                    state = "leads to another device" if device.exists() else "did not appear"
                    raise TimeoutError(
                        f"volume {volume_id} was mapped but {device} {state} within "
                        f"{self.policy.appear:g} s"
                    ) from None
                revert.success()
            self._refs[volume_id] = 1
            return device

    async def detach(self, volume_id: str, *, force: bool = False) -> None:
        """Let go of one reference; unmap when none is left (or at once with ``force``).
        Raises if the unmap fails (the reference is gone all the same)."""
        async with self._locks.hold(volume_id):
            if not force and self._refs[volume_id] > 1:
                self._refs[volume_id] -= 1
                return
            self._refs.pop(volume_id, None)
            await self._unmap(volume_id, await self.host_id())

    async def release(self, volume_id: str) -> None:
        """:meth:`detach` after work that is done: a failed unmap does not undo the work,
        it is logged and kept as a leftover (repaired later), and this never raises."""
        try:
            await self.detach(volume_id)
        except Exception as exc:
            log.warning("cannot unmap volume %s after use: %s", volume_id, exc)
            await keep_quietly(self.leftovers, _unmap_leftover(volume_id, exc))

    async def sweep(self, ours: set[str]) -> list[str]:
        """At start: unmap this host's mappings of the volumes in ``ours`` that nothing
        uses (left by work a crash cut short); a mapping whose device is mounted (a
        volume mounted before the restart) is adopted as one reference instead. Return
        the IDs unmapped. Mappings of other volumes are not touched: on a shared SDC
        they may belong to other software."""
        mapped = await self.mapped_here()  # empty if this host was never on the array
        unmapped = []
        for volume_id in sorted(mapped & ours):
            if device_in_use(self.device(volume_id)):
                self.adopt(volume_id)
            elif await self._unmap_if_unused(volume_id, await self.host_id()):
                unmapped.append(volume_id)
        return unmapped

    async def _existing_host(self) -> str | None:
        """This host's ID on the array if it has one; never creates it."""
        return await self.host_id()

    async def unmap_unused(self, volume_id: str) -> None:
        """Unmap a volume from this host unless this process uses it now (a leftover
        mapping); a volume gone from the array is not an error."""
        await self._unmap_if_unused(volume_id, await self.host_id())

    async def _unmap_if_unused(self, volume_id: str, host_id: str) -> bool:
        """Unmap unless this process holds the volume (its last user unmaps it then);
        whether it did."""
        async with self._locks.hold(volume_id):
            if self._refs.get(volume_id, 0) > 0:
                return False
            with contextlib.suppress(VolumeNotFoundError):
                await self._unmap(volume_id, host_id)
            return True

    def adopt(self, volume_id: str) -> None:
        """Count a mapping an earlier run of this server left in use (a volume still
        mounted after a restart) as one reference."""
        self._refs[volume_id] = max(self._refs.get(volume_id, 0), 1)

    def _keeper(self, volume_id: str) -> Callable[[BaseException], Awaitable[None]]:
        async def keep(exc: BaseException) -> None:
            await self.leftovers.keep(_unmap_leftover(volume_id, exc))

        return keep

    async def _unmap(self, volume_id: str, host_id: str) -> None:
        with contextlib.suppress(NotMappedError):
            await self.client.unmap_host(volume_id, host_id)
        try:
            await wait_for_path(self.device(volume_id), present=False, timeout=self.policy.vanish)
        except TimeoutError:
            log.warning("device of volume %s still present after unmap", volume_id)
        await self.disconnect_if_unused()


def _unmap_leftover(volume_id: str, exc: BaseException) -> Leftover:
    return Leftover("unmap", volume_id, reason=f"unmap failed: {exc}")


class NvmeAttacher(Attacher):
    """NVMe/TCP: a host entity by NQN; connect once per subsystem, disconnect when idle."""

    def __init__(
        self,
        client: PowerFlexClient,
        nvme: NvmeHost,
        *,
        hostnqn: str,
        host_name: str,
        system_id: str,
        subsystem_nqn: str,
        targets: list[str],
        policy: AttachPolicy | None = None,
        leftovers: Leftovers | None = None,
    ) -> None:
        super().__init__(client, system_id, policy, leftovers)
        self.nvme = nvme
        self.hostnqn = hostnqn
        self.host_name = host_name
        self.subsystem_nqn = subsystem_nqn
        self.targets = targets

    def device(self, volume_id: str) -> Path:
        return self.nvme.device_link(volume_id, self.system_id)

    def linked(self) -> dict[str, Path]:
        return self.nvme.linked_volumes(self.system_id)

    def _ready(self, volume_id: str) -> Callable[[Path], bool]:
        return lambda link: self.nvme.serves(link, volume_id, self.system_id)

    def idle_connection(self) -> bool:
        return not any(self._refs.values()) and bool(
            self.nvme.controllers(self.subsystem_nqn, self.hostnqn)
        )

    async def _find_host(self) -> str:
        found = await self.client.nvme_host_by_nqn(self.hostnqn)
        if found is not None:
            return found.id
        try:
            made = await self.client.create_nvme_host(self.hostnqn, self.host_name)
        except NameInUseError:  # a stale entity holds the name: go without one
            made = await self.client.create_nvme_host(self.hostnqn)
        log.info("created NVMe host %s for %s", made, self.hostnqn)
        return made

    async def _existing_host(self) -> str | None:
        if self._host_id is None:
            found = await self.client.nvme_host_by_nqn(self.hostnqn)
            if found is None:
                return None
            self._host_id = found.id
        return self._host_id

    async def _ensure_connected(self) -> None:
        async with self._connect_lock:
            if not self.nvme.controllers(self.subsystem_nqn, self.hostnqn):
                await self.nvme.connect(self.targets, self.hostnqn)

    async def disconnect_if_unused(self) -> None:
        async with self._connect_lock:
            if any(self._refs.values()):
                return  # a volume of ours is attached
            if not self.nvme.controllers(self.subsystem_nqn, self.hostnqn):
                return
            # Volumes being attached are mapped before they connect: the array knows them.
            if not await self.client.host_volumes(await self.host_id()):
                await self.nvme.disconnect(self.subsystem_nqn)

    async def refresh(self) -> None:
        pass  # the kernel sees an NVMe namespace grow by itself


class SdcAttacher(Attacher):
    """The SDC: this host is the SDC of its GUID; ``drv_cfg --rescan`` after changes."""

    def __init__(
        self,
        client: PowerFlexClient,
        sdc: SdcHost,
        *,
        system_id: str,
        policy: AttachPolicy | None = None,
        leftovers: Leftovers | None = None,
    ) -> None:
        super().__init__(client, system_id, policy, leftovers)
        self.sdc = sdc

    def device(self, volume_id: str) -> Path:
        return self.sdc.device_link(volume_id, self.system_id)

    def linked(self) -> dict[str, Path]:
        return self.sdc.linked_volumes(self.system_id)

    async def _find_host(self) -> str:
        try:
            guid = await self.sdc.guid()
        except (CommandError, RuntimeError) as exc:
            raise Unavailable(f"cannot read this host's SDC GUID: {exc}") from exc
        found = await self.client.sdc_by_guid(guid)
        if found is None:
            raise Unavailable(
                f"the SDC of this host ({guid}) is not registered with the PowerFlex "
                "system: check its MDM addresses (drv_cfg --query_mdms)"
            )
        return found.id

    async def _ensure_connected(self) -> None:
        await self.sdc.rescan()

    async def disconnect_if_unused(self) -> None:
        pass  # the SDC stays connected to its MDMs whatever is mapped

    async def refresh(self) -> None:
        await self.sdc.rescan()
