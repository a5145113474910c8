"""TLS verification between the client and a simulator serving HTTPS."""

from __future__ import annotations

import pytest

from lxflex.powerflex import PowerFlexClient, RetryPolicy, TlsPolicy, TransportError
from lxflex.secret import Secret

from ..conftest import SimFactory

ONCE = RetryPolicy(attempts=1)


async def test_verification_on_by_default_and_ca_bundle(
    make_sim: SimFactory, password: str
) -> None:
    sim = await make_sim(api_version="4.5", tls=True, fabric=False)
    assert sim.url.startswith("https://127.0.0.1:")
    async with PowerFlexClient(sim.url, "admin", Secret(password), retry=ONCE) as strict:
        with pytest.raises(TransportError) as info:
            await strict.system()
        assert "TLS" in str(info.value) or "certificate" in str(info.value).lower()
    tls = TlsPolicy(ca_file=sim.ca_file)
    async with PowerFlexClient(sim.url, "admin", Secret(password), tls=tls) as trusted:
        assert (await trusted.system()).id == sim.array.system_id
    insecure = TlsPolicy(verify=False)
    async with PowerFlexClient(sim.url, "admin", Secret(password), tls=insecure) as lax:
        assert (await lax.system()).id == sim.array.system_id
