"""Databases for the state tests: SQLite in a temp dir, and a throwaway PostgreSQL cluster.

The PostgreSQL cluster is started once per session on a private unix socket (no TCP),
as the ``postgres`` user when running as root, and removed afterwards. Without the
server binaries the PostgreSQL cases are skipped, except on CI, where they must run.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lxflex.state import Database

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


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/lxflex.db"
    socket = request.getfixturevalue("pg_socket")
    name = f"lxflex_test_{next(_counter)}"
    _createdb(socket, name)
    return f"postgresql://lxflex@/{name}?host={socket}"


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await Database.open(db_url)
    yield database
    await database.close()
