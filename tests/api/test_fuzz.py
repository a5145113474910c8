"""Random requests against the API: never a 5xx, always an LXD envelope, never a secret.

Runs the daemon's application on the embedded simulator (with fabric emulation, so the
volumes that random input happens to make valid are really created) and sends it
hypothesis-generated bodies, names and queries.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lxflex.api.server import build_app
from lxflex.driver.errors import NotFound
from lxflex.embedded import Embedded, embedded

pytestmark = pytest.mark.root

_KEYS = st.sampled_from(
    [
        "size",
        "block.type",
        "block.filesystem",
        "block.mount_options",
        "user.x",
        "snapshots.expiry",
        "snapshots.pattern",
        "volatile.uuid",
        "powerflex.pool",
        "powerflex.gateway",
        "volume.size",
        "powerflex.user.password",
        "powerflex.mode",
        "powerflex.sdt",
        "zfs.pool_name",
        "",
    ]
)
_VALUES = st.one_of(
    st.sampled_from(
        [
            "8GiB",
            "1",
            "thin",
            "thick",
            "ext4",
            "zfs",
            "3d",
            "snap%d",
            "",
            "-1GiB",
            "nvme",
            "sdc",
            "10.0.0.1",
            "x" * 300,
        ]
    ),
    st.text(max_size=20),
)
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_NAMES = st.one_of(
    st.sampled_from(["v1", "a/b", "..", " ", "x" * 300, "pf", "snap0"]),
    st.text(min_size=1, max_size=12),
)


@pytest.fixture
async def env(no_leaked_loops: None, tmp_path: Path) -> AsyncIterator[tuple[Embedded, TestClient]]:
    async with embedded(tmp_path) as e:
        await e.storage.pools.create("pf", "powerflex", e.pool_config(), password=e.secret)
        client = TestClient(TestServer(build_app(e.storage)))
        await client.start_server()
        try:
            yield e, client
        finally:
            await client.close()
            with contextlib.suppress(NotFound):  # random requests may have deleted the pool
                for view in await e.storage.volumes.all("pf"):
                    await e.storage.volumes.unmount("pf", view.name)


def _check(env: Embedded, status: int, text: str) -> None:
    # 501 "not implemented" is LXD's answer to a method a path does not take, not a fault.
    assert status < 500 or (status == 501 and "not implemented" in text), text
    doc = json.loads(text)
    assert doc["type"] in ("sync", "async", "error"), text
    assert env.password not in text
    tokens = [t for t in env.sim.tokens._tokens]  # every token the gateway has handed out
    assert not any(t in text for t in tokens)


async def _send(client: TestClient, method: str, path: str, body: Any) -> tuple[int, str]:
    data = json.dumps(body)
    async with client.request(
        method, path, data=data, headers={"Content-Type": "application/json"}
    ) as r:
        return r.status, await r.text()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["POST", "PUT", "PATCH", "GET", "DELETE"]),
    target=st.sampled_from(
        ["pools", "pool", "volumes", "volume", "snapshots", "snapshot", "state"]
    ),
    name=_NAMES,
    config=st.dictionaries(_KEYS, _VALUES, max_size=4),
    extra=st.dictionaries(
        st.sampled_from(
            [
                "name",
                "driver",
                "description",
                "content_type",
                "restore",
                "expires_at",
                "source",
                "pool",
                "type",
            ]
        ),
        _JSONISH,
        max_size=4,
    ),
    raw=st.booleans(),
)
async def test_random_requests(
    env: tuple[Embedded, TestClient],
    method: str,
    target: str,
    name: str,
    config: dict[str, str],
    extra: dict[str, Any],
    raw: bool,
) -> None:
    e, client = env
    q = quote(name, safe="")
    path = {
        "pools": "/1.0/storage-pools",
        "pool": f"/1.0/storage-pools/{q}",
        "volumes": "/1.0/storage-pools/pf/volumes/custom",
        "volume": f"/1.0/storage-pools/pf/volumes/custom/{q}",
        "snapshots": f"/1.0/storage-pools/pf/volumes/custom/{q}/snapshots",
        "snapshot": f"/1.0/storage-pools/pf/volumes/custom/v1/snapshots/{q}",
        "state": f"/1.0/storage-pools/pf/volumes/custom/{q}/state",
    }[target]
    body: Any = extra if raw else {"name": name, "config": config, **extra}
    status, text = await _send(client, method, path, body)
    _check(e, status, text)
    status, text = await _send(client, "GET", "/1.0/storage-pools/pf/volumes?recursion=1", None)
    _check(e, status, text)
