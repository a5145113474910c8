"""pylxd's own storage integration tests (integration/test_storage.py of the installed
pylxd release, taken from its source distribution on PyPI) against lxflexd.

One adaptation: pylxd's helper creates every test pool with the ``dir`` driver and an
empty config; lxflex serves PowerFlex pools only, so a conftest placed beside the
extracted tests makes the helper create a PowerFlex pool on the daemon's simulator.
Nothing else of pylxd's tests changes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from .daemon import Daemon, running_daemon

pytestmark = pytest.mark.root

_CONFTEST = """
import json
import os

from integration.testing import IntegrationTestCase


def _create_storage_pool(self):
    import random
    import string

    name = "".join(random.sample(string.ascii_lowercase, 3)) + "1"
    config = json.loads(os.environ["LXFLEX_POOL_CONFIG"])
    self.client.storage_pools.create({"config": config, "driver": "powerflex", "name": name})
    return name


IntegrationTestCase.create_storage_pool = _create_storage_pool
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("lxflexd-pylxd")) as d:
        yield d


def _pylxd_tests(dest: Path) -> Path:
    release = version("pylxd")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-q",
            "-d",
            str(dest),
            f"pylxd=={release}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    archives = list(dest.glob("pylxd-*.tar.gz"))
    if res.returncode != 0 or not archives:
        if os.environ.get("CI"):
            pytest.fail(f"cannot fetch pylxd {release} sources: {res.stderr}")
        pytest.skip(f"pylxd {release} sources not reachable: {res.stderr.strip()[-200:]}")
    with tarfile.open(archives[0]) as tar:
        members = [m for m in tar.getmembers() if "/integration/" in m.name]
        tar.extractall(dest, members=members, filter="data")
    root = next(dest.glob("pylxd-*/"))
    (root / "conftest.py").write_text(_CONFTEST)
    return root


def test_pylxd_storage_integration_suite(daemon: Daemon, tmp_path: Path) -> None:
    root = _pylxd_tests(tmp_path)
    sim_dir = daemon.state / "sim"
    pool_config = {
        "powerflex.gateway": f"http://127.0.0.1:{(sim_dir / 'port').read_text().strip()}",
        "powerflex.user.password": (sim_dir / "admin.password").read_text().strip(),
        "powerflex.pool": "sp1",
        "powerflex.domain": "pd1",
    }
    env = {**daemon.env(), "LXFLEX_POOL_CONFIG": json.dumps(pool_config)}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "integration/test_storage.py",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    summary = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr
    assert res.returncode == 0, (
        res.stdout[-4000:] + res.stderr[-2000:] + daemon.log.read_text()[-2000:]
    )
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None
    assert int(passed.group(1)) >= 8, summary
    assert "failed" not in summary
    print(summary)
    shutil.rmtree(root, ignore_errors=True)
