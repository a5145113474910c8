"""A row's status changes only by the steps of the transition table, as compare-and-set."""

from __future__ import annotations

import pytest

from lxflex.state import (
    CREATE_DONE,
    DELETE_BEGIN,
    DELETE_REFUSED,
    RESTORE_BEGIN,
    RESTORE_DONE,
    Database,
    Status,
    StatusChanged,
)
from lxflex.state import backups as b
from lxflex.state import store as s
from lxflex.state.status import STEPS


def test_every_status_but_the_first_is_reached_and_left_only_by_the_table() -> None:
    """A row starts creating (a volume, a snapshot) or pending (a pool defined on
    members); every other status only a step reaches."""
    reached = {step.new for step in STEPS}
    left = {step.old for step in STEPS}
    assert reached == {Status.CREATED, Status.DELETING, Status.RESTORING}
    assert left == set(Status)  # none is a dead end but by removal
    assert all(step.old is not step.new for step in STEPS)
    assert len({(step.old, step.new) for step in STEPS}) == len(STEPS)
    assert [status.visible for status in Status] == [False, True, True, True, True]


async def _volume(db: Database) -> s.Volume:
    async with db.write() as conn:
        pool = await s.create_pool(conn, "pf", "powerflex", {})
        return await s.create_volume(conn, pool.id, "default", "v", "custom", "block", {})


async def _status(db: Database, vol: s.Volume) -> Status:
    async with db.read() as conn:
        found = await s.get_volume(conn, vol.pool_id, "default", "custom", "v")
    assert found is not None
    return found.status


async def test_a_volume_walks_the_table(db: Database) -> None:
    vol = await _volume(db)
    assert vol.status is Status.CREATING
    for step in (CREATE_DONE, RESTORE_BEGIN, RESTORE_DONE, DELETE_BEGIN, DELETE_REFUSED):
        async with db.write() as conn:
            await s.update_volume(conn, vol.id, step=step)
        assert await _status(db, vol) is step.new


async def test_a_step_from_another_status_changes_nothing(db: Database) -> None:
    vol = await _volume(db)
    async with db.write() as conn:
        await s.update_volume(conn, vol.id, step=CREATE_DONE)
    with pytest.raises(StatusChanged, match="delete refused by the array, but it is not deleting"):
        async with db.write() as conn:
            await s.update_volume(conn, vol.id, step=DELETE_REFUSED, description="lost")
    async with db.read() as conn:
        found = await s.get_volume(conn, vol.pool_id, "default", "custom", "v")
    assert found is not None
    assert (found.status, found.description) == (Status.CREATED, "")


async def test_two_writers_cannot_both_begin_one_delete(db: Database) -> None:
    vol = await _volume(db)
    async with db.write() as conn:
        await s.update_volume(conn, vol.id, step=CREATE_DONE)
        await s.update_volume(conn, vol.id, step=DELETE_BEGIN)
    with pytest.raises(StatusChanged):
        async with db.write() as conn:
            await s.update_volume(conn, vol.id, step=DELETE_BEGIN)


async def test_a_status_is_never_set_by_value(db: Database) -> None:
    vol = await _volume(db)
    with pytest.raises(TypeError, match="status Step"):
        async with db.write() as conn:
            await s.update_volume(conn, vol.id, status="created")
    assert await _status(db, vol) is Status.CREATING


async def test_snapshot_and_backup_rows_take_steps_too(db: Database) -> None:
    vol = await _volume(db)
    async with db.write() as conn:
        snap = await s.create_snapshot(conn, vol.id, "s0", {})
        await s.update_snapshot(conn, snap.id, step=CREATE_DONE, array_id="ab")
        backup = await b.create_backup(
            conn, vol.id, "b0", expires_at=None, volume_only=True, compression="none"
        )
        assert backup.status is Status.CREATING
        await b.update_backup(conn, backup.id, step=CREATE_DONE)
        with pytest.raises(StatusChanged):
            await b.update_backup(conn, backup.id, step=CREATE_DONE)
    async with db.read() as conn:
        assert [x.status for x in await s.list_snapshots(conn, vol.id)] == [Status.CREATED]
        assert [x.name for x in await s.list_snapshots(conn, vol.id, whole=True)] == ["s0"]
        assert [x.status for x in await b.list_backups(conn, vol.id)] == [Status.CREATED]
