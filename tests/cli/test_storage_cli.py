"""``lxflex storage ...`` against a real lxflexd on the simulator, as a user runs it."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ..compat.daemon import Daemon, backing_file, pread, pwrite, running_daemon

pytestmark = pytest.mark.root

LXFLEX = str(Path(sys.executable).parent / "lxflex")
POOL = "powerflex"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("lxflexd-cli")) as d:
        yield d


def _env(d: Daemon, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LXD_DIR", "LXFLEX_DIR")}
    return {**env, "LXFLEX_DIR": str(d.state), "LC_ALL": "C", **extra}


def run(
    d: Daemon, *args: str, code: int = 0, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [LXFLEX, *args],
        capture_output=True,
        text=True,
        env=_env(d, **env),
        input=stdin,
        timeout=300,
        check=False,
    )
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    return res


def _json(d: Daemon, *args: str) -> object:
    return json.loads(run(d, *args, "--format", "json").stdout)


def test_pools(daemon: Daemon) -> None:
    listed = _json(daemon, "storage", "list")
    assert isinstance(listed, list)
    assert [p["name"] for p in listed] == [POOL]
    assert run(daemon, "storage", "list", "-f", "csv").stdout.startswith(f"{POOL},powerflex,")
    shown = yaml.safe_load(run(daemon, "storage", "show", POOL).stdout)
    assert shown["config"]["powerflex.mode"] == "nvme/tcp"
    assert "powerflex.user.password" not in shown["config"]
    run(daemon, "storage", "set", POOL, "volume.snapshots.expiry=3d", "user.team=ops")
    assert run(daemon, "storage", "get", POOL, "user.team").stdout == "ops\n"
    run(daemon, "storage", "unset", POOL, "user.team")
    assert run(daemon, "storage", "get", POOL, "user.team").stdout == "\n"
    info = yaml.safe_load(run(daemon, "storage", "info", POOL, "--bytes").stdout)
    assert int(info["info"]["total space"]) > 0
    run(daemon, "storage", "unset", POOL, "volume.snapshots.expiry")
    bad = run(daemon, "storage", "set", POOL, "powerflex.pool=other", code=1)
    assert bad.stderr.startswith("Error: ")
    assert "powerflex.pool" in bad.stderr


def test_volume_lifecycle(daemon: Daemon) -> None:
    # The block volume, copied three times below, keeps the smallest size: copies read it all.
    run(daemon, "storage", "volume", "create", POOL, "blk", "--type", "block")
    run(daemon, "storage", "volume", "create", POOL, "fs", "--description", "files", "size=16GiB")
    vols = {v["name"]: v for v in _json(daemon, "storage", "volume", "list", POOL)}  # type: ignore[union-attr]
    assert vols["blk"]["content_type"] == "block"
    assert vols["blk"]["config"]["size"] == "8GiB"
    assert vols["fs"]["config"]["size"] == "16GiB"
    assert vols["fs"]["description"] == "files"
    run(daemon, "storage", "volume", "set", POOL, "blk", "user.owner=alice")
    assert run(daemon, "storage", "volume", "get", POOL, "blk", "user.owner").stdout == "alice\n"
    run(daemon, "storage", "volume", "snapshot", POOL, "blk", "snap0")
    run(daemon, "storage", "volume", "snapshot", POOL, "blk", "--expiry", "2d")  # named by pattern
    info = run(daemon, "storage", "volume", "info", POOL, "blk").stdout
    assert "Content type: block" in info
    assert "snap0" in info
    assert "snap1" in info
    run(daemon, "storage", "volume", "rename", POOL, "blk/snap1", "blk/kept")
    run(daemon, "storage", "volume", "restore", POOL, "blk", "snap0")
    run(daemon, "storage", "volume", "copy", f"{POOL}/blk", f"{POOL}/blk-copy")
    run(daemon, "storage", "volume", "copy", f"{POOL}/blk", f"{POOL}/blk-alone", "--volume-only")
    run(daemon, "storage", "volume", "move", f"{POOL}/blk-copy", f"{POOL}/blk-moved")
    names = sorted(v["name"] for v in _json(daemon, "storage", "volume", "list", POOL))  # type: ignore[union-attr]
    assert names == [
        "blk",
        "blk-alone",
        "blk-moved",
        "blk-moved/kept",
        "blk-moved/snap0",
        "blk/kept",
        "blk/snap0",
        "fs",
    ]
    _delete_all(daemon)
    assert _json(daemon, "storage", "volume", "list", POOL) == []


def _delete_all(d: Daemon) -> None:
    names = [v["name"] for v in _json(d, "storage", "volume", "list", POOL)]  # type: ignore[union-attr]
    for name in sorted(names, key=lambda n: "/" not in n):  # snapshots first
        run(d, "storage", "volume", "delete", POOL, name)


def test_formats(daemon: Daemon) -> None:
    run(daemon, "storage", "volume", "create", POOL, "fmt-a", "--type", "block")
    try:
        table = run(daemon, "storage", "volume", "list", POOL).stdout.splitlines()
        assert table[0].startswith("+-")
        assert table[1].split("|")[1:-1] == [
            " TYPE   ",
            " NAME  ",
            " DESCRIPTION ",
            " CONTENT-TYPE ",
            " USED BY ",
        ]
        assert "| custom | fmt-a |" in table[3]
        assert run(daemon, "storage", "volume", "list", POOL, "-f", "csv").stdout == (
            "custom,fmt-a,,block,0\n"
        )
        compact = run(daemon, "storage", "volume", "list", POOL, "-f", "compact").stdout
        assert compact.split()[:5] == ["TYPE", "NAME", "DESCRIPTION", "CONTENT-TYPE", "USED"]
        assert "+" not in compact
        (as_yaml,) = yaml.safe_load(
            run(daemon, "storage", "volume", "list", POOL, "-f", "yaml").stdout
        )
        (as_json,) = _json(daemon, "storage", "volume", "list", POOL)  # type: ignore[misc]
        assert as_yaml == as_json
        assert as_json["config"]["volatile.uuid"]
    finally:
        _delete_all(daemon)


def test_edit_from_stdin(daemon: Daemon) -> None:
    run(daemon, "storage", "volume", "create", POOL, "ed", "--type", "block")
    try:
        shown = yaml.safe_load(run(daemon, "storage", "volume", "show", POOL, "ed").stdout)
        shown["description"] = "edited"
        shown["config"]["user.note"] = "from a file"
        run(daemon, "storage", "volume", "edit", POOL, "ed", stdin=yaml.safe_dump(shown))
        again = yaml.safe_load(run(daemon, "storage", "volume", "show", POOL, "ed").stdout)
        assert again["description"] == "edited"
        assert again["config"]["user.note"] == "from a file"
        shown["config"]["size"] = "lots"  # refused: the volume keeps its state
        bad = run(
            daemon, "storage", "volume", "edit", POOL, "ed", stdin=yaml.safe_dump(shown), code=1
        )
        assert "size" in bad.stderr
    finally:
        _delete_all(daemon)


def _on_terminal(d: Daemon, *args: str, **env: str) -> tuple[int, str]:
    """Run lxflex with a pseudo-terminal for stdin, stdout and stderr."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [LXFLEX, *args], stdin=slave, stdout=slave, stderr=slave, env=_env(d, **env)
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=60), out.decode(errors="replace")


def test_edit_through_the_editor_on_a_terminal(daemon: Daemon, tmp_path: Path) -> None:
    run(daemon, "storage", "volume", "create", POOL, "ed2")
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nsed -i "s/^description: .*/description: via-editor/" "$1"\n')
    editor.chmod(0o755)
    try:
        code, out = _on_terminal(
            daemon, "storage", "volume", "edit", POOL, "ed2", EDITOR=str(editor)
        )
        assert code == 0, out
        shown = yaml.safe_load(run(daemon, "storage", "volume", "show", POOL, "ed2").stdout)
        assert shown["description"] == "via-editor"
    finally:
        _delete_all(daemon)


def test_progress_only_on_a_terminal(daemon: Daemon) -> None:
    run(daemon, "storage", "volume", "create", POOL, "big", "--type", "block", "size=16GiB")
    try:
        code, out = _on_terminal(daemon, "storage", "volume", "copy", f"{POOL}/big", f"{POOL}/big2")
        assert code == 0, out
        assert "Copying the storage volume: " in out
        assert "% (" in out
        piped = run(daemon, "storage", "volume", "copy", f"{POOL}/big", f"{POOL}/big3")
        assert "Copying" not in piped.stdout + piped.stderr
    finally:
        _delete_all(daemon)


def test_exit_codes(daemon: Daemon, tmp_path: Path) -> None:
    missing = run(daemon, "storage", "volume", "show", POOL, "nope", code=1)
    assert missing.stderr == f"Error: storage volume 'nope' not found in pool '{POOL}'\n"
    run(daemon, "storage", "volume", "show", POOL, code=2)  # usage: the volume is missing
    run(daemon, "storage", "volume", "set", POOL, "x", "not-a-pair", "b=c", "d=e", code=2)
    away = run(daemon, "storage", "list", code=3, LXFLEX_DIR=str(tmp_path / "none"))
    assert "cannot reach lxflexd" in away.stderr
    gone = run(daemon, "storage", "list", "nowhere:", code=1, LXD_CONF=str(tmp_path))
    assert "no HTTPS remote 'nowhere'" in gone.stderr


def test_completion_of_pools_and_volumes(daemon: Daemon) -> None:
    run(daemon, "storage", "volume", "create", POOL, "comp-one", "--type", "block")
    try:
        res = run(
            daemon,
            _LXFLEX_COMPLETE="bash_complete",
            COMP_WORDS=f"lxflex storage volume show {POOL} comp",
            COMP_CWORD="5",
        )
        assert "comp-one" in res.stdout
        res = run(
            daemon,
            _LXFLEX_COMPLETE="bash_complete",
            COMP_WORDS="lxflex storage show pow",
            COMP_CWORD="3",
        )
        assert POOL in res.stdout
    finally:
        _delete_all(daemon)


@pytest.mark.skipif(shutil.which("lxc") is None, reason="lxc (Debian lxd-client) not installed")
def test_remote_over_https_with_lxc_credentials(daemon: Daemon, tmp_path: Path) -> None:
    daemon.lxc("config", "set", "core.https_address", "127.0.0.1:0")
    try:
        token = daemon.lxc("config", "trust", "add", "--name", "cli").stdout.split()[-1]
        conf = tmp_path / "conf"
        conf.mkdir()
        remote = Daemon(tmp_path / "none", conf, daemon.log)
        remote.lxc("remote", "add", "pf", token)
        listed = run(daemon, "storage", "list", "pf:", "-f", "csv", LXD_CONF=str(conf))
        assert listed.stdout.startswith(f"{POOL},powerflex,")
        run(daemon, "storage", "volume", "create", f"pf:{POOL}", "remote-vol", LXD_CONF=str(conf))
        names = [v["name"] for v in _json(daemon, "storage", "volume", "list", POOL)]  # type: ignore[union-attr]
        assert "remote-vol" in names
    finally:
        _delete_all(daemon)
        daemon.lxc("config", "unset", "core.https_address")


@pytest.mark.skipif(shutil.which("lxc") is None, reason="lxc (Debian lxd-client) not installed")
def test_export_import_round_trip(daemon: Daemon, tmp_path: Path) -> None:
    run(daemon, "storage", "volume", "create", POOL, "exp", "--type", "block")
    data = {0: os.urandom(1 << 20), 3 << 30: os.urandom(8192)}
    try:
        pwrite(backing_file(daemon, "exp"), data)
        run(daemon, "storage", "volume", "snapshot", POOL, "exp", "s0")
        tarball = tmp_path / "exp.tar.xz"
        out = run(
            daemon, "storage", "volume", "export", POOL, "exp", str(tarball), "--compression", "xz"
        )
        assert out.stdout == f"Backup exported to {tarball}\n"
        assert subprocess.run(["xz", "-t", str(tarball)], check=False).returncode == 0
        assert _json(daemon, "storage", "volume", "list", POOL)  # the volume is still there
        backups = f"/1.0/storage-pools/{POOL}/volumes/custom/exp/backups"
        assert json.loads(daemon.lxc("query", backups).stdout) == []  # the backup went
        run(daemon, "storage", "volume", "import", POOL, str(tarball), "imp")
        assert pread(backing_file(daemon, "imp"), data) == data
        assert pread(backing_file(daemon, "imp", "s0"), data) == data
        again = run(daemon, "storage", "volume", "import", POOL, str(tarball), "imp", code=1)
        assert "already exists" in again.stderr
        missing = run(daemon, "storage", "volume", "import", POOL, str(tmp_path / "no.tar"), code=2)
        assert "does not exist" in missing.stderr
    finally:
        _delete_all(daemon)


def _fake_iso(path: Path, size: int = 3 << 20) -> bytes:
    """Bytes shaped like an ISO 9660 image: a primary volume descriptor at 32 KiB."""
    data = bytearray(os.urandom(size))
    data[0x8000:0x8007] = b"\x01CD001\x01"
    path.write_bytes(bytes(data))
    return bytes(data)


def test_iso_volumes(daemon: Daemon, tmp_path: Path) -> None:
    image = _fake_iso(tmp_path / "tools.iso")
    try:
        run(
            daemon,
            "storage",
            "volume",
            "import",
            POOL,
            str(tmp_path / "tools.iso"),
            "tools",
            "--type",
            "iso",
        )
        shown = yaml.safe_load(run(daemon, "storage", "volume", "show", POOL, "tools").stdout)
        assert shown["content_type"] == "iso"
        assert shown["config"]["size"] == "8GiB"  # the image, rounded up to the granularity
        assert pread(backing_file(daemon, "tools", content="iso"), {0: image}) == {0: image}
        refused = run(daemon, "storage", "volume", "snapshot", POOL, "tools", code=1)
        assert "read-only" in refused.stderr
        refused = run(daemon, "storage", "volume", "set", POOL, "tools", "size=16GiB", code=1)
        assert "read-only" in refused.stderr
        run(daemon, "storage", "volume", "set", POOL, "tools", "user.os=debian")  # metadata only
        refused = run(
            daemon, "storage", "volume", "export", POOL, "tools", str(tmp_path / "t.tar.gz"), code=1
        )
        assert "no backups" in refused.stderr
        run(daemon, "storage", "volume", "copy", f"{POOL}/tools", f"{POOL}/tools2")
        assert pread(backing_file(daemon, "tools2", content="iso"), {0: image}) == {0: image}
        (tmp_path / "not.iso").write_bytes(os.urandom(1 << 20))
        bad = run(
            daemon,
            "storage",
            "volume",
            "import",
            POOL,
            str(tmp_path / "not.iso"),
            "bad",
            "--type",
            "iso",
            code=1,
        )
        assert "not an ISO 9660 image" in bad.stderr
        nameless = run(
            daemon,
            "storage",
            "volume",
            "import",
            POOL,
            str(tmp_path / "tools.iso"),
            "--type",
            "iso",
            code=2,
        )
        assert "needs a NAME" in nameless.stderr
    finally:
        _delete_all(daemon)


def _sim(d: Daemon, method: str, path: str, body: object = None) -> None:
    port = (d.state / "sim" / "port").read_text().strip()
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30):
        pass


def test_check_finds_and_repairs_a_failed_unmap_and_old_scratch(daemon: Daemon) -> None:
    """A copy whose unmap the array refuses leaves a journaled mapping; a scratch entry
    outlives its work. ``storage check`` reports both (exit 1), ``--repair`` fixes them."""
    clean = run(daemon, "storage", "check", POOL)
    assert clean.stdout.rstrip().endswith(f"pool {POOL}: clean")
    run(daemon, "storage", "volume", "create", POOL, "chk-src", "--type=block")
    route = "POST /api/instances/Volume::*/action/removeMappedHost"
    _sim(daemon, "POST", "/_sim/faults", {"route": route, "http_status": 500, "error_code": 65})
    try:
        run(daemon, "storage", "volume", "copy", f"{POOL}/chk-src", f"{POOL}/chk-dst")
    finally:
        _sim(daemon, "DELETE", "/_sim/faults")
    old = daemon.state / "lxflex" / "scratch" / "upload-stale.tar"
    old.parent.mkdir(exist_ok=True)
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    found = run(daemon, "storage", "check", POOL, code=1).stdout
    assert "journal" in found
    assert "unmap failed" in found
    assert f"scratch entry {old}" in found
    assert "[found]" in found
    report = json.loads(run(daemon, "storage", "check", POOL, "--format", "json", code=1).stdout)
    assert {f["kind"] for f in report[0]["findings"]} == {"journal", "scratch"}
    wrong = run(daemon, "storage", "check", POOL, "--remove", "u_nope", code=1)
    assert "not an unrecorded array volume" in wrong.stderr
    repaired = run(daemon, "storage", "check", POOL, "--repair").stdout
    assert "2 left" not in repaired
    assert "[repaired]" in repaired
    assert not old.exists()
    assert run(daemon, "storage", "check").stdout.rstrip().endswith("clean")
    for name in ("chk-src", "chk-dst"):
        run(daemon, "storage", "volume", "delete", POOL, name)


def test_a_pool_takes_its_password_from_standard_input(daemon: Daemon) -> None:
    """--password-stdin: the gateway password on no command line. A wrong one reaches
    the gateway (which refuses it); none at all is refused before anything is sent."""
    config = yaml.safe_load(run(daemon, "storage", "show", POOL).stdout)["config"]
    keys = [f"{k}={config[k]}" for k in ("powerflex.gateway", "powerflex.pool", "powerflex.domain")]
    create = ["storage", "create", "pf2", "powerflex", *keys, "--password-stdin"]
    wrong = run(daemon, *create, code=1, stdin="not-the-password\n")
    assert "powerflex.user" in wrong.stderr
    assert "not-the-password" not in wrong.stderr
    empty = run(daemon, *create, code=2, stdin="")
    assert "standard input holds no password" in empty.stderr
    assert [p["name"] for p in _json(daemon, "storage", "list")] == [POOL]  # type: ignore[index]
