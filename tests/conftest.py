"""Shared fixtures: a simulator on loopback per test, and clients bound to it."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lxflex.powerflex import PowerFlexClient, RetryPolicy
from lxflex.secret import Secret
from lxflex.sim import Clock, SimConfig, Simulator

GIB = 1024**3

SimFactory = Callable[..., Awaitable[Simulator]]


def _loop_devices(under: Path) -> set[str]:
    """Loop devices whose backing file lies under ``under`` (this test's own)."""
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=False).stdout
    found = set()
    for line in out.splitlines():
        device, _, rest = line.partition(":")
        if f"({under}/" in rest:
            found.add(device)
    return found


@pytest.fixture
def password() -> str:
    return "pw-" + secrets.token_urlsafe(12)


@pytest.fixture
async def make_sim(tmp_path: Path, password: str) -> AsyncIterator[SimFactory]:
    """Start simulators (stopped at teardown); keyword arguments go to SimConfig, but
    ``clock``, which is the simulator's (a ManualClock for tests of time)."""
    started: list[Simulator] = []

    async def factory(*, clock: Clock | None = None, **kwargs: Any) -> Simulator:
        kwargs.setdefault("state_dir", tmp_path / f"sim{len(started)}")
        kwargs.setdefault("admin_password", password)
        sim = Simulator(SimConfig(**kwargs), clock)
        await sim.start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        await sim.stop()
    if os.geteuid() == 0:  # every simulator detaches what it attached
        leaked = _loop_devices(tmp_path)
        for dev in leaked:
            subprocess.run(["losetup", "-d", dev], check=False)
        assert not leaked, f"loop devices leaked by a simulator: {leaked}"


@pytest.fixture(params=["3.6", "4.5", "5.0"])
def api_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def sim(make_sim: SimFactory, api_version: str) -> Simulator:
    return await make_sim(api_version=api_version)


FAST_RETRY = RetryPolicy(attempts=4, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
async def client(sim: Simulator, password: str) -> AsyncIterator[PowerFlexClient]:
    async with PowerFlexClient(sim.url, "admin", Secret(password), retry=FAST_RETRY) as c:
        yield c


@pytest.fixture
async def control(sim: Simulator) -> AsyncIterator[Control]:
    async with aiohttp.ClientSession(base_url=sim.url) as session:
        yield Control(session)


class Control:
    """Calls to the simulator's /_sim/ endpoints."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def get(self, path: str) -> Any:
        async with self.session.get(path) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def post(self, path: str, body: Any = None) -> Any:
        async with self.session.post(path, json=body or {}) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def fault(self, **fault: Any) -> None:
        await self.post("/_sim/faults", fault)

    async def clear_faults(self) -> None:
        async with self.session.delete("/_sim/faults") as r:
            assert r.status == 200, await r.text()

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.get("/_sim/stats")
        return result


def unmount_under(root: Path) -> None:
    """Lazily unmount whatever is mounted at or under ``root`` (deepest first): what a
    failed test left."""
    mounts = subprocess.run(
        ["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=False
    ).stdout.split()
    inside = (m for m in mounts if m == str(root) or m.startswith(f"{root}/"))
    for target in sorted(inside, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


@pytest.fixture
def root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices")


@pytest.fixture
def no_leaked_loops(root_only: None, tmp_path: Path) -> Any:
    """Fail a test that leaves behind loop devices over its own files (and detach them)."""
    yield
    leaked = _loop_devices(tmp_path)
    for dev in leaked:
        subprocess.run(["losetup", "-d", dev], check=False)
    assert not leaked, f"loop devices leaked: {leaked}"


# --- databases: SQLite in a temp dir, and a throwaway PostgreSQL cluster ---------------
# The cluster starts once per session on a private unix socket (no TCP), as the postgres
# user when running as root, and is removed afterwards. Without the server binaries the
# PostgreSQL cases are skipped, except on CI, where they must run.

_counter = itertools.count()


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def pg_socket() -> Iterator[str]:
    bindir = _pg_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries are missing on CI")
        pytest.skip("PostgreSQL server binaries are not installed")
    root = Path(tempfile.mkdtemp(prefix="lxflex-pg-"))
    user: str | None = None
    if os.geteuid() == 0:
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data = root / "data"

    def run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, user=user, cwd=root)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "lxflex", "--no-sync")
        run(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "-o",
            f"-k {root} -c listen_addresses='' -c fsync=off -c full_page_writes=off",
            "start",
        )
        yield str(root)
    finally:
        if data.exists():
            subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                check=False,
                capture_output=True,
                user=user,
                cwd=root,
            )
        shutil.rmtree(root, ignore_errors=True)


def _createdb(socket: str, name: str) -> None:
    bindir = _pg_bin()
    assert bindir is not None
    subprocess.run(
        [str(bindir / "createdb"), "-h", socket, "-U", "lxflex", name],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def pg_url(pg_socket: str) -> str:
    """A fresh PostgreSQL database of its own (a cluster's shared state)."""
    name = f"lxflex_pg_{next(_counter)}"
    _createdb(pg_socket, name)
    return f"postgresql://lxflex@/{name}?host={pg_socket}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/lxflex.db"
    socket = request.getfixturevalue("pg_socket")
    name = f"lxflex_test_{next(_counter)}"
    _createdb(socket, name)
    return f"postgresql://lxflex@/{name}?host={socket}"
