"""The simulator's manual clock: time moves only by hand, and sleepers wake on time."""

from __future__ import annotations

import asyncio

import pytest

from lxflex.sim import ManualClock


async def test_sleepers_wake_at_their_deadline_in_order() -> None:
    clock = ManualClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("b", 2), ("a", 1), ("c", 2))]
    await asyncio.wait_for(clock.until_sleeping(3), 10)
    start = clock.monotonic()
    clock.advance(0.5)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(0.5)
    await asyncio.wait_for(tasks[1], 10)
    assert woke == ["a"]
    clock.advance(1)
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert woke == ["a", "b", "c"]  # ties in the order they slept
    assert clock.monotonic() - start == 2
    assert clock.sleeping == 0


async def test_a_cancelled_sleeper_is_not_counted_and_time_never_goes_back() -> None:
    clock = ManualClock(start=100.0)
    task = asyncio.create_task(clock.sleep(5))
    await asyncio.wait_for(clock.until_sleeping(1), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.sleeping == 0
    clock.advance(10)  # wakes nothing that is gone
    assert clock.time() == 110.0
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)
    await clock.sleep(0)  # no wait at all
