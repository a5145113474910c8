"""Fixtures of the service-level integration tests: the storage service on a simulator
with a ready pool, and reading and writing volumes through their devices."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from lxflex.driver.volumes import PowerFlexVolumes
from lxflex.embedded import host_settings
from lxflex.secret import Secret
from lxflex.service import Storage

from ..conftest import SimFactory, unmount_under

StorageFactory = Callable[..., Awaitable[Storage]]


@pytest.fixture
async def make_storage(
    no_leaked_loops: None, make_sim: SimFactory, password: str, tmp_path: Path
) -> AsyncIterator[StorageFactory]:
    """``await make_storage(api_version, mode)``: the service on a fresh simulator of that
    API version, with a pool ``pf`` on its ``sp1`` (in ``mode``, else the discovered one);
    ``storage.sim`` is the simulator. Mounts
    under the test's directory and the services are cleaned up at the end."""
    made: list[Storage] = []

    async def make(api_version: str = "4.5", mode: str | None = None) -> Storage:
        sim = await make_sim(api_version=api_version)
        store = await Storage.open(host_settings(sim, tmp_path / f"lxflex{len(made)}"))
        made.append(store)
        store.sim = sim  # type: ignore[attr-defined]
        config = {
            "powerflex.gateway": sim.url,
            "powerflex.pool": "sp1",
            "powerflex.domain": "pd1",
        }
        if mode:
            config["powerflex.mode"] = mode
        await store.pools.create("pf", "powerflex", config, password=Secret(password))
        return store

    try:
        yield make
    finally:
        unmount_under(tmp_path)
        for store in made:
            await store.close()


async def volumes_of(storage: Storage, pool: str = "pf") -> PowerFlexVolumes:
    return (await storage.pools.runtime(await storage.pools.record(pool))).volumes


async def write_chunks(volumes: PowerFlexVolumes, array_id: str, chunks: dict[int, bytes]) -> None:
    async with volumes.attached(array_id) as device:
        fd = os.open(device, os.O_RDWR)
        try:
            for offset, data in chunks.items():
                os.pwrite(fd, data, offset)
            os.fsync(fd)
        finally:
            os.close(fd)


async def read_chunks(
    volumes: PowerFlexVolumes, array_id: str, chunks: dict[int, bytes]
) -> dict[int, bytes]:
    async with volumes.attached(array_id) as device:
        fd = os.open(device, os.O_RDONLY)
        try:
            return {offset: os.pread(fd, len(data), offset) for offset, data in chunks.items()}
        finally:
            os.close(fd)
