"""A cluster on loopback: one throwaway PostgreSQL database, one ``lxflex-sim`` (one
array), and lxflexd members, each on its own emulated host of that simulator (its own
nvme shim, by-id links and sysfs) and its own state directory, reached by the real
``lxc`` through its unix socket."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pylxd
import pytest

from tests.compat.daemon import BIN, Daemon, _ready, free_port, stop_process
from tests.conftest import unmount_under

THRESHOLD = 11  # seconds: the least lxflexd (and LXD) accept, so Offline shows soon


@dataclass
class Member:
    name: str
    address: str
    daemon: Daemon
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)  # beside the environment's

    def lxc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.daemon.lxc(*args, check=check)

    def query(self, path: str) -> Any:
        return json.loads(self.lxc("query", path).stdout)

    def start(self) -> None:
        with open(self.daemon.log, "a") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )
        deadline = time.monotonic() + 60
        while not _ready(self.daemon.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not start:\n{self.daemon.log.read_text()}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        stop_process(self.proc, sig)


@dataclass
class Cluster:
    sim_url: str
    sim_password: str
    db_url: str
    root: Path
    members: list[Member] = field(default_factory=list)
    created: list[Member] = field(default_factory=list)  # stopped at teardown

    @staticmethod
    def _member_flags(name: str, address: str) -> list[str]:
        return [
            "--cluster-name",
            name,
            "--cluster-address",
            address,
            "--offline-threshold",
            str(THRESHOLD),
        ]

    def new_member(self, name: str, *, db: bool = True, clustered: bool = True) -> Member:
        """A member on a new emulated host of the simulator, not started; its argv names
        the shared database unless ``db`` is false (a server joining by token). Not
        ``clustered``: a standalone server on that host (SQLite in its state directory)."""
        host = _post(f"{self.sim_url}/_sim/fabric/hosts", {"name": name})
        root = Path(host["bin"]).parent
        address = f"127.0.0.1:{free_port()}"
        daemon = Daemon(self.root / name, self.root / f"{name}-conf", self.root / f"{name}.log")
        daemon.conf.mkdir(parents=True, exist_ok=True)
        argv = [
            str(BIN / "lxflexd"),
            "--state-dir",
            str(daemon.state),
            *(["--db", self.db_url] if db and clustered else []),
            *(self._member_flags(name, address) if clustered else []),
            "--nvme",
            str(Path(host["bin"]) / "nvme"),
            "--by-id-dir",
            host["by_id"],
            "--sysfs",
            host["sys_root"],
            "--host-root",
            str(root),
        ]
        member = Member(name, address, daemon, argv)
        self.created.append(member)
        return member

    def pool_config(self) -> dict[str, str]:
        return {
            "powerflex.gateway": self.sim_url,
            "powerflex.pool": "sp1",
            "powerflex.domain": "pd1",
        }

    def make_pool(self, member: Member, name: str = "pf") -> None:
        """The pool on the simulator's sp1, made through ``member`` with pylxd, which
        keeps the gateway password off every command line."""
        config = {**self.pool_config(), "powerflex.user.password": self.sim_password}
        client = pylxd.Client(endpoint=str(member.daemon.socket))
        client.storage_pools.create({"name": name, "driver": "powerflex", "config": config})


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _delete(url: str) -> None:
    request = urllib.request.Request(url, method="DELETE")
    with urllib.request.urlopen(request, timeout=30):
        pass


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def cluster(
    root_only: None, tmp_path: Path, pg_url: str, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """Members m1, m2 (and more, for a test marked ``members(n)``), started; the test
    may stop and start them."""
    marker = request.node.get_closest_marker("members")
    count = marker.args[0] if marker else 2
    db_url = pg_url
    password = "pw-" + secrets.token_urlsafe(12)
    sim_log = open(tmp_path / "sim.log", "w")  # noqa: SIM115 - closed at teardown
    sim = subprocess.Popen(
        [str(BIN / "lxflex-sim"), "--state-dir", str(tmp_path / "sim")],
        stdout=subprocess.PIPE,
        stderr=sim_log,
        env={**os.environ, "LXFLEX_SIM_ADMIN_PASSWORD": password},
    )
    made: Cluster | None = None
    try:
        assert sim.stdout is not None
        info = json.loads(sim.stdout.readline())
        made = Cluster(info["url"], password, db_url, tmp_path)
        for name in (f"m{i}" for i in range(1, count + 1)):
            member = made.new_member(name)
            member.start()
            made.members.append(member)
        yield made
    finally:
        for member in made.created if made else []:
            member.stop()
        # What a failed test left attached: unmounted before the simulator lets go of
        # the devices under it.
        unmount_under(tmp_path)
        stop_process(sim)
        sim_log.close()
