"""The driver's block paths and their failures: attach, copy, snapshot and restore.

No root: the host is the driver's Runner seam and a fabric whose devices are files (see
conftest.py). After every failure nothing may be left: no array volume, no mapping, no
device link, and no leftover unless a cleanup itself failed (then exactly that one).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from lxflex.driver.attach import AttachPolicy
from lxflex.driver.errors import Unavailable
from lxflex.driver.naming import Content, VolumeType
from lxflex.driver.spec import CopyPlan, VolumeSpec

from .conftest import Driver

GIB = 2**30
SIZE = 8 * GIB  # the granularity of PowerFlex 4


def _spec(size: int = SIZE) -> VolumeSpec:
    return VolumeSpec(uuid.uuid4(), VolumeType.CUSTOM, Content.BLOCK, size)


def _write(device: Path, offset: int, data: bytes) -> None:
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(device: Path, offset: int, length: int) -> bytes:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


async def _filled(d: Driver, marks: dict[int, bytes]) -> str:
    vol = await d.volumes.create(_spec())
    async with d.volumes.attached(vol) as device:
        for offset, data in marks.items():
            _write(device, offset, data)
    return vol


async def _content(d: Driver, vol: str, marks: dict[int, bytes]) -> dict[int, bytes]:
    async with d.volumes.attached(vol) as device:
        return {offset: _read(device, offset, len(data)) for offset, data in marks.items()}


def _clean(d: Driver, names: list[str]) -> None:
    """The array holds ``names`` and nothing is mapped, linked or left for repair."""
    assert d.names() == names
    assert d.mapped() == []
    assert d.links() == []
    assert d.leftovers.kept == []


async def test_attach_connects_maps_and_detach_undoes_it_all(driver: Driver) -> None:
    vol = await driver.volumes.create(_spec())
    device = await driver.volumes.attacher.attach(vol)
    assert driver.mapped() == [vol]
    assert device.name.startswith("nvme-eui.")
    assert vol in device.name
    again = await driver.volumes.attacher.attach(vol)  # a second user shares it
    assert again == device
    await driver.volumes.attacher.detach(vol)
    assert driver.mapped() == [vol]  # still held by the first
    await driver.volumes.attacher.detach(vol)
    _clean(driver, driver.names())
    subcommands = [argv[1] for argv in driver.runner.ran]
    assert subcommands == ["connect-all", "disconnect"]  # no volume left: the host lets go


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (
            (1, "could not add new controller: Connection refused"),
            r"^attach: .*no NVMe/TCP target answered.*refused",
        ),
        ((0, ""), r"^attach: volume .* did not appear within 0\.2 s"),  # no namespace shows
    ],
    ids=["connect refused", "device never appears"],
)
async def test_a_failed_attach_leaves_no_mapping_and_says_why(
    driver: Driver, answer: tuple[int, str], text: str
) -> None:
    vol = await driver.volumes.create(_spec())
    names = driver.names()
    driver.volumes.attacher.policy = AttachPolicy(appear=0.2, vanish=0.2)
    driver.runner.answers["connect-all"] = answer
    with pytest.raises(Unavailable, match=text):
        async with driver.volumes.attached(vol):
            pass
    _clean(driver, names)


async def test_a_failed_unmap_after_a_failed_attach_is_kept_for_repair(driver: Driver) -> None:
    vol = await driver.volumes.create(_spec())
    driver.runner.answers["connect-all"] = (1, "could not add new controller")
    await driver.control.fault(route="POST */removeMappedHost", http_status=500, error_code=0)
    with pytest.raises(Unavailable, match=r"^attach"):
        async with driver.volumes.attached(vol):
            pass
    assert [(k.kind, k.array_id) for k in driver.leftovers.kept] == [("unmap", vol)]
    assert driver.mapped() == [vol]  # what the leftover says is there


async def test_a_copy_has_the_data_of_its_source_and_of_each_snapshot(driver: Driver) -> None:
    before = {0: b"first" * 100, 3 * GIB: b"far" * 1000}
    after = {0: b"second" * 100, 5 * GIB: b"later" * 10}
    vol = await _filled(driver, before)
    snap = await driver.volumes.snapshot(_spec(), vol, uuid.uuid4())
    async with driver.volumes.attached(vol) as device:
        for offset, data in after.items():
            _write(device, offset, data)
    seen: list[tuple[int, int]] = []
    plan = CopyPlan(_spec(), vol, _spec(), [snap], [uuid.uuid4()])
    result = await driver.volumes.copy(plan, lambda done, total: seen.append((done, total)))
    assert await _content(driver, result.volume_id, after) == after
    assert await _content(driver, result.volume_id, {3 * GIB: before[3 * GIB]}) == {
        3 * GIB: before[3 * GIB]
    }
    (copied_snap,) = result.snapshot_ids
    assert await _content(driver, copied_snap, before) == before
    # Only what holds data is written: zeros stay holes on the thin target.
    assert result.bytes_written < 64 * 2**20
    assert seen
    assert seen[-1][1] == 2 * SIZE
    assert driver.mapped() == []
    assert driver.links() == []


@pytest.mark.parametrize(
    ("route", "text"),
    [
        ("POST /api/types/Volume/instances", "^create volume: "),  # no target
        ("POST */snapshotVolumes", "^snapshot: "),  # the target's, after the first step
    ],
)
async def test_a_failed_copy_leaves_nothing(driver: Driver, route: str, text: str) -> None:
    vol = await _filled(driver, {0: b"data" * 1024})
    snap = await driver.volumes.snapshot(_spec(), vol, uuid.uuid4())
    names = driver.names()
    await driver.control.fault(route=route, http_status=500, error_code=0, count=10)
    plan = CopyPlan(_spec(), vol, _spec(), [snap], [uuid.uuid4()])
    with pytest.raises(Unavailable, match=text):
        await driver.volumes.copy(plan)
    await driver.control.clear_faults()
    _clean(driver, names)


async def test_a_copy_whose_cleanup_fails_keeps_what_it_could_not_remove(driver: Driver) -> None:
    vol = await _filled(driver, {0: b"data" * 1024})
    snap = await driver.volumes.snapshot(_spec(), vol, uuid.uuid4())
    names = driver.names()
    await driver.control.fault(route="POST */snapshotVolumes", http_status=500, count=10)
    await driver.control.fault(route="POST */removeVolume", http_status=500, count=10)
    with pytest.raises(Unavailable):
        await driver.volumes.copy(CopyPlan(_spec(), vol, _spec(), [snap], [uuid.uuid4()]))
    (left,) = driver.leftovers.kept
    assert left.kind == "volume"
    assert sorted([*names, left.array_id or ""]) == sorted(
        v.id if v.id == left.array_id else (v.name or v.id)
        for v in driver.sim.array.volumes.values()
    )


async def test_restore_brings_back_the_snapshot_and_a_failed_one_changes_nothing(
    driver: Driver,
) -> None:
    marks = {0: b"A" * 4096, GIB: b"B" * 4096}
    vol = await _filled(driver, marks)
    snap = await driver.volumes.snapshot(_spec(), vol, uuid.uuid4())
    changed = {0: b"C" * 4096, GIB: b"D" * 4096}
    async with driver.volumes.attached(vol) as device:
        for offset, data in changed.items():
            _write(device, offset, data)
    await driver.control.fault(route="POST */overwriteVolumeContent", http_status=500)
    with pytest.raises(Unavailable, match="restore"):
        await driver.volumes.restore(_spec(), vol, snap)
    assert await _content(driver, vol, changed) == changed
    await driver.control.clear_faults()
    await driver.volumes.restore(_spec(), vol, snap)
    assert await _content(driver, vol, marks) == marks
    assert driver.mapped() == []
    assert driver.leftovers.kept == []


async def test_a_failed_snapshot_makes_nothing(driver: Driver) -> None:
    vol = await driver.volumes.create(_spec())
    names = driver.names()
    await driver.control.fault(route="POST */snapshotVolumes", http_status=500, count=10)
    with pytest.raises(Unavailable, match="snapshot"):
        await driver.volumes.snapshot(_spec(), vol, uuid.uuid4())
    _clean(driver, names)
