"""The same storage commands and requests against lxflexd and the real LXD 5.0.2 (Debian
``lxd``, a ``dir`` pool of the same name), their answers compared: exit codes, status
codes, error envelopes, and the key sets and value types of the JSON. Every difference
that is expected is listed below with its reason, so a new one fails the test. Backups
cross both ways with their data.

CI installs ``lxd``; without it (outside CI) the test is skipped.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .daemon import Daemon, backing_file, real_lxd, running_daemon

pytestmark = pytest.mark.root

POOL = "powerflex"
VOLUMES = f"/1.0/storage-pools/{POOL}/volumes/custom"

# Where lxflex's JSON differs on purpose, by path ("*": any list item), with the reason.
EXPECTED: dict[str, str] = {
    "volume.config": "PowerFlex volumes carry size, provisioning, filesystem, volatile.uuid",
    "snapshot.config": "the snapshot's copy of its volume's PowerFlex keys",
    "snapshots.*.config": "the snapshot's copy of its volume's PowerFlex keys",
    "volumes.*.config": "PowerFlex keys",
    "pool.config": "PowerFlex pool keys; a dir pool has source",
    "pool.description": "the embedded simulator's pool has one",
    "pool.driver": "powerflex, not dir",
    "pool.used_by": "value only",
}


# Commands and requests whose answers differ on purpose: lxflex's first, then LXD's.
REFUSED_BY_LXFLEX_ONLY = {
    ("storage", "volume", "create", POOL, "a b"): (
        "names become file names: lxflex refuses spaces, backslashes, control characters "
        "and leading dots in volume names, which LXD 5.0.2 takes"
    ),
}
STATUS: dict[tuple[str, str], tuple[int, int, str]] = {
    ("POST", "size"): (400, 500, "a bad value is the client's error: LXD 5.0.2 answers 500"),
    ("POST", "key"): (400, 500, "an unknown key is the client's error: LXD 5.0.2 answers 500"),
    ("POST", "pool"): (400, 500, "a bad pool name is the client's error: LXD answers 500"),
}


@dataclass
class Pair:
    lxflex: Daemon
    lxd: Daemon

    def both(self) -> tuple[Daemon, Daemon]:
        return self.lxflex, self.lxd


def _send(d: Daemon, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("localhost", timeout=120)
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(120)
    sock.connect(str(d.socket))
    conn.sock = sock
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, (json.loads(raw) if raw.strip() else None)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("differential")
    with real_lxd(tmp, POOL) as lxd, running_daemon(tmp / "lxflex") as lxflex:
        yield Pair(lxflex, lxd)


# --- comparing JSON ---------------------------------------------------------------------


def _shape(value: Any, path: str, out: dict[str, str]) -> None:
    """Every path of a JSON value with its type (lists as ``*``)."""
    if isinstance(value, dict):
        out[path] = "object"
        for key, item in value.items():
            _shape(item, f"{path}.{key}", out)
    elif isinstance(value, list):
        out[path] = "list"
        for item in value:
            _shape(item, f"{path}.*", out)
    else:
        out[path] = type(value).__name__


def _differences(name: str, ours: Any, theirs: Any) -> list[str]:
    mine: dict[str, str] = {}
    lxd: dict[str, str] = {}
    _shape(ours, name, mine)
    _shape(theirs, name, lxd)

    def expected(path: str) -> bool:
        return any(path == p or path.startswith(p + ".") for p in EXPECTED)

    found = []
    for path in sorted(set(mine) | set(lxd)):
        if expected(path):
            continue
        a, b = mine.get(path), lxd.get(path)
        if a != b and not {a, b} <= {"str", "NoneType"}:  # null vs a time: compared apart
            found.append(f"{path}: lxflex {a}, LXD {b}")
    return found


# --- the tests --------------------------------------------------------------------------


def test_commands_answer_alike(pair: Pair) -> None:
    """Each command: same exit code on both; JSON of the same shape."""
    steps: list[tuple[str, ...]] = [
        ("storage", "volume", "create", POOL, "d1"),
        ("storage", "volume", "set", POOL, "d1", "user.a=b"),
        ("storage", "volume", "snapshot", POOL, "d1", "s0"),
        ("storage", "volume", "snapshot", POOL, "d1", "--no-expiry"),
        ("storage", "volume", "rename", POOL, "d1/snap0", "d1/s1"),
        ("storage", "volume", "copy", f"{POOL}/d1", f"{POOL}/d2"),
        ("storage", "volume", "rename", POOL, "d2", "d3"),
        ("storage", "volume", "restore", POOL, "d1", "s0"),
        ("storage", "volume", "delete", POOL, "d1/s1"),
        ("storage", "volume", "unset", POOL, "d1", "user.a"),
        ("storage", "volume", "delete", POOL, "d3"),
    ]
    failing: list[tuple[str, ...]] = [
        ("storage", "volume", "create", POOL, "d1"),  # taken
        ("storage", "volume", "create", POOL, "a b"),
        ("storage", "volume", "snapshot", POOL, "d1", "s0"),  # taken
        ("storage", "volume", "show", POOL, "nope"),
        ("storage", "volume", "delete", POOL, "nope"),
        ("storage", "volume", "rename", POOL, "nope", "other"),
        ("storage", "volume", "restore", POOL, "d1", "nope"),
        ("storage", "delete", POOL),  # in use
        ("storage", "show", "nope"),
        ("storage", "volume", "list", POOL, "--project", "nope"),
    ]
    for step in steps:
        for d in pair.both():
            d.lxc(*step)  # must succeed on both
    for step in failing:
        codes = [d.lxc(*step, check=False).returncode for d in pair.both()]
        if step in REFUSED_BY_LXFLEX_ONLY:
            assert codes[0] != 0 == codes[1], (step, codes)
            pair.lxd.lxc("storage", "volume", "delete", POOL, step[-1])
        else:
            assert codes[0] == codes[1] != 0, (step, codes)
    get = {
        "volume": f"{VOLUMES}/d1",
        "snapshot": f"{VOLUMES}/d1/snapshots/s0",
        "snapshots": f"{VOLUMES}/d1/snapshots?recursion=1",
        "volumes": f"{VOLUMES}?recursion=1",
        "pool": f"/1.0/storage-pools/{POOL}",
    }
    problems = []
    for name, path in get.items():
        ours, theirs = (json.loads(d.lxc("query", path).stdout) for d in pair.both())
        problems += _differences(name, ours, theirs)
    assert problems == []
    for d in pair.both():
        d.lxc("storage", "volume", "delete", POOL, "d1")


RAW: list[tuple[str, str, Any, str]] = [
    ("GET", f"{VOLUMES}/nope", None, ""),
    ("POST", VOLUMES, {"name": "bad/name"}, ""),
    ("POST", VOLUMES, {"name": "x", "config": {"size": "banana"}}, "size"),
    ("POST", VOLUMES, {"name": "x", "config": {"nope.key": "1"}}, "key"),
    ("PATCH", "/1.0/operations", {}, ""),
    ("GET", "/1.0/storage-pools?recursion=abc", None, ""),
    ("GET", "/1.0/storage-pools/nope", None, ""),
    ("POST", "/1.0/storage-pools", {"name": "a b", "driver": "dir"}, "pool"),
    ("GET", f"{VOLUMES}?project=nope", None, ""),
    ("GET", "/1.0/projects/default", None, ""),
    ("GET", "/1.0/operations/nope", None, ""),
    ("DELETE", f"{VOLUMES}/nope/snapshots/s0", None, ""),
]


@pytest.mark.parametrize(("method", "path", "body", "known"), RAW)
def test_requests_answer_alike(pair: Pair, method: str, path: str, body: Any, known: str) -> None:
    """The same status code and envelope type (and error code) for the same request, but
    where the difference is listed with its reason."""
    answers = [_send(d, method, path, body) for d in pair.both()]
    (ours, our_doc), (theirs, their_doc) = answers
    if known:
        mine, lxd, _ = STATUS[(method, known)]
        assert (ours, theirs) == (mine, lxd), answers
        return
    assert ours == theirs, (method, path, answers)
    if our_doc is not None and their_doc is not None:
        assert our_doc["type"] == their_doc["type"], answers
        assert our_doc.get("error_code") == their_doc.get("error_code"), answers


def test_backups_cross_both_ways(pair: Pair, tmp_path: Path) -> None:
    """An LXD export (a snapshot without expiry) imports into lxflex and the other way
    round, with the files of the volume and of the snapshot."""
    lxd, lxflex = pair.lxd, pair.lxflex
    lxd.lxc("storage", "volume", "create", POOL, "from-lxd")
    lxd_dir = lxd.state / "storage-pools" / POOL / "custom" / "default_from-lxd"
    (lxd_dir / "old.txt").write_text("in the snapshot")
    lxd.lxc("storage", "volume", "snapshot", POOL, "from-lxd", "s0", "--no-expiry")
    (lxd_dir / "new.txt").write_text("in the volume")
    tarball = tmp_path / "lxd.tar.gz"
    lxd.lxc("storage", "volume", "export", POOL, "from-lxd", str(tarball))
    lxflex.lxc("storage", "volume", "import", POOL, str(tarball), "from-lxd")
    assert _files(lxflex, "from-lxd") == {"old.txt": "in the snapshot", "new.txt": "in the volume"}
    assert _files(lxflex, "from-lxd", "s0") == {"old.txt": "in the snapshot"}

    back = tmp_path / "lxflex.tar.gz"
    lxflex.lxc("storage", "volume", "export", POOL, "from-lxd", str(back))
    lxd.lxc("storage", "volume", "import", POOL, str(back), "round-trip")
    assert lxd.lxc("info", check=False).returncode == 0  # LXD 5.0.2 once crashed here
    root = lxd.state / "storage-pools" / POOL / "custom" / "default_round-trip"
    assert (root / "new.txt").read_text() == "in the volume"
    snap = lxd.state / "storage-pools" / POOL / "custom-snapshots" / "default_round-trip" / "s0"
    assert (snap / "old.txt").read_text() == "in the snapshot"
    assert not (snap / "new.txt").exists()
    for d, names in ((lxd, ("from-lxd", "round-trip")), (lxflex, ("from-lxd",))):
        for name in names:
            d.lxc("storage", "volume", "delete", POOL, name)


def _files(d: Daemon, volume: str, snapshot: str | None = None) -> dict[str, str]:
    """The regular files at the top of an lxflex filesystem volume (or snapshot), read
    from its backing file on the simulator, mounted read-only."""
    image = backing_file(d, volume, snapshot, content="filesystem")
    with tempfile.TemporaryDirectory(dir=d.state.parent) as where:
        subprocess.run(["mount", "-o", "ro,loop,noload", str(image), where], check=True)
        try:
            return {
                p.name: p.read_text()
                for p in Path(where).iterdir()
                if p.is_file() and p.name != "lost+found"
            }
        finally:
            subprocess.run(["umount", where], check=True)
