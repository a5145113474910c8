"""Host fabric emulation: what the kernel would show a host after a mapping.

Theory of operation: an emulated host has a directory tree under
``<state>/hosts/<name>/`` with a ``dev/disk/by-id`` directory (or one given on the command
line), a fake ``sys`` tree (``sys/class/nvme/nvmeN/{subsysnqn,hostnqn,transport,address,
state}`` and ``sys/module/{nvme_tcp,nvme_fabrics,scini}``), ``bin/nvme`` and
``bin/drv_cfg`` wrappers that run the shims against this simulator, and
``opt/emc/scaleio/sdc/bin/drv_cfg`` linked to the latter, where the SDC package puts it.

:meth:`Fabric.reconcile` computes, per host, which volumes the kernel would expose:

* NVMe/TCP: the volumes mapped to an NVMe host whose NQN has a live controller on this
  host (made by ``nvme connect``/``connect-all``); link ``nvme-eui.<nguid>`` with
  ``nguid = volumeId + 64b94e + last 10 hex digits of the system ID``;
* SDC: the volumes mapped to this host's SDC GUID; link ``emc-vol-<systemId>-<volumeId>``;

and makes it so: each visible volume gets a loop device over its backing file (with
partition scanning; ``-partN`` links follow the kernel's partitions), and a volume that
stops being visible loses its device. A partition table on the disk (MBR or GPT) gives
one more loop device per partition, linked as ``<link>-partN``; the table is read at each
reconcile (every mapping change, ``nvme list``, ``drv_cfg --rescan``). Like the kernel,
NVMe sees a resize at once, SDC only after ``drv_cfg --rescan``. Only loop devices this
fabric created are ever detached: they are recorded in ``fabric-devices.json`` with their
backing file, and checked against ``/sys/block/loopN/loop/backing_file`` before any detach.

With ``files=True`` a host's link leads to the volume's backing file itself instead of a
loop device: no root is needed and nothing is attached in the kernel, so tests of block
I/O run anywhere. Such a host has no partitions and no page cache between it and the
array's data; everything else (controllers, links, ``wwid``) is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import shims
from .model import Array
from .partitions import read_table

log = logging.getLogger("lxflex.sim.fabric")

DELL_OUI = "64b94e"
_SYS_BLOCK = Path("/sys/block")


def nguid(volume_id: str, system_id: str) -> str:
    return f"{volume_id}{DELL_OUI}{system_id[-10:]}".lower()


class FabricError(Exception):
    """A command the emulated kernel refuses; carries the shim's exit code."""

    def __init__(self, message: str, rc: int = 1) -> None:
        super().__init__(message)
        self.rc = rc


@dataclass
class Controller:
    name: str
    hostnqn: str
    subnqn: str
    traddr: str
    trsvcid: int


@dataclass
class Device:
    volume_id: str
    loop: str  # /dev/loopN
    link: str  # by-id name without -partN
    size: int
    kind: str  # "nvme" or "sdc"
    parts: dict[int, tuple[str, int, int]] = field(default_factory=dict)  # n -> loop, start, size


@dataclass
class FabricHost:
    name: str
    root: Path
    by_id: Path
    sdc_guid: str | None = None
    controllers: dict[str, Controller] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    sdc_sizes: dict[str, int] = field(default_factory=dict)  # size the SDC last scanned

    @property
    def sys_root(self) -> Path:
        return self.root / "sys"

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise FabricError(f"{argv[0]} failed: {err.decode(errors='replace').strip()}")
    return out.decode()


async def _attach_loop(backing: str, *extra: str) -> str:
    """A loop device over ``backing``. Direct I/O where the filesystem allows it: a buffered
    loop device reads a sparse file's holes through the page cache, twenty times slower."""
    try:
        return (
            await _run("losetup", "--find", "--show", "--direct-io=on", *extra, backing)
        ).strip()
    except FabricError:
        return (await _run("losetup", "--find", "--show", *extra, backing)).strip()


def _backing_file(loop: str) -> str | None:
    try:
        return (_SYS_BLOCK / Path(loop).name / "loop" / "backing_file").read_text().strip()
    except OSError:
        return None


class Fabric:
    """The emulated hosts of one simulator. Methods run on the simulator's event loop."""

    def __init__(
        self,
        array: Array,
        state_dir: Path,
        control_url: str,
        ca_file: str | None,
        *,
        files: bool = False,
    ):
        self.array = array
        self.files = files  # links lead to the backing files: no loop devices, no root
        self.state_dir = state_dir
        self.control_url = control_url
        self.ca_file = ca_file
        self.hosts: dict[str, FabricHost] = {}
        self._ledger = state_dir / "fabric-devices.json"
        self._lock = asyncio.Lock()

    # --- set-up -----------------------------------------------------------------------

    def add_host(
        self, name: str, by_id: Path | None = None, sdc_guid: str | None = None
    ) -> FabricHost:
        root = self.state_dir / "hosts" / name
        host = FabricHost(name, root, by_id or root / "dev" / "disk" / "by-id", sdc_guid)
        host.by_id.mkdir(parents=True, exist_ok=True)
        for module in ("nvme_tcp", "nvme_fabrics", "scini"):
            (host.sys_root / "module" / module).mkdir(parents=True, exist_ok=True)
        for tree in ("class/nvme", "block"):  # what a previous run showed is gone
            shutil.rmtree(host.sys_root / tree, ignore_errors=True)
            (host.sys_root / tree).mkdir(parents=True, exist_ok=True)
        self._remove_stale_links(host)
        self._write_wrappers(host)
        # The SDC tooling where the real package installs it, for mode discovery.
        drv_cfg = host.root / "opt" / "emc" / "scaleio" / "sdc" / "bin" / "drv_cfg"
        drv_cfg.parent.mkdir(parents=True, exist_ok=True)
        if not drv_cfg.is_symlink():
            drv_cfg.symlink_to(host.bin_dir / "drv_cfg")
        self.hosts[name] = host
        return host

    def _remove_stale_links(self, host: FabricHost) -> None:
        """Drop the by-id links of this system's volumes an unclean stop left: a new
        host has no devices yet, and a stale link may lead to another process's device."""
        system = self.array.system_id
        patterns = (f"nvme-eui.*{DELL_OUI}{system[-10:]}*".lower(), f"emc-vol-{system}-*")
        for pattern in patterns:
            for link in host.by_id.glob(pattern):
                if link.is_symlink():
                    link.unlink(missing_ok=True)
                    log.warning("host %s: removed stale link %s", host.name, link.name)

    def _write_wrappers(self, host: FabricHost) -> None:
        host.bin_dir.mkdir(parents=True, exist_ok=True)
        env = [
            f"LXFLEX_SIM_URL={shlex.quote(self.control_url)}",
            f"LXFLEX_SIM_HOST={shlex.quote(host.name)}",
        ]
        if self.ca_file:
            env.append(f"LXFLEX_SIM_CA={shlex.quote(self.ca_file)}")
        # The shim's file runs as a script in isolated mode: importing it as a module
        # would import the whole simulator first, ten times the shim's own start-up.
        shim = shlex.quote(str(Path(shims.__file__).resolve()))
        for tool in ("nvme", "drv_cfg"):
            script = host.bin_dir / tool
            script.write_text(
                "#!/bin/sh\n"
                f"exec env {' '.join(env)} {shlex.quote(sys.executable)} -I {shim} "
                f'{tool} "$@"\n'
            )
            script.chmod(0o755)

    async def cleanup_stale(self) -> None:
        """Detach loop devices a previous run left behind (crash), and only those."""
        try:
            entries = json.loads(self._ledger.read_text())
        except (OSError, ValueError):
            entries = []
        for entry in entries:
            loop, backing = str(entry.get("loop")), str(entry.get("backing"))
            if _backing_file(loop) == backing:
                with contextlib.suppress(FabricError):
                    await _run("losetup", "-d", loop)
        await self._sweep()
        self._save_ledger()

    def _save_ledger(self) -> None:
        entries = [
            {"loop": loop, "backing": str(self.array.data.path(d.volume_id))}
            for h in self.hosts.values()
            for d in h.devices.values()
            for loop in (d.loop, *(p[0] for p in d.parts.values()))
        ]
        tmp = self._ledger.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries))
        os.replace(tmp, self._ledger)

    # --- what the kernel would see ----------------------------------------------------

    def subsystem_nqn(self) -> str:
        return f"nqn.1988-11.com.dell:powerflex:00:{self.array.system_id}"

    def _wanted(self, host: FabricHost) -> dict[str, tuple[str, str]]:
        """volume id → (kind, link name) of the volumes this host should see."""
        array = self.array
        nqns = {
            c.hostnqn.lower() for c in host.controllers.values() if c.subnqn == self.subsystem_nqn()
        }
        wanted: dict[str, tuple[str, str]] = {}
        for vol in array.volumes.values():
            for m in vol.mappings:
                h = array.hosts.get(m.host_id)
                if h is None:
                    continue
                if h.kind == "NVMeHost" and (h.nqn or "").lower() in nqns:
                    wanted[vol.id] = ("nvme", f"nvme-eui.{nguid(vol.id, array.system_id)}")
                elif (
                    h.kind == "SdcHost"
                    and host.sdc_guid
                    and (h.guid or "").upper() == host.sdc_guid.upper()
                ):
                    wanted[vol.id] = ("sdc", f"emc-vol-{array.system_id}-{vol.id}")
        return wanted

    async def reconcile(self, *, rescan_sdc: bool = False) -> None:
        async with self._lock:
            for host in self.hosts.values():
                await self._reconcile_host(host, rescan_sdc)
            self._save_ledger()

    async def _reconcile_host(self, host: FabricHost, rescan_sdc: bool) -> None:
        wanted = self._wanted(host)
        for vol_id in [v for v in host.devices if v not in wanted]:
            await self._detach(host, host.devices.pop(vol_id))
        for vol_id, (kind, link) in wanted.items():
            size = self.array.volumes[vol_id].size_kb * 1024
            dev = host.devices.get(vol_id)
            if dev is None:
                dev = await self._attach(host, vol_id, kind, link)
                host.devices[vol_id] = dev
            elif dev.size != size and (kind == "nvme" or rescan_sdc):
                if not self.files:  # a file shows its new size by itself
                    await _run("losetup", "-c", dev.loop)
                dev.size = size
            if not self.files:
                await self._sync_partitions(host, dev)

    async def _attach(self, host: FabricHost, vol_id: str, kind: str, link: str) -> Device:
        size = self.array.volumes[vol_id].size_kb * 1024
        backing = str(self.array.data.materialize(vol_id, size))
        loop = backing if self.files else await _attach_loop(backing)
        dev = Device(vol_id, loop, link, size, kind)
        target = host.by_id / link
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        if kind == "nvme":  # what the kernel shows of a namespace: its NGUID
            ident = host.sys_root / "block" / Path(loop).name
            ident.mkdir(parents=True, exist_ok=True)
            (ident / "wwid").write_text(f"eui.{nguid(vol_id, self.array.system_id)}\n")
        target.symlink_to(loop)
        log.info("host %s: %s appeared as %s", host.name, link, loop)
        return dev

    async def _detach(self, host: FabricHost, dev: Device) -> None:
        for entry in host.by_id.glob(f"{dev.link}*"):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        backing = str(self.array.data.path(dev.volume_id))
        for loop, _, _ in dev.parts.values():
            await self._detach_loop(loop, backing)
        dev.parts.clear()
        if not self.files:
            await self._detach_loop(dev.loop, backing)
        shutil.rmtree(host.sys_root / "block" / Path(dev.loop).name, ignore_errors=True)
        log.info("host %s: %s removed", host.name, dev.link)

    async def _sync_partitions(self, host: FabricHost, dev: Device) -> None:
        """Expose each partition of the disk as ``<link>-partN``, as udev would."""
        backing = str(self.array.data.path(dev.volume_id))
        table = {p.number: (p.start, p.size) for p in read_table(backing, dev.size)}
        for number, (loop, start, size) in list(dev.parts.items()):
            if table.get(number) != (start, size):
                await self._detach_loop(loop, backing)
                with contextlib.suppress(FileNotFoundError):
                    (host.by_id / f"{dev.link}-part{number}").unlink()
                del dev.parts[number]
        for number, (start, size) in table.items():
            if number in dev.parts:
                continue
            loop = await _attach_loop(backing, "--offset", str(start), "--sizelimit", str(size))
            dev.parts[number] = (loop, start, size)
            link = host.by_id / f"{dev.link}-part{number}"
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(loop)

    async def _detach_loop(self, loop: str, backing: str) -> None:
        if _backing_file(loop) != backing:
            return  # not ours (any more): never touch it
        try:
            await _run("losetup", "-d", loop)
        except FabricError as exc:
            log.warning("cannot detach %s: %s", loop, exc)

    async def flush(self, volume_id: str) -> None:
        """Drop cached blocks of a volume's devices after its content changed underneath."""
        for host in self.hosts.values():
            dev = host.devices.get(volume_id)
            if dev is not None and not self.files:
                with contextlib.suppress(FabricError):
                    await _run("blockdev", "--flushbufs", dev.loop)

    async def shutdown(self) -> None:
        async with self._lock:
            for host in self.hosts.values():
                for dev in list(host.devices.values()):
                    await self._detach(host, dev)
                host.devices.clear()
                host.controllers.clear()
                self._write_controllers(host)
            await self._sweep()
            self._save_ledger()

    async def _sweep(self) -> None:
        """Detach any loop device still backed by one of our volume files (one an
        interrupted attach never recorded). Backing files under our data directory are
        ours by construction; nothing else is touched."""
        root = str(self.array.data.root) + "/"
        for entry in _SYS_BLOCK.glob("loop*/loop/backing_file"):
            try:
                backing = entry.read_text().strip()
            except OSError:
                continue
            if backing.removesuffix(" (deleted)").startswith(root):
                loop = f"/dev/{entry.parent.parent.name}"
                with contextlib.suppress(FabricError):
                    await _run("losetup", "-d", loop)
                    log.warning("detached %s, left over from an interrupted attach", loop)

    # --- NVMe controllers -------------------------------------------------------------

    def host_portals(self) -> list[tuple[str, int, int]]:
        """(ip, nvme port, discovery port) of every host-facing SDT address."""
        return [
            (ip["ip"], sdt.nvme_port, sdt.discovery_port)
            for sdt in self.array.sdts.values()
            for ip in sdt.ips
            if ip["role"] in ("HostOnly", "StorageAndHost")
        ]

    def _has_mappings(self, hostnqn: str) -> bool:
        for h in self.array.hosts.values():
            if h.kind == "NVMeHost" and (h.nqn or "").lower() == hostnqn.lower():
                return bool(self.array.mapped_volumes(h.id))
        return False

    def connect(
        self, host: FabricHost, hostnqn: str, subnqn: str, traddr: str, port: int
    ) -> str | None:
        """Create a controller unless one exists; return its name (None if existing)."""
        portals = {(ip, nvme) for ip, nvme, _ in self.host_portals()}
        if (traddr, port) not in portals or subnqn != self.subsystem_nqn():
            raise FabricError(
                f"could not add new controller: failed to write to nvme-fabrics device "
                f"(no subsystem {subnqn} at {traddr}:{port})"
            )
        for ctrl in host.controllers.values():
            if (ctrl.hostnqn, ctrl.subnqn, ctrl.traddr, ctrl.trsvcid) == (
                hostnqn,
                subnqn,
                traddr,
                port,
            ):
                return None
        index = 0
        while f"nvme{index}" in host.controllers:
            index += 1
        ctrl = Controller(f"nvme{index}", hostnqn, subnqn, traddr, port)
        host.controllers[ctrl.name] = ctrl
        self._write_controllers(host)
        return ctrl.name

    def discovery_log(self, traddr: str, port: int, hostnqn: str) -> list[tuple[str, int]]:
        """The (traddr, port) entries a discovery controller at traddr:port returns."""
        if not any(ip == traddr and disc == port for ip, _, disc in self.host_portals()):
            raise FabricError(f"failed to connect to discovery controller {traddr}:{port}")
        # PowerFlex lists no entry until a volume is mapped to the asking host.
        if not self._has_mappings(hostnqn):
            return []
        return [(ip, nvme) for ip, nvme, _ in self.host_portals()]

    def disconnect(
        self, host: FabricHost, *, subnqn: str | None = None, device: str | None = None
    ) -> int:
        doomed = [
            name
            for name, ctrl in host.controllers.items()
            if (subnqn is None or ctrl.subnqn == subnqn) and (device is None or name == device)
        ]
        for name in doomed:
            del host.controllers[name]
        self._write_controllers(host)
        return len(doomed)

    def _write_controllers(self, host: FabricHost) -> None:
        base = host.sys_root / "class" / "nvme"
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True, exist_ok=True)
        for ctrl in host.controllers.values():
            d = base / ctrl.name
            d.mkdir()
            (d / "subsysnqn").write_text(ctrl.subnqn + "\n")
            (d / "hostnqn").write_text(ctrl.hostnqn + "\n")
            (d / "transport").write_text("tcp\n")
            (d / "address").write_text(f"traddr={ctrl.traddr},trsvcid={ctrl.trsvcid}\n")
            (d / "state").write_text("live\n")

    def describe(self, host: FabricHost) -> dict[str, Any]:
        return {
            "name": host.name,
            "by_id": str(host.by_id),
            "sys_root": str(host.sys_root),
            "bin": str(host.bin_dir),
            "sdc_guid": host.sdc_guid,
            "controllers": [vars(c) for c in host.controllers.values()],
            "devices": [vars(d) for d in host.devices.values()],
        }
