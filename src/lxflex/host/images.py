"""Disk images for block volumes: raw as it is, qcow2 converted to a sparse raw file.

``qemu-img`` reads the image's format (never trusting the file name) and converts qcow2
with ``-S 4k``, so runs of zeros become holes of the raw file; the volume is then written
from it without those zeros. Other formats, and backing files (a qcow2 that reads from
another file), are refused: an image must be whole in itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from .runner import Runner

__all__ = ["DiskImages", "ImageError"]

FORMATS = ("raw", "qcow2")
_GPT = b"EFI PART"  # the header's signature, in LBA 1 (512- or 4096-byte sectors)


class ImageError(ValueError):
    """The image cannot be used (its format, or a backing file)."""


class DiskImages:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def info(self, image: Path) -> dict[str, object]:
        done = await self.runner.run(["qemu-img", "info", "--output=json", str(image)], timeout=120)
        doc = json.loads(done.stdout)
        if not isinstance(doc, dict):
            raise ImageError(f"qemu-img says nothing of {image.name}")
        return doc

    async def raw(self, image: Path, scratch: Path) -> tuple[Path, int]:
        """A raw file with the image's content (the image itself when it is raw) and the
        disk's virtual size. A converted file is made in ``scratch``; the caller removes it."""
        doc = await self.info(image)
        fmt = str(doc.get("format", ""))
        if fmt not in FORMATS:
            raise ImageError(f"images must be {' or '.join(FORMATS)}, not {fmt or 'unknown'}")
        if doc.get("backing-filename"):
            raise ImageError("the image reads from a backing file; flatten it first")
        size = int(str(doc.get("virtual-size", 0)))
        if fmt == "raw":
            return image, size
        scratch.mkdir(parents=True, exist_ok=True)
        target = scratch / f"{image.name}.raw"
        await self.runner.run(
            ["qemu-img", "convert", "-f", fmt, "-O", "raw", "-S", "4k", str(image), str(target)],
            timeout=24 * 3600.0,
        )
        return target, size

    async def fit_partition_table(self, device: Path) -> bool:
        """Move a GPT's backup header to the device's end; False when there is no GPT
        (nothing is written then: sgdisk would make a table on a bare disk)."""
        with device.open("rb") as f:
            f.seek(512)
            primary = f.read(8)
            f.seek(4096)
            large_sector = f.read(8)
        if _GPT not in (primary, large_sector):
            return False
        await self.runner.run(["sgdisk", "--move-second-header", str(device)], timeout=120)
        return True
