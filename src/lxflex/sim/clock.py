"""The simulator's time: the system's, or one a test moves by hand.

Everything in the simulator that depends on time asks its clock: token lifetimes and
idle timeouts, the creation time of volumes and snapshots, and the latency of faults.
A test gives the simulator a :class:`ManualClock` and moves it with
:meth:`ManualClock.advance`, so that a token expires, or a delayed request finishes,
exactly when the test says and never because the machine was slow.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations)."""
        ...

    def time(self) -> float:
        """Seconds since the epoch (for timestamps the gateway shows)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real time."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """Time that stands still until :meth:`advance` moves it; sleepers wake when it
    reaches their deadline."""

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self._now = start
        self._epoch = start
        self._order = itertools.count()  # ties wake in the order they slept
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._slept = asyncio.Condition()  # notified when a caller starts to sleep

    def monotonic(self) -> float:
        return self._now - self._epoch

    def time(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), woken))
        async with self._slept:
            self._slept.notify_all()
        await woken

    @property
    def sleeping(self) -> int:
        """How many callers are waiting in :meth:`sleep` now."""
        return sum(1 for *_, woken in self._sleepers if not woken.done())

    async def until_sleeping(self, count: int) -> None:
        """Return once ``count`` callers wait in :meth:`sleep` at the same time."""
        async with self._slept:
            await self._slept.wait_for(lambda: self.sleeping >= count)

    def advance(self, seconds: float) -> None:
        """Move the time on by ``seconds`` and wake every sleeper whose deadline it
        reaches (they run at the event loop's next turns)."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, woken = heapq.heappop(self._sleepers)
            if not woken.done():  # else its sleeper was cancelled
                woken.set_result(None)
