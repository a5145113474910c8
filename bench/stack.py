"""A full storage stack for benchmarks: the embedded default (simulator with fabric
emulation, which needs root, and the service on SQLite) with pool ``pf`` on ``sp1``."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from lxflex.embedded import embedded
from lxflex.service import Storage
from lxflex.sim import Simulator


@asynccontextmanager
async def stack(api_version: str = "4.5") -> AsyncIterator[tuple[Simulator, Storage]]:
    with tempfile.TemporaryDirectory(prefix="lxflex-bench-") as tmp:
        async with embedded(Path(tmp), api_version=api_version) as env:
            await env.storage.pools.create(
                "pf", "powerflex", env.pool_config(), password=env.secret
            )
            yield env.sim, env.storage
