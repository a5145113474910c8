"""The nvme shim the simulator writes for each emulated host, run as a host tool would
be (a child process), over plain HTTP and over TLS. The file fabric needs no root."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from lxflex.sim import shims
from tests.conftest import SimFactory


async def _nvme(
    bin_dir: Path, *argv: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / "nvme"),
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_the_shim_answers_as_nvme_cli_would(make_sim: SimFactory, tls: bool) -> None:
    sim = await make_sim(api_version="4.5", tls=tls, fabric_devices="file")
    bin_dir = sim.fabric.hosts["local"].bin_dir
    rc, out, err = await _nvme(bin_dir, "list", "-o", "json")
    assert (rc, err) == (0, "")
    assert json.loads(out) == {"Devices": []}
    rc, out, err = await _nvme(bin_dir, "disconnect", "-d", "nvme9")
    assert rc == 19  # ENODEV, as nvme-cli
    assert "nvme9" in err


async def test_the_shim_says_what_the_simulator_refused(make_sim: SimFactory) -> None:
    sim = await make_sim(api_version="4.5", fabric_devices="file")
    env = {"LXFLEX_SIM_URL": sim.fabric.control_url, "LXFLEX_SIM_HOST": "nobody"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        shims.__file__,
        "nvme",
        "list",
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "HTTP 404" in err.decode()
    assert "no such emulated host" in err.decode()
