"""ISO volumes: custom volumes of content type ``iso``, filled once from an uploaded ISO
file and read-only afterwards.

On the array an ISO volume is a block volume named ``u_<uuid>.i``, sized to the image
rounded up to the pool's granularity. Its content is the image's bytes (zeros not
written, so a thin volume allocates what the image holds). The service refuses what
would change it: config and size updates, snapshots and restores.
"""

from __future__ import annotations

from pathlib import Path

from ..driver import Content, InvalidRequest, Progress, format_size
from ..state import Database
from .pools import PoolService
from .rules import check_name, fill_config
from .specs import spec_of
from .views import VolumeView
from .volumes import NewVolume, VolumeService

__all__ = ["IsoService"]

_ISO_MAGIC_OFFSET = 0x8001  # "CD001" in the first volume descriptor (ISO 9660 / UDF bridge)


def looks_like_iso(image: Path) -> bool:
    with open(image, "rb") as f:
        f.seek(_ISO_MAGIC_OFFSET)
        return f.read(5) == b"CD001"


class IsoService:
    def __init__(self, db: Database, pools: PoolService, volumes: VolumeService) -> None:
        self.db = db
        self.pools = pools
        self.volumes = volumes

    async def create(
        self,
        pool_name: str,
        name: str,
        image: Path,
        *,
        project: str = "default",
        description: str = "",
        progress: Progress | None = None,
    ) -> VolumeView:
        """A new ISO volume holding ``image``."""
        check_name(name)
        if not image.stat().st_size:
            raise InvalidRequest("the ISO image is empty")
        if not looks_like_iso(image):
            raise InvalidRequest("the upload is not an ISO 9660 image (no CD001 descriptor)")
        pool = await self.pools.record(pool_name)
        runtime = await self.pools.runtime(pool)
        size = format_size(image.stat().st_size)
        filled = fill_config(pool, Content.ISO, {"size": size}, runtime.volumes.granularity)
        spec = spec_of(Content.ISO, filled)
        new = NewVolume(pool, project, name, Content.ISO, filled, description)
        await self.volumes.provision(
            new, lambda: runtime.volumes.create_from_image(spec, image, progress)
        )
        return await self.volumes.get(pool_name, name, project=project)
