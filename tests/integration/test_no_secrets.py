"""Neither the password nor a token may show up in logs, reprs or exception texts."""

from __future__ import annotations

import logging
import traceback

import pytest

from lxflex.powerflex import (
    AuthenticationError,
    PowerFlexClient,
    PowerFlexError,
    RetryPolicy,
)
from lxflex.secret import Secret
from lxflex.sim import SimConfig

from ..conftest import GIB, SimFactory


@pytest.mark.parametrize("version", ["3.6", "4.5"])
async def test_debug_logs_and_errors_hold_no_secret(
    make_sim: SimFactory, password: str, caplog: pytest.LogCaptureFixture, version: str
) -> None:
    caplog.set_level(logging.DEBUG)
    sim = await make_sim(api_version=version)
    issued: set[str] = set()
    original_issue = sim.tokens.issue

    def spy(user: str, *, with_refresh: bool = False) -> tuple[str, str | None]:
        access, refresh = original_issue(user, with_refresh=with_refresh)
        issued.add(access)
        if refresh:
            issued.add(refresh)
        return access, refresh

    sim.tokens.issue = spy  # type: ignore[method-assign]
    texts: list[str] = []
    retry = RetryPolicy(attempts=2, initial_backoff=0.01)
    async with PowerFlexClient(sim.url, "admin", Secret(password), retry=retry) as client:
        texts.append(repr(client))
        pd = await client.protection_domain_by_name("pd1")
        pool = await client.storage_pool_by_name("sp1", pd.id)
        vol = await client.create_volume(pool.id, GIB, "secret-test")
        sim.tokens.expire_all()  # forces a re-login
        await client.volume(vol)
        for bad in (client.volume("ffffffffffffffff"), client.rename_volume(vol, "x" * 40)):
            with pytest.raises(PowerFlexError) as info:
                await bad
            texts.append("".join(traceback.format_exception(info.value)))
        await client.remove_volume(vol)
    async with PowerFlexClient(sim.url, "admin", Secret(password + "-wrong")) as wrong:
        with pytest.raises(AuthenticationError) as auth_info:
            await wrong.system()
        texts.append("".join(traceback.format_exception(auth_info.value)))
    texts.append(repr(SimConfig(state_dir=sim.state_dir, admin_password=password)))
    assert len(issued) >= 2
    haystack = caplog.text + "\n".join(texts)
    assert "POST" in caplog.text or "GET" in caplog.text  # DEBUG logging was on
    assert password not in haystack
    for token in issued:
        assert token not in haystack
