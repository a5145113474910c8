"""Retries, latency and outages, injected through the simulator's control endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from lxflex.powerflex import GatewayError, PowerFlexClient, RetryPolicy, TransportError
from lxflex.secret import Secret
from lxflex.sim import ManualClock, Simulator

from ..conftest import GIB, Control, SimFactory

QUERY = "POST /api/types/Volume/instances/action/queryIdByKey"
CREATE = "POST /api/types/Volume/instances"


@pytest.fixture
def api_version() -> str:
    return "4.5"


async def _pool(client: PowerFlexClient) -> str:
    pd = await client.protection_domain_by_name("pd1")
    return (await client.storage_pool_by_name("sp1", pd.id)).id


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_idempotent_call_survives_transient_errors(
    client: PowerFlexClient, control: Control, status: int
) -> None:
    pool = await _pool(client)
    vol = await client.create_volume(pool, GIB, "retry-me")
    await control.fault(route=QUERY, http_status=status, count=2)
    await control.post("/_sim/stats/reset")
    assert await client.volume_id("retry-me") == vol
    assert (await control.stats())["requests"][QUERY] == 3


async def test_connection_resets_are_retried(client: PowerFlexClient, control: Control) -> None:
    await client.system()
    await control.fault(route="GET /api/types/System/instances", mode="reset", count=1)
    assert (await client.system()).id


async def test_mutations_fail_fast(client: PowerFlexClient, control: Control) -> None:
    pool = await _pool(client)
    await control.fault(route=CREATE, http_status=503, count=1)
    await control.post("/_sim/stats/reset")
    with pytest.raises(GatewayError) as info:
        await client.create_volume(pool, GIB, "once")
    assert info.value.http_status == 503
    assert (await control.stats())["requests"][CREATE] == 1
    assert await client.create_volume(pool, GIB, "once")  # the fault is spent


async def test_injected_gateway_error_code(client: PowerFlexClient, control: Control) -> None:
    await client.system()
    await control.fault(
        route="POST */removeVolume",
        http_status=500,
        error_code=65,
        message="Injected MDM failure",
        count=1,
    )
    with pytest.raises(GatewayError) as info:
        await client.remove_volume("0000000000000001")
    assert (info.value.error_code, info.value.message) == (65, "Injected MDM failure")


async def test_gateway_down_then_up(sim: Simulator, password: str, control: Control) -> None:
    retry = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.02)
    async with PowerFlexClient(sim.url, "admin", Secret(password), retry=retry) as client:
        await client.system()
        await control.post("/_sim/down", {"down": True})
        with pytest.raises(GatewayError) as info:
            await client.system()
        assert info.value.http_status == 503
        await control.post("/_sim/down", {"down": True, "mode": "reset"})
        with pytest.raises(TransportError):
            await client.system()
        await control.post("/_sim/down", {"down": False})
        assert (await client.system()).id


async def test_unreachable_gateway_is_a_transport_error(password: str) -> None:
    retry = RetryPolicy(attempts=2, initial_backoff=0.01)
    async with PowerFlexClient("http://127.0.0.1:1", "admin", Secret(password), retry=retry) as c:
        with pytest.raises(TransportError) as info:
            await c.system()
    assert "unreachable" in str(info.value)


@pytest.fixture
async def clocked(
    make_sim: SimFactory, password: str
) -> AsyncIterator[tuple[PowerFlexClient, Control, ManualClock]]:
    """A client and the control of a simulator whose time moves only by hand."""
    clock = ManualClock()
    sim = await make_sim(api_version="4.5", clock=clock)
    async with (
        PowerFlexClient(sim.url, "admin", Secret(password)) as client,
        aiohttp.ClientSession(base_url=sim.url) as session,
    ):
        yield client, Control(session), clock


async def test_probability_and_latency(
    clocked: tuple[PowerFlexClient, Control, ManualClock],
) -> None:
    client, control, clock = clocked
    await client.system()
    await control.fault(route="GET /api/types/System/instances", latency_ms=50)
    call = asyncio.create_task(client.system())
    await asyncio.wait_for(clock.until_sleeping(1), 10)
    clock.advance(0.049)
    assert clock.sleeping == 1  # the request waits the whole latency
    clock.advance(0.001)
    assert (await call).id
    await control.post("/_sim/faults", {})  # a no-op fault: matches all, never fails
    faults = await control.get("/_sim/faults")
    assert len(faults) == 2
    async with control.session.delete("/_sim/faults") as r:
        assert r.status == 200
    await control.fault(route="GET /api/types/System/instances", http_status=503, probability=0.0)
    for _ in range(5):
        await client.system()


async def test_concurrency_with_latency(
    clocked: tuple[PowerFlexClient, Control, ManualClock],
) -> None:
    client, control, clock = clocked
    pool = await _pool(client)
    await control.fault(route=CREATE, latency_ms=50)
    calls = asyncio.gather(*(client.create_volume(pool, GIB) for _ in range(16)))
    await asyncio.wait_for(clock.until_sleeping(16), 10)  # all in their latency at once
    clock.advance(0.05)
    assert len(set(await calls)) == 16


async def test_timeouts_are_retried_for_reads(
    sim: Simulator, password: str, control: Control
) -> None:
    from lxflex.powerflex import GatewayTimeoutError, Timeouts

    retry = RetryPolicy(attempts=3, initial_backoff=0.01)
    async with PowerFlexClient(
        sim.url, "admin", Secret(password), retry=retry, timeouts=Timeouts(request=0.2)
    ) as client:
        await client.system()
        await control.fault(route="GET /api/types/System/instances", latency_ms=400, count=2)
        assert (await client.system()).id  # two slow answers timed out, the third came back
        await control.fault(route="GET /api/types/System/instances", latency_ms=400, count=3)
        with pytest.raises(GatewayTimeoutError):
            await client.system()
