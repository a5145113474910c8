"""The driver's sparse device stream, the transport of copies between servers: a volume
streamed out and into a new one keeps every byte and stays thin; a cut stream leaves
nothing behind."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from lxflex.driver.errors import InvalidRequest
from lxflex.driver.naming import Content, VolumeType
from lxflex.driver.volumes import VolumeSpec
from lxflex.service import Storage

from ..conftest import GIB
from .conftest import StorageFactory, read_chunks, volumes_of, write_chunks

pytestmark = pytest.mark.root


@pytest.fixture
async def storage(make_storage: StorageFactory) -> Storage:
    return await make_storage("4.5")


def _spec() -> VolumeSpec:
    return VolumeSpec(
        uuid=uuid.uuid4(),
        volume_type=VolumeType.CUSTOM,
        content=Content.BLOCK,
        size=8 * GIB,
        thin=True,
        filesystem="ext4",
        mount_options="",
    )


async def test_stream_round_trip(storage: Storage) -> None:
    volumes = await volumes_of(storage)
    source = await volumes.create(_spec())
    chunks = {0: os.urandom(65536), 3 * GIB: os.urandom(1 << 20), 8 * GIB - 4096: os.urandom(4096)}
    await write_chunks(volumes, source, chunks)
    sent: list[int] = []

    async def counted() -> AsyncIterator[bytes]:
        async for frame in volumes.stream_out(source):
            sent.append(len(frame))
            yield frame

    target = await volumes.stream_in(_spec(), counted())
    assert sum(sent) < 2 * (1 << 20)  # the data and its frames, not 8 GiB
    allocated = storage.sim.data.allocated(target)  # type: ignore[attr-defined]
    assert allocated <= 2 * (1 << 20)
    assert await read_chunks(volumes, target, chunks) == chunks
    for vol in (source, target):
        await volumes.delete(vol)


async def test_a_cut_stream_leaves_nothing(storage: Storage) -> None:
    volumes = await volumes_of(storage)
    source = await volumes.create(_spec())
    before = set(storage.sim.array.volumes)  # type: ignore[attr-defined]

    async def cut() -> AsyncIterator[bytes]:
        frames = [frame async for frame in volumes.stream_out(source)]
        for frame in frames[:-1]:  # no end frame
            yield frame

    with pytest.raises(InvalidRequest, match="cut short"):
        await volumes.stream_in(_spec(), cut())
    assert set(storage.sim.array.volumes) == before  # type: ignore[attr-defined]
    await volumes.delete(source)
