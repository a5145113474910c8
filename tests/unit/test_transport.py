"""The aiohttp transport against a real HTTP server on loopback: its connection cap."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from aiohttp.test_utils import TestServer

from lxflex.powerflex import DEFAULT_CONNECTIONS, AiohttpTransport, parse_gateway
from lxflex.powerflex.transport import HttpRequest


class Counting:
    """A server that holds each request until ``wanted`` are in flight (or ``patience``
    passes), and records the most it ever held at once."""

    def __init__(self, wanted: int, patience: float) -> None:
        self.wanted = wanted
        self.patience = patience
        self.in_flight = 0
        self.peak = 0
        self.enough = asyncio.Event()

    async def handle(self, _: web.Request) -> web.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self.wanted:
            self.enough.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.enough.wait(), self.patience)
        self.in_flight -= 1
        return web.json_response("ok")


async def _peak(limit: int | None, requests: int, wanted: int, patience: float) -> int:
    counting = Counting(wanted, patience)
    app = web.Application()
    app.router.add_get("/api/version", counting.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        gateway = parse_gateway(f"http://127.0.0.1:{server.port}")
        transport = (
            AiohttpTransport(gateway) if limit is None else AiohttpTransport(gateway, limit=limit)
        )
        try:
            answers = await asyncio.gather(
                *(transport.send(HttpRequest("GET", "/api/version", {})) for _ in range(requests))
            )
        finally:
            await transport.close()
    assert [a.status for a in answers] == [200] * requests
    return counting.peak


async def test_requests_in_flight_never_exceed_the_cap() -> None:
    # Each request waits for a fourth to arrive, which the cap of 3 never lets in.
    assert await _peak(3, requests=7, wanted=4, patience=0.2) == 3


async def test_the_default_cap_lets_a_burst_of_100_through_at_once() -> None:
    assert DEFAULT_CONNECTIONS >= 100
    assert await _peak(None, requests=100, wanted=100, patience=10) == 100
