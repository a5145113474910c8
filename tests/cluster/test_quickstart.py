"""The README's cluster on one machine: scripts/cluster-quickstart makes three members
(the second and third joining by token) and one pool for them all, and stops them."""

from __future__ import annotations

import glob
import os
import random
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cluster-quickstart"


def _free_ports(count: int) -> int:
    """A base port with ``count`` free ports from it, on loopback."""
    for _ in range(50):
        base = random.randrange(20_000, 60_000)
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no free ports")


def test_the_cluster_quickstart_makes_three_members_and_one_pool(root_only: None) -> None:
    if shutil.which("lxc") is None or not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        if os.environ.get("CI"):
            pytest.fail("lxc and the PostgreSQL server binaries are installed on CI")
        pytest.skip("needs lxc (lxd-client) and the PostgreSQL server binaries")
    # Not under pytest's own directory (0700): PostgreSQL runs as postgres.
    state = Path(tempfile.mkdtemp(prefix="lxflex-cluster-", dir="/tmp"))
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("LXD_DIR", "LXD_CONF", "LXFLEX_DB")},
        "LXFLEX_CLUSTER": str(state),
        "LXFLEX_CLUSTER_PORT": str(_free_ports(3)),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300, check=False
        )

    try:
        made = run()
        assert made.returncode == 0, made.stdout + made.stderr
        out = made.stdout
        assert out.count("| ONLINE | Fully operational |") == 3, out
        assert "Storage pool pf created" in out
        assert "| custom | shared |" in out  # listed through m3, made through m2
        password = (state / "sim-password").read_text().strip()
        assert password not in out + made.stderr
        assert not list(state.glob("*.token"))  # used and gone
        again = run()  # a second run reuses what is there
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.count("| ONLINE | Fully operational |") == 3
    finally:
        stopped = run("stop")
        try:
            assert stopped.returncode == 0, stopped.stderr
            assert not list(state.glob("*.pid"))
            loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False)
            assert str(state) not in loops.stdout
        finally:
            shutil.rmtree(state, ignore_errors=True)
