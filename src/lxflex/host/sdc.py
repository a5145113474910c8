"""The PowerFlex SDC on this host: its GUID, rescans, and its volumes' device links.

The SDC's kernel driver (``scini``) presents each volume mapped to this SDC as
``/dev/disk/by-id/emc-vol-<system ID>-<volume ID>`` (partitions add ``-partN``, which are
never the volume). ``drv_cfg`` names the SDC (``--query_guid``) and makes it look again
at its mappings and sizes (``--rescan``): after a mapping and after a resize.
"""

from __future__ import annotations

from pathlib import Path

from .runner import Runner

__all__ = ["SdcHost"]


class SdcHost:
    def __init__(self, runner: Runner, drv_cfg: Path, by_id: Path) -> None:
        self.runner = runner
        self.drv_cfg = drv_cfg
        self.by_id = by_id

    async def guid(self) -> str:
        """This host's SDC GUID (upper case, as the gateway shows it)."""
        done = await self.runner.run([str(self.drv_cfg), "--query_guid"], timeout=60)
        guid = done.stdout.strip().splitlines()[-1].strip() if done.stdout.strip() else ""
        if not guid:
            raise RuntimeError(f"{self.drv_cfg} --query_guid printed no GUID")
        return guid.upper()

    async def rescan(self) -> None:
        await self.runner.run([str(self.drv_cfg), "--rescan"], timeout=120)

    def device_link(self, volume_id: str, system_id: str) -> Path:
        return self.by_id / f"emc-vol-{system_id}-{volume_id}"

    def linked_volumes(self, system_id: str) -> dict[str, Path]:
        """The by-id links of the system's volumes, by volume ID (partitions left out)."""
        head = f"emc-vol-{system_id}-"
        return {
            link.name.removeprefix(head): link
            for link in self.by_id.glob(f"{head}*")
            if "-part" not in link.name.removeprefix(head)
        }
