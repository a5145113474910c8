"""The real lxc 5.0.2 client (Debian lxd-client) drives lxflexd on the simulator."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

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
    with running_daemon(tmp_path_factory.mktemp("lxflexd")) as d:
        yield d


def _volumes(d: Daemon) -> list[dict[str, object]]:
    out = d.lxc("query", f"/1.0/storage-pools/{POOL}/volumes?recursion=1").stdout
    return list(json.loads(out))


def test_pools(daemon: Daemon) -> None:
    listing = daemon.lxc("storage", "list", "-f", "csv").stdout
    assert listing.startswith(f"{POOL},powerflex,")
    shown = yaml.safe_load(daemon.lxc("storage", "show", POOL).stdout)
    assert shown["driver"] == "powerflex"
    assert shown["config"]["powerflex.mode"] == "nvme/tcp"
    assert "powerflex.user.password" not in shown["config"]
    assert daemon.lxc("storage", "get", POOL, "volume.size").stdout.strip() == "8GiB"
    daemon.lxc("storage", "set", POOL, "user.team=storage")
    assert daemon.lxc("storage", "get", POOL, "user.team").stdout.strip() == "storage"
    daemon.lxc("storage", "unset", POOL, "user.team")
    assert daemon.lxc("storage", "get", POOL, "user.team").stdout.strip() == ""
    edited = daemon.lxc("storage", "show", POOL).stdout.replace(
        "description: PowerFlex pool on the embedded simulator", "description: edited by lxc"
    )
    daemon.lxc("storage", "edit", POOL, stdin=edited)
    assert "description: edited by lxc" in daemon.lxc("storage", "show", POOL).stdout
    info = daemon.lxc("storage", "info", POOL).stdout
    assert "total space: 4.00TiB" in info
    bad = daemon.lxc("storage", "set", POOL, "powerflex.pool=sp2", check=False)
    assert bad.returncode != 0
    assert "cannot be changed" in bad.stderr
    missing = daemon.lxc("storage", "show", "nope", check=False)
    assert missing.returncode != 0
    assert "not found" in missing.stderr


def test_volume_lifecycle(daemon: Daemon) -> None:
    daemon.lxc("storage", "volume", "create", POOL, "v1", "size=10GiB", "user.foo=bar")
    daemon.lxc("storage", "volume", "create", POOL, "b1", "--type=block")
    shown = yaml.safe_load(daemon.lxc("storage", "volume", "show", POOL, "v1").stdout)
    assert shown["config"]["size"] == "16GiB"
    assert shown["config"]["user.foo"] == "bar"
    assert shown["content_type"] == "filesystem"
    assert shown["created_at"].tzinfo is not None  # a time Go could parse: with its zone
    assert daemon.lxc("storage", "volume", "get", POOL, "b1", "size").stdout.strip() == "8GiB"
    daemon.lxc("storage", "volume", "set", POOL, "v1", "size=24GiB")
    assert daemon.lxc("storage", "volume", "get", POOL, "v1", "size").stdout.strip() == "24GiB"
    shrink = daemon.lxc("storage", "volume", "set", POOL, "v1", "size=8GiB", check=False)
    assert shrink.returncode != 0
    assert "can only grow" in shrink.stderr
    daemon.lxc("storage", "volume", "unset", POOL, "v1", "user.foo")
    assert daemon.lxc("storage", "volume", "get", POOL, "v1", "user.foo").stdout.strip() == ""
    text = daemon.lxc("storage", "volume", "show", POOL, "v1").stdout
    daemon.lxc(
        "storage",
        "volume",
        "edit",
        POOL,
        "v1",
        stdin=text.replace('description: ""', "description: edited"),
    )
    assert "description: edited" in daemon.lxc("storage", "volume", "show", POOL, "v1").stdout
    daemon.lxc("storage", "volume", "rename", POOL, "v1", "v2")
    names = {v["name"] for v in _volumes(daemon)}
    assert {"v2", "b1"} <= names
    assert "v1" not in names
    dup = daemon.lxc("storage", "volume", "create", POOL, "b1", check=False)
    assert dup.returncode != 0
    assert "already exists" in dup.stderr
    info = daemon.lxc("storage", "volume", "info", POOL, "v2").stdout
    assert "Total: 24.00GiB" in info
    for name in ("v2", "b1"):
        daemon.lxc("storage", "volume", "delete", POOL, name)
    assert _volumes(daemon) == []


def test_snapshots_restore_copy_move(daemon: Daemon) -> None:
    daemon.lxc("storage", "volume", "create", POOL, "s1", "--type=block")
    daemon.lxc("storage", "volume", "set", POOL, "s1", "user.state=first")
    daemon.lxc("storage", "volume", "snapshot", POOL, "s1")
    daemon.lxc("storage", "volume", "set", POOL, "s1", "user.state=second")
    daemon.lxc("storage", "volume", "snapshot", POOL, "s1", "named")
    daemon.lxc("storage", "volume", "snapshot", POOL, "s1", "--no-expiry")
    listed = [v["name"] for v in _volumes(daemon)]
    assert listed == ["s1", "s1/snap0", "s1/named", "s1/snap1"]
    snap = yaml.safe_load(daemon.lxc("storage", "volume", "show", POOL, "s1/snap0").stdout)
    assert (
        "expires_at: 0001-01-01T00:00:00Z"
        in daemon.lxc("storage", "volume", "show", POOL, "s1/snap0").stdout
    )
    assert snap["config"]["user.state"] == "first"  # the snapshot's config is frozen
    text = daemon.lxc("storage", "volume", "show", POOL, "s1/snap0").stdout
    daemon.lxc(
        "storage",
        "volume",
        "edit",
        POOL,
        "s1/snap0",
        stdin=text.replace("expires_at: 0001-01-01T00:00:00Z", "expires_at: 2183-06-16T00:00:00Z"),
    )
    assert "2183-06-16" in daemon.lxc("storage", "volume", "show", POOL, "s1/snap0").stdout
    daemon.lxc("storage", "volume", "rename", POOL, "s1/named", "s1/renamed")
    daemon.lxc("storage", "volume", "restore", POOL, "s1", "snap0")
    daemon.lxc("storage", "volume", "delete", POOL, "s1/snap1")
    daemon.lxc("storage", "volume", "copy", f"{POOL}/s1", f"{POOL}/c1")
    assert [v["name"] for v in _volumes(daemon) if str(v["name"]).startswith("c1")] == [
        "c1",
        "c1/snap0",
        "c1/renamed",
    ]
    assert (
        daemon.lxc("storage", "volume", "get", POOL, "c1/snap0", "user.state").stdout.strip()
        == "first"
    )
    daemon.lxc("storage", "volume", "copy", f"{POOL}/s1", f"{POOL}/c2", "--volume-only")
    assert not [v for v in _volumes(daemon) if str(v["name"]).startswith("c2/")]
    daemon.lxc("storage", "volume", "copy", f"{POOL}/s1/renamed", f"{POOL}/c3")
    assert (
        daemon.lxc("storage", "volume", "get", POOL, "c3", "user.state").stdout.strip() == "second"
    )
    daemon.lxc("storage", "volume", "move", f"{POOL}/c3", f"{POOL}/c4")
    names = {v["name"] for v in _volumes(daemon)}
    assert "c4" in names
    assert "c3" not in names
    for name in ("c1", "c2", "c4", "s1"):
        daemon.lxc("storage", "volume", "delete", POOL, name)
    assert _volumes(daemon) == []


def test_errors_are_lxd_errors(daemon: Daemon) -> None:
    res = daemon.lxc("storage", "volume", "show", POOL, "ghost", check=False)
    assert res.returncode == 1
    assert res.stderr.startswith("Error: ")
    assert "not found" in res.stderr
    res = daemon.lxc("storage", "volume", "create", POOL, "x", "zfs.blocksize=8k", check=False)
    assert 'Invalid value for "zfs.blocksize"' in res.stderr
    res = daemon.lxc("storage", "create", "other", "dir", check=False)
    assert "unsupported storage driver" in res.stderr
    res = daemon.lxc("storage", "delete", POOL, check=False) if _volumes(daemon) else None
    out = daemon.lxc("query", "/1.0").stdout
    assert "storage" in json.loads(out)["api_extensions"]
    assert Path(daemon.socket).stat().st_mode & 0o777 == 0o660
