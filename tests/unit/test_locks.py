"""Keyed locks: one holder per key at a time, and nothing kept once unused."""

from __future__ import annotations

import asyncio

import pytest

from lxflex.locks import KeyedLocks


async def test_one_holder_per_key_others_run_alongside() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    events: list[str] = []

    async def work(key: str, tag: str, pause: float) -> None:
        async with locks.hold(key):
            events.append(f"{tag}+")
            await asyncio.sleep(pause)
            events.append(f"{tag}-")

    await asyncio.gather(work("a", "a1", 0.05), work("a", "a2", 0), work("b", "b1", 0))
    assert events.index("a1-") < events.index("a2+")  # a2 waited for a1
    assert events.index("b1+") < events.index("a1-")  # b never waited for a
    assert len(locks) == 0


async def test_a_failed_or_cancelled_holder_leaves_nothing_behind() -> None:
    locks: KeyedLocks[str] = KeyedLocks()

    async def fail() -> None:
        async with locks.hold("k"):
            raise RuntimeError("boom")

    async def park() -> None:
        async with locks.hold("k"):
            await asyncio.sleep(10)

    with pytest.raises(RuntimeError):
        await fail()
    assert len(locks) == 0
    holder = asyncio.create_task(park())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(park())
    await asyncio.sleep(0)
    assert len(locks) == 1
    waiter.cancel()
    holder.cancel()
    await asyncio.gather(holder, waiter, return_exceptions=True)
    assert len(locks) == 0
