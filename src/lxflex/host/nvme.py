"""NVMe/TCP on the host: controllers from sysfs, connections through nvme-cli.

Connection state is read from ``<sys>/class/nvme/nvmeN/{subsysnqn,transport,state}``
(nvme-cli's JSON output changes between versions; sysfs does not). Connecting runs
``nvme connect-all -t tcp -a <target> -q <hostnqn>`` against the first target that
answers; the kernel then connects to every portal the discovery log lists. Volumes
appear as ``<by-id>/nvme-eui.<nguid>``, where the NGUID is the volume ID, Dell's OUI
``64b94e`` and the last 10 hex digits of the system ID.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .runner import CommandError, Runner

__all__ = ["NvmeConfig", "NvmeHost", "host_nqn", "nguid", "split_address"]

DELL_OUI = "64b94e"


def nguid(volume_id: str, system_id: str) -> str:
    return f"{volume_id}{DELL_OUI}{system_id[-10:]}".lower()


def host_nqn(server_uuid: str) -> str:
    return f"nqn.2014-08.org.nvmexpress:uuid:{server_uuid}"


@dataclass(frozen=True)
class NvmeConfig:
    nvme: str = "nvme"
    by_id: Path = Path("/dev/disk/by-id")
    sys: Path = Path("/sys")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class NvmeHost:
    def __init__(self, runner: Runner, config: NvmeConfig) -> None:
        self.runner = runner
        self.config = config

    def device_link(self, volume_id: str, system_id: str) -> Path:
        return self.config.by_id / f"nvme-eui.{nguid(volume_id, system_id)}"

    def serves(self, link: Path, volume_id: str, system_id: str) -> bool:
        """Whether the link leads to the namespace of this volume: the kernel's
        ``/sys/block/<dev>/wwid`` of its device is ``eui.<nguid>``. A link left by an
        unclean stop may lead to a device that is now another one."""
        try:
            device = Path(os.path.realpath(link, strict=True)).name
        except OSError:
            return False
        return (
            _read(self.config.sys / "block" / device / "wwid")
            == f"eui.{nguid(volume_id, system_id)}"
        )

    def linked_volumes(self, system_id: str) -> dict[str, Path]:
        """The by-id links of the system's volumes, by volume ID (partitions left out)."""
        tail = nguid("", system_id)
        found: dict[str, Path] = {}
        for link in self.config.by_id.glob(f"nvme-eui.*{tail}"):
            volume_id = link.name.removeprefix("nvme-eui.").removesuffix(tail)
            if volume_id:
                found[volume_id] = link
        return found

    def controllers(self, subnqn: str, hostnqn: str) -> list[str]:
        """Names of the live TCP controllers from ``hostnqn`` to subsystem ``subnqn``."""
        base = self.config.sys / "class" / "nvme"
        if not base.is_dir():
            return []
        return sorted(
            ctrl.name
            for ctrl in base.iterdir()
            if _read(ctrl / "subsysnqn") == subnqn
            and _read(ctrl / "hostnqn").lower() == hostnqn.lower()
            and _read(ctrl / "transport") == "tcp"
            and _read(ctrl / "state") in ("live", "connecting", "resetting")
        )

    async def connect(self, targets: list[str], hostnqn: str) -> None:
        """Connect through the first target that answers; CommandError if none does."""
        failures: list[CommandError] = []
        for target in targets:
            host, port = split_address(target)
            argv = [self.config.nvme, "connect-all", "-t", "tcp", "-a", host, "-q", hostnqn]
            if port:
                argv += ["-s", port]
            try:
                await self.runner.run(argv, timeout=60)
                return
            except CommandError as exc:
                failures.append(exc)
        last = failures[-1] if failures else None
        raise CommandError(
            last.argv if last else (self.config.nvme,),
            last.rc if last else 1,
            "no NVMe/TCP target answered: "
            + "; ".join(
                f"{t}: {f.stderr or f.rc}" for t, f in zip(targets, failures, strict=False)
            ),
        )

    async def disconnect(self, subnqn: str) -> None:
        await self.runner.run([self.config.nvme, "disconnect", "-n", subnqn], timeout=60)


def split_address(target: str) -> tuple[str, str]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` → (host, port or "")."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, rest.removeprefix(":")
    if target.count(":") == 1:
        host, _, port = target.partition(":")
        return host, port
    return target, ""
