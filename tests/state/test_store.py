from __future__ import annotations

import asyncio
import datetime
import stat
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from lxflex.state import CREATE_DONE, Database, DatabaseBusy, NameTaken
from lxflex.state import store as s
from lxflex.state.schema import metadata


async def test_migrations_build_exactly_the_schema(db: Database) -> None:
    def diff(sync_conn: object) -> list[object]:
        ctx = MigrationContext.configure(sync_conn)  # type: ignore[arg-type]
        return list(compare_metadata(ctx, metadata))

    async with db.read() as conn:
        assert await conn.run_sync(diff) == []


async def test_reopening_is_idempotent(db_url: str) -> None:
    first = await Database.open(db_url)
    async with first.write() as conn:
        await s.create_pool(conn, "p", "powerflex", {"k": "v"})
    await first.close()
    again = await Database.open(db_url)
    async with again.read() as conn:
        assert [p.name for p in await s.list_pools(conn)] == ["p"]
    await again.close()


async def test_pool_volume_snapshot_records(db: Database) -> None:
    async with db.write() as conn:
        pool = await s.create_pool(
            conn,
            "pf",
            "powerflex",
            {"powerflex.pool": "abc", "volume.size": "8GiB"},
            description="d",
        )
        assert pool.config == {"powerflex.pool": "abc", "volume.size": "8GiB"}
        assert pool.created_at.tzinfo is not None
        vol = await s.create_volume(
            conn,
            pool.id,
            "default",
            "v1",
            "custom",
            "filesystem",
            {"size": "8GiB", "volatile.uuid": "u"},
        )
        assert vol.status == "creating"
        await s.update_volume(
            conn,
            vol.id,
            step=CREATE_DONE,
            array_id="0123456789abcdef",
            config={"size": "16GiB", "volatile.uuid": "u"},
        )
    async with db.read() as conn:
        got = await s.get_volume(conn, pool.id, "default", "custom", "v1")
        assert got is not None
        assert (got.status, got.array_id, got.config["size"]) == (
            "created",
            "0123456789abcdef",
            "16GiB",
        )
        assert await s.count_volumes(conn, pool.id) == 1
        assert await s.get_volume(conn, pool.id, "default", "custom", "nope") is None
    async with db.write() as conn:
        with pytest.raises(NameTaken):
            await s.create_volume(conn, pool.id, "default", "v1", "custom", "block", {})
    async with db.write() as conn:
        other = await s.create_volume(conn, pool.id, "other-project", "v1", "custom", "block", {})
        first = await s.create_snapshot(conn, vol.id, "snap0", {"size": "16GiB"})
        await asyncio.sleep(0.01)
        second = await s.create_snapshot(
            conn, vol.id, "snap1", {}, expires_at=s.now() + datetime.timedelta(days=1)
        )
        snaps = await s.list_snapshots(conn, vol.id)
        assert [x.name for x in snaps] == ["snap0", "snap1"]
        assert snaps[0].config == {"size": "16GiB"}
        assert snaps[1].expires_at is not None
        with pytest.raises(NameTaken):
            await s.update_snapshot(conn, second.id, name="snap0")
    async with db.write() as conn:
        await s.delete_snapshot(conn, first.id)
        assert (await s.get_snapshot(conn, vol.id, "snap1")) is not None
        listed = await s.list_volumes(conn, pool.id)
        assert {(v.project, v.name) for v in listed} == {("default", "v1"), ("other-project", "v1")}
        assert [v.id for v in await s.list_volumes(conn, pool.id, project="default")] == [vol.id]
        await s.delete_volume(conn, other.id)


async def test_failed_transaction_leaves_nothing(db: Database) -> None:
    async def failing() -> None:
        async with db.write() as conn:
            await s.create_pool(conn, "gone", "powerflex", {"a": "b"})
            raise RuntimeError("a later step failed")

    with pytest.raises(RuntimeError):
        await failing()
    async with db.read() as conn:
        assert await s.get_pool(conn, "gone") is None


async def test_concurrent_read_then_write(db: Database) -> None:
    async with db.write() as conn:
        pool = await s.create_pool(conn, "cnt", "powerflex", {"n": "0"})

    async def bump() -> None:
        async with db.write() as conn:
            current = await s.get_pool(conn, "cnt", for_update=True)
            assert current is not None
            await asyncio.sleep(0.005)
            await s.update_pool(conn, pool.id, config={"n": str(int(current.config["n"]) + 1)})

    await asyncio.gather(*(bump() for _ in range(10)))
    async with db.read() as conn:
        final = await s.get_pool(conn, "cnt")
    assert final is not None
    assert final.config["n"] == "10"


async def test_sqlite_file_is_private(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite:///{tmp_path}/sub/state.db")
    await db.close()
    mode = stat.S_IMODE((tmp_path / "sub" / "state.db").stat().st_mode)
    assert mode == 0o600
    assert "sqlite" in repr(db)


async def test_sqlite_has_one_process_at_a_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    db = await Database.open(url)
    assert db.exclusive
    with pytest.raises(DatabaseBusy, match="in use by another process"):
        await Database.open(url)
    async with db.read() as conn:  # the refused open took nothing from the first
        assert await s.list_pools(conn) == []
    await db.close()
    again = await Database.open(url)  # the lock went with the first
    await again.close()


async def test_an_open_whose_migration_fails_lets_go_of_the_file(tmp_path: Path) -> None:
    """A state from an unknown (newer) schema is refused, and the refusal holds no lock:
    a second try fails the same way, not as "in use by another process"."""
    import sqlite3

    path = tmp_path / "state.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        raw.execute("INSERT INTO alembic_version VALUES ('9999')")
    raw.close()
    for _ in range(2):
        with pytest.raises(Exception, match="9999") as info:
            await Database.open(f"sqlite:///{path}")
        assert not isinstance(info.value, DatabaseBusy)


async def test_only_sqlite_is_exclusive(db: Database) -> None:
    assert db.exclusive == (db.dialect == "sqlite")


async def test_pool_records_are_read_only(db: Database) -> None:
    async with db.write() as conn:
        pool = await s.create_pool(conn, "ro", "powerflex", {"k": "v"})
    with pytest.raises(TypeError):
        pool.config["k"] = "changed"  # type: ignore[index]


def test_head_revision_constant_matches_the_migrations() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from lxflex.state.db import _MIGRATIONS, HEAD_REVISION

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION
