"""Projects through the real lxc client: ``default`` always there, unknown projects
refused as LXD refuses them, volumes kept apart by project."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest
import yaml

from .daemon import Daemon, running_daemon

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("lxc") is None, reason="lxc (Debian lxd-client) not installed"),
]

POOL = "powerflex"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("lxflexd-projects")) as d:
        yield d


def _names(d: Daemon, *project: str) -> list[str]:
    out = d.lxc("storage", "volume", "list", POOL, "--format", "json", *project).stdout
    return sorted(v["name"] for v in json.loads(out))


def test_projects(daemon: Daemon) -> None:
    listed = json.loads(daemon.lxc("project", "list", "--format", "json").stdout)
    assert [p["name"] for p in listed] == ["default"]
    unknown = daemon.lxc("storage", "volume", "list", POOL, "--project", "nope", check=False)
    assert unknown.returncode == 1
    assert "Project not found" in unknown.stderr
    created = daemon.lxc("storage", "volume", "create", POOL, "v", "--project", "nope", check=False)
    assert created.returncode == 1
    assert "Project not found" in created.stderr

    daemon.lxc("project", "create", "p1")
    daemon.lxc("storage", "volume", "create", POOL, "in-p1", "--project", "p1")
    daemon.lxc("storage", "volume", "create", POOL, "in-default")
    assert _names(daemon, "--project", "p1") == ["in-p1"]
    assert _names(daemon) == ["in-default"]
    shown = yaml.safe_load(daemon.lxc("project", "show", "p1").stdout)
    assert shown["config"]["features.storage.volumes"] == "true"
    assert shown["used_by"] == [f"/1.0/storage-pools/{POOL}/volumes/custom/in-p1?project=p1"]
    refused = daemon.lxc("project", "delete", "p1", check=False)
    assert refused.returncode == 1
    assert "only empty projects" in refused.stderr
    changed = daemon.lxc("project", "set", "p1", "features.storage.volumes=false", check=False)
    assert changed.returncode == 1
    assert "empty projects" in changed.stderr
    daemon.lxc("storage", "volume", "delete", POOL, "in-p1", "--project", "p1")
    daemon.lxc("project", "rename", "p1", "p2")
    daemon.lxc("project", "delete", "p2")
    gone = daemon.lxc("project", "delete", "default", check=False)
    assert gone.returncode == 1
    assert "cannot be deleted" in gone.stderr

    # A project without storage volumes of its own works on the default project's.
    daemon.lxc("project", "create", "shared", "-c", "features.storage.volumes=false")
    assert _names(daemon, "--project", "shared") == ["in-default"]
    bad = daemon.lxc("project", "create", "limits", "-c", "limits.instances=3", check=False)
    assert bad.returncode == 1
    assert "features.* and user.*" in bad.stderr
    daemon.lxc("project", "delete", "shared")
    daemon.lxc("storage", "volume", "delete", POOL, "in-default")
