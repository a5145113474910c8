"""The membership use cases: Online and Offline by the heartbeat's age, with LXD's
message; removal refused for a member that still runs; a cluster needs PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from lxflex.driver import Conflict, InvalidRequest, NotFound
from lxflex.service import ClusterService, ClusterSettings
from lxflex.state import Database
from lxflex.state import store as st
from lxflex.state.schema import servers

A, B = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"


async def _silence(db: Database, uuid: str, seconds: int) -> None:
    """Move the member's last heartbeat ``seconds`` into the past."""
    async with db.write() as conn:
        when = sa.func.now() - sa.text(f"interval '{seconds} seconds'")
        await conn.execute(
            sa.update(servers).where(servers.c.uuid == uuid).values(heartbeat_at=when)
        )


@pytest.fixture
def db_url(pg_url: str) -> str:
    """PostgreSQL only: a cluster shares one."""
    return pg_url


async def test_a_silent_member_is_offline_and_says_since_when(db: Database) -> None:
    async with db.write() as conn:
        for uuid in (A, B):
            await st.ensure_server(conn, uuid, "host")
    m1 = ClusterService(db, A, ClusterSettings("m1", "127.0.0.1:8443"))
    m2 = ClusterService(db, B, ClusterSettings("m2", "127.0.0.1:8444"))
    await m1.join("PEM-A")
    await m2.join("PEM-B")
    assert [(m.name, m.online, m.message) for m in await m1.members()] == [
        ("m1", True, "Fully operational"),
        ("m2", True, "Fully operational"),
    ]
    await _silence(db, B, 25)
    seen = await m1.member("m2")
    assert not seen.online
    assert seen.message.startswith("No heartbeat for 25s (")
    assert await m2.beat()  # it comes back
    assert (await m1.member("m2")).online
    with pytest.raises(InvalidRequest, match="is online"):
        await m1.removable("m2")
    with pytest.raises(InvalidRequest, match="cannot remove itself"):
        await m1.removable("m1", force=True)
    await _silence(db, B, 60)
    assert (await m1.removable("m2")).server_uuid == B
    await m1.leave("m2")
    with pytest.raises(NotFound, match="Cluster member not found"):
        await m1.member("m2")
    assert not await m2.beat()  # removed: it knows
    with pytest.raises(Conflict, match="another server"):
        await ClusterService(db, B, ClusterSettings("m1", "127.0.0.1:9")).join("PEM")


async def test_a_cluster_needs_postgresql_and_a_valid_name(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite:///{tmp_path}/lxflex.db")
    try:
        with pytest.raises(InvalidRequest, match="PostgreSQL"):
            await ClusterService(db, A, ClusterSettings("m1", "127.0.0.1:8443")).join("PEM")
    finally:
        await db.close()
    for bad in ("-m1", "m 1", "", "x" * 64):
        with pytest.raises(InvalidRequest, match="invalid cluster member name"):
            ClusterSettings(bad, "127.0.0.1:8443")
    with pytest.raises(InvalidRequest, match="greater than 10"):
        ClusterSettings("m1", "127.0.0.1:8443", offline_threshold=10)


async def test_a_member_resumes_from_the_shared_state_and_a_stranger_is_refused(
    db: Database,
) -> None:
    C = "00000000-0000-0000-0000-00000000000c"
    async with db.write() as conn:
        for uuid in (A, B, C):
            await st.ensure_server(conn, uuid, "host")
    lone = ClusterService(db, C, None)
    assert await lone.resume(20) is None  # no members yet: a standalone server
    await ClusterService(db, A, ClusterSettings("m1", "127.0.0.1:8443")).join("PEM-A")
    again = ClusterService(db, A, None)
    assert await again.resume(15) == ClusterSettings("m1", "127.0.0.1:8443", 15)
    assert again.name == "m1"
    with pytest.raises(InvalidRequest, match=r"a cluster's \(members m1\) and this server"):
        await ClusterService(db, B, None).resume(20)
    # Names for a join token: a new one, well formed, and only in a cluster.
    await again.check_new_member("m2")
    with pytest.raises(Conflict, match="already has a member with name: m1"):
        await again.check_new_member("m1")
    with pytest.raises(InvalidRequest, match="invalid cluster member name"):
        await again.check_new_member("-bad")
    with pytest.raises(InvalidRequest, match="not clustered"):
        await lone.check_new_member("m2")
    assert (await again.database_url()).startswith("postgresql://")


async def test_an_event_larger_than_a_notice_is_heard_whole(db: Database) -> None:
    """PostgreSQL's notices hold 8,000 bytes: a larger event goes in parts (cut between
    characters), heard whole and in order with the small ones; a huge one is refused."""
    m1 = ClusterService(db, A, ClusterSettings("m1", "127.0.0.1:8443"))
    m2 = ClusterService(db, B, ClusterSettings("m2", "127.0.0.1:8444"))
    big = '{"resources": "' + "snapshot-é-" * 3000 + '"}'  # 36 KB, two-byte characters
    heard: list[str] = []

    async def listen() -> None:
        async for payload in m2.heard():
            heard.append(payload)
            if len(heard) == 3:
                return

    task = asyncio.create_task(listen())
    await asyncio.sleep(0.5)  # LISTEN is in place
    await m1.tell('{"n": 1}')
    await m1.tell(big)
    await m1.tell('{"n": 2}')
    await asyncio.wait_for(task, 10)
    assert heard == ['{"n": 1}', big, '{"n": 2}']
    with pytest.raises(ValueError, match="more than 64 notices"):
        await m1.tell("x" * 600_000)
