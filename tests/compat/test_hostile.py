"""Hostile requests to lxflexd over its unix socket: each a 4xx in LXD's envelope that
says what is wrong, never a 5xx, and the daemon serves on."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from .daemon import Daemon, running_daemon

pytestmark = pytest.mark.root

POOL = "powerflex"
VOLUMES = f"/1.0/storage-pools/{POOL}/volumes/custom"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self._path)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("lxflexd")) as d:
        yield d


def _send(d: Daemon, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    conn = _UnixConnection(str(d.socket))
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, json.loads(raw)


def _refused(d: Daemon, method: str, path: str, doc: Any, status: int, words: str) -> None:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    code, answer = _send(d, method, path, body)
    assert code == status, answer
    assert answer["type"] == "error"
    assert answer["error_code"] == status
    assert words in answer["error"], answer["error"]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("with\x00nul", "control characters"),
        ("back\\slash", "backslashes"),
        ("tab\there", "spaces"),
        ("x" * 201, "200 bytes"),
        ("é" * 101, "200 bytes"),
    ],
)
def test_bad_volume_names(daemon: Daemon, name: str, words: str) -> None:
    _refused(daemon, "POST", VOLUMES, {"name": name, "config": {}}, 400, words)


def test_bad_snapshot_and_backup_names(daemon: Daemon) -> None:
    _send(daemon, "POST", VOLUMES, json.dumps({"name": "target", "type": "custom"}).encode())
    for kind in ("snapshots", "backups"):
        code, answer = _send(
            daemon, "POST", f"{VOLUMES}/target/{kind}", json.dumps({"name": "a\x07b"}).encode()
        )
        if code == 202:  # accepted as an operation: it must fail with the reason
            operation = answer["operation"]
            code, answer = _send(daemon, "GET", f"{operation}/wait?timeout=30")
            assert answer["metadata"]["status"] == "Failure"
            assert "control characters" in answer["metadata"]["err"]
        else:
            assert code == 400, answer
            assert "control characters" in answer["error"]


def test_snapshot_names_are_refused_at_once(daemon: Daemon) -> None:
    """As LXD: a bad snapshot name is a 400 and a taken one a 409, not an operation that
    fails later."""
    _send(daemon, "POST", VOLUMES, json.dumps({"name": "snapped", "type": "custom"}).encode())
    snapshots = f"{VOLUMES}/snapped/snapshots"
    _refused(daemon, "POST", snapshots, {"name": "a b"}, 400, "spaces")
    code, answer = _send(daemon, "POST", snapshots, json.dumps({"name": "s0"}).encode())
    assert code == 202
    _send(daemon, "GET", f"{answer['operation']}/wait?timeout=60")
    _refused(daemon, "POST", snapshots, {"name": "s0"}, 409, "already exists")


def test_lxd_status_codes(daemon: Daemon) -> None:
    """A method a path lacks is LXD's 501, OPTIONS an empty 200, a recursion that is no
    number counts as 0, a pool in use is a 400."""
    _refused(daemon, "PATCH", "/1.0/operations", {}, 501, "not implemented")
    conn = _UnixConnection(str(daemon.socket))
    try:
        conn.request("OPTIONS", "/1.0")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"")
    finally:
        conn.close()
    code, answer = _send(daemon, "GET", "/1.0/storage-pools?recursion=abc")
    assert (code, answer["metadata"]) == (200, [f"/1.0/storage-pools/{POOL}"])
    _send(daemon, "POST", VOLUMES, json.dumps({"name": "keeps-pool", "type": "custom"}).encode())
    _refused(daemon, "DELETE", f"/1.0/storage-pools/{POOL}", b"", 400, "in use")


def test_size_zero_is_the_default_size(daemon: Daemon) -> None:
    doc = {"name": "zero", "type": "custom", "config": {"size": "0"}}
    code, answer = _send(daemon, "POST", VOLUMES, json.dumps(doc).encode())
    assert code in (200, 201), answer
    code, answer = _send(daemon, "GET", f"{VOLUMES}/zero")
    assert answer["metadata"]["config"]["size"] == "8GiB"


def test_non_ascii_pool_name(daemon: Daemon) -> None:
    _refused(
        daemon, "POST", "/1.0/storage-pools", {"name": "пул", "driver": "powerflex"}, 400, "ASCII"
    )


def test_unicode_digits_are_no_size(daemon: Daemon) -> None:
    doc = {"name": "arabic", "config": {"size": "\u0668GiB"}}
    _refused(daemon, "POST", VOLUMES, doc, 400, "invalid size")


def test_deeply_nested_json(daemon: Daemon) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    _refused(daemon, "POST", VOLUMES, deep, 400, "nested too deeply")


def test_volume_only_must_be_a_boolean(daemon: Daemon) -> None:
    _send(daemon, "POST", VOLUMES, json.dumps({"name": "src", "type": "custom"}).encode())
    for value in ("yes", 5, [1]):
        _refused(
            daemon,
            "POST",
            f"{VOLUMES}/src/backups",
            {"name": "b", "volume_only": value},
            400,
            "volume_only must be true or false",
        )


def test_oversized_body_is_an_envelope(daemon: Daemon) -> None:
    big = b'{"name": "' + b"x" * (65 * 1024 * 1024) + b'"}'
    _refused(daemon, "POST", VOLUMES, big, 413, "too large")


def test_still_serving(daemon: Daemon) -> None:
    code, answer = _send(daemon, "GET", "/1.0")
    assert code == 200
    assert answer["metadata"]["api_version"] == "1.0"


def test_a_copy_with_a_bad_key_is_a_400(daemon: Daemon) -> None:
    """Once a 500 (size) or stored as is (block.type): the key table judges a copy's
    config as it judges a create's."""
    _send(daemon, "POST", VOLUMES, json.dumps({"name": "copied", "type": "custom"}).encode())
    for config, words in (({"size": "banana"}, "size"), ({"block.type": "banana"}, "block.type")):
        doc = {"name": "copy", "type": "custom", "config": config}
        doc["source"] = {"type": "copy", "name": "copied"}
        code, answer = _send(daemon, "POST", VOLUMES, json.dumps(doc).encode())
        if code == 202:
            code, answer = _send(daemon, "GET", f"{answer['operation']}/wait?timeout=60")
            assert answer["metadata"]["status"] == "Failure"
            assert words in answer["metadata"]["err"]
            assert answer["metadata"]["status_code"] == 400
        else:
            assert code == 400, answer
            assert words in answer["error"]
