"""The state's shared lock and notices. On PostgreSQL a key held by one process (a
cluster member) waits another's, a member killed lets go of what it held, and what one
says every one hears. On SQLite the lock is nothing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from lxflex.state import Database


async def test_a_key_one_member_holds_waits_another_and_other_keys_do_not(pg_url: str) -> None:
    a, b = await Database.open(pg_url), await Database.open(pg_url)
    try:
        order: list[str] = []
        async with a.shared_lock("volume\0pf\0default\0v1"):
            waiting = asyncio.create_task(_take(b, "volume\0pf\0default\0v1", order))
            async with b.shared_lock("volume\0pf\0default\0v2"):  # another key: at once
                order.append("b has v2")
            await asyncio.sleep(0.3)
            assert not waiting.done()  # v1 is a's
            order.append("a lets go of v1")
        await asyncio.wait_for(waiting, 10)
        assert order == ["b has v2", "a lets go of v1", "b has v1"]
    finally:
        await a.close()
        await b.close()


async def test_a_try_says_whether_another_member_holds_the_key(pg_url: str) -> None:
    a, b = await Database.open(pg_url), await Database.open(pg_url)
    try:
        async with a.shared_lock("k1"):
            async with b.try_shared_lock("k1") as free:
                assert not free  # a's: not waited for
            async with b.try_shared_lock("k2") as free:
                assert free
                async with a.try_shared_lock("k2") as also:
                    assert not also  # b holds it for the block
        async with b.try_shared_lock("k1") as free:
            assert free  # a let go
        async with b.try_shared_lock("k1") as free:
            assert free  # and b let go after its try
    finally:
        await a.close()
        await b.close()


async def _take(db: Database, key: str, order: list[str]) -> None:
    async with db.shared_lock(key):
        order.append("b has v1")


_HOLDER = """
import asyncio, sys
from lxflex.state import Database

async def main():
    db = await Database.open(sys.argv[1])
    async with db.shared_lock("volume\\0pf\\0default\\0v1"):
        print("held", flush=True)
        await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_a_killed_member_lets_go_of_its_locks(pg_url: str) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, pg_url, stdout=asyncio.subprocess.PIPE
    )
    db = await Database.open(pg_url)
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 30)
        assert line.strip() == b"held"
        taking = asyncio.create_task(_take(db, "volume\0pf\0default\0v1", []))
        await asyncio.sleep(0.3)
        assert not taking.done()
        holder.kill()  # kill -9: no unlock is ever sent
        await asyncio.wait_for(taking, 15)
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()
        await db.close()


async def test_sqlite_needs_no_shared_lock(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite:///{tmp_path}/lxflex.db")
    try:
        # One process: nothing to wait for, nothing held against it.
        async with db.shared_lock("k"), db.shared_lock("k"), db.try_shared_lock("k") as free:
            assert free
    finally:
        await db.close()


async def test_what_one_member_says_every_member_hears(pg_url: str) -> None:
    a, b = await Database.open(pg_url), await Database.open(pg_url)
    try:
        heard: list[str] = []
        listening = b.notices("lxflex_test")

        async def listen() -> None:
            async for payload in listening:
                heard.append(payload)
                if len(heard) == 2:
                    return

        task = asyncio.create_task(listen())
        await asyncio.sleep(0.5)  # LISTEN is in place
        await a.notify("lxflex_test", '{"n": 1}')
        await b.notify("lxflex_test", '{"n": 2}')  # its own too
        await asyncio.wait_for(task, 10)
        assert heard == ['{"n": 1}', '{"n": 2}']
        with pytest.raises(ValueError, match="at most"):
            await a.notify("lxflex_test", "x" * 8000)
    finally:
        await a.close()
        await b.close()
