"""Block volumes filled from disk images: qcow2 (made with qemu-img) and raw, written
sparsely and verified; other formats and images with backing files refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from lxflex.driver.errors import InvalidRequest
from lxflex.driver.naming import Content, VolumeType
from lxflex.driver.volumes import VolumeSpec
from lxflex.service import Storage

from ..conftest import GIB
from .conftest import StorageFactory, read_chunks, volumes_of

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img (qemu-utils) missing"),
]

MIB = 1 << 20
CHUNKS = {0: os.urandom(MIB), 40 * MIB: os.urandom(65536), 96 * MIB - 4096: os.urandom(4096)}


@pytest.fixture
async def storage(make_storage: StorageFactory) -> Storage:
    return await make_storage("4.5")


def _spec(size: int = 0) -> VolumeSpec:
    return VolumeSpec(
        uuid=uuid.uuid4(),
        volume_type=VolumeType.CUSTOM,
        content=Content.BLOCK,
        size=size,
        thin=True,
        filesystem="ext4",
        mount_options="",
    )


def _raw(path: Path) -> Path:
    with open(path, "wb") as f:
        f.truncate(96 * MIB)
        for offset, data in CHUNKS.items():
            f.seek(offset)
            f.write(data)
    return path


def _qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
async def test_disk_image_fills_a_thin_volume(storage: Storage, tmp_path: Path, fmt: str) -> None:
    image = _raw(tmp_path / "disk.raw")
    if fmt == "qcow2":
        _qemu_img("convert", "-f", "raw", "-O", "qcow2", str(image), str(tmp_path / "disk.qcow2"))
        image = tmp_path / "disk.qcow2"
    volumes = await volumes_of(storage)
    vol = await volumes.create_from_disk_image(_spec(), image)
    array = storage.sim.array.volumes[vol]  # type: ignore[attr-defined]
    assert array.size_kb * 1024 == 8 * GIB  # the 96 MiB disk, rounded up to the granularity
    assert await read_chunks(volumes, vol, CHUNKS) == CHUNKS
    allocated = storage.sim.data.allocated(vol)  # type: ignore[attr-defined]
    assert allocated <= 2 * MIB  # the data, not the 96 MiB disk
    assert not any(volumes.scratch.glob("image-*"))  # the converted file is gone
    await volumes.delete(vol)


async def test_unusable_images_are_refused(storage: Storage, tmp_path: Path) -> None:
    volumes = await volumes_of(storage)
    before = set(storage.sim.array.volumes)  # type: ignore[attr-defined]
    base = _raw(tmp_path / "base.raw")
    _qemu_img("convert", "-f", "raw", "-O", "vmdk", str(base), str(tmp_path / "disk.vmdk"))
    with pytest.raises(InvalidRequest, match="must be raw or qcow2, not vmdk"):
        await volumes.create_from_disk_image(_spec(), tmp_path / "disk.vmdk")
    _qemu_img(
        "create", "-f", "qcow2", "-F", "raw", "-b", str(base), str(tmp_path / "overlay.qcow2")
    )
    with pytest.raises(InvalidRequest, match="backing file"):
        await volumes.create_from_disk_image(_spec(), tmp_path / "overlay.qcow2")
    assert set(storage.sim.array.volumes) == before  # type: ignore[attr-defined]
