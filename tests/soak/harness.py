"""A real lxflexd on its embedded simulator, driven through its REST API: the daemon's
process (to stop or kill -9), a client over its unix socket, a model of what must be
there, and the invariants checked at rest."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxflex.driver.naming import Content, VolumeType, volume_name

from ..compat.daemon import BIN

POOL = "powerflex"
VOLUMES = f"/1.0/storage-pools/{POOL}/volumes/custom"
MARK_AT = 1024 * 1024  # where a block volume's marker is written on the array side
GIB = 1024**3


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


@dataclass
class Answer:
    status: int
    doc: Any
    raw: bytes = b""

    @property
    def error(self) -> str:
        return str(self.doc.get("error", "")) if isinstance(self.doc, dict) else ""


class Daemon:
    """lxflexd --simulator in ``state``; started, stopped cleanly or killed."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.log = state.parent / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.state / "unix.socket"

    def start(self, timeout: float = 120) -> float:
        """Start and wait until the API serves the pool; the seconds that took."""
        started = time.monotonic()
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "lxflexd"), "--state-dir", str(self.state), "--simulator"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"lxflexd exited:\n{self.log.read_text()[-4000:]}")
            if time.monotonic() - started > timeout:
                raise AssertionError("lxflexd did not serve in time")
            try:
                if self.call("GET", f"/1.0/storage-pools/{POOL}", timeout=5).status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    # --- the API ----------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> Answer:
        conn = _Unix(str(self.socket), timeout)
        try:
            sent = dict(headers or {})
            data = raw
            if body is not None:
                data = json.dumps(body).encode()
                sent["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            content = response.read()
        finally:
            conn.close()
        kind = response.getheader("Content-Type") or ""
        if "json" in kind:
            return Answer(response.status, json.loads(content))
        return Answer(response.status, None, content)

    def finish(self, answer: Answer) -> Answer:
        """Wait for an operation's end; a failed one becomes its error answer."""
        if answer.status != 202:
            return answer
        op = answer.doc["operation"]
        done = self.call("GET", f"{op}/wait?timeout=600", timeout=700)
        meta = done.doc.get("metadata") or {}
        if meta.get("status") == "Success":
            return Answer(200, done.doc)
        return Answer(meta.get("status_code", 400) or 400, {"error": meta.get("err", "")})

    # --- the simulator ----------------------------------------------------------------

    def sim(self, method: str, path: str, body: Any = None) -> Any:
        port = (self.state / "sim" / "port").read_text().strip()
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            return json.loads(conn.getresponse().read() or b"null")
        finally:
            conn.close()

    def array(self) -> list[dict[str, Any]]:
        volumes: list[dict[str, Any]] = self.sim("GET", "/_sim/state")["volumes"]
        return volumes

    def backing(self, array_id: str) -> Path:
        return self.state / "sim" / "volumes" / array_id


# --- the model -------------------------------------------------------------------------


@dataclass
class Vol:
    content: str
    size: int  # GiB
    marker: bytes | None = None  # block volumes: what MARK_AT holds
    snaps: dict[str, bytes | None] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    def clone(self, *, with_snaps: bool = True) -> Vol:
        return Vol(
            self.content,
            self.size,
            self.marker,
            dict(self.snaps) if with_snaps else {},
            dict(self.keys),
        )


@dataclass
class Figures:
    ops: int = 0
    ok: int = 0
    faults: int = 0  # faults injected
    failed_by_fault: int = 0
    failed_otherwise: list[str] = field(default_factory=list)
    internal: list[str] = field(default_factory=list)  # 500 "internal error" answers
    by_op: dict[str, int] = field(default_factory=dict)


def array_names(d: Daemon, name: str, doc: dict[str, Any] | None = None) -> list[str]:
    """The array names of a listed volume and its snapshots."""
    vol = doc or d.call("GET", f"{VOLUMES}/{urllib.parse.quote(name)}").doc["metadata"]
    content = Content(vol["content_type"])
    names = [volume_name(VolumeType.CUSTOM, content, uuid.UUID(vol["config"]["volatile.uuid"]))]
    snaps = d.call("GET", f"{VOLUMES}/{urllib.parse.quote(name)}/snapshots?recursion=1")
    for snap in snaps.doc["metadata"]:
        snap_uuid = uuid.UUID(snap["config"]["volatile.uuid"])
        names.append(volume_name(VolumeType.CUSTOM, content, snap_uuid, snapshot=True))
    return names


def array_id(d: Daemon, array_name: str) -> str:
    (found,) = [v["id"] for v in d.array() if v["name"] == array_name]
    return str(found)


def read_mark(d: Daemon, array_name: str) -> bytes:
    path = d.backing(array_id(d, array_name))
    if not path.exists():
        return b"\0" * 16
    with open(path, "rb") as f:
        f.seek(MARK_AT)
        return f.read(16).ljust(16, b"\0")


def write_mark(d: Daemon, array_name: str, size: int, mark: bytes) -> None:
    """Write on the array side, as another host would (the volume is unmapped here)."""
    path = d.backing(array_id(d, array_name))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size == 0:
            os.ftruncate(fd, size)
        os.pwrite(fd, mark, MARK_AT)
        os.fsync(fd)
    finally:
        os.close(fd)


def invariants(d: Daemon, model: dict[str, Vol]) -> list[str]:
    """What differs between the daemon, the array, the host and the model, at rest."""
    problems: list[str] = []
    listed = d.call("GET", f"{VOLUMES}?recursion=1").doc["metadata"]
    names = {v["name"]: v for v in listed if "/" not in v["name"]}  # not snapshots
    if set(names) != set(model):
        problems.append(f"volumes: listed {sorted(names)} but expected {sorted(model)}")
    on_array = {v["name"]: v for v in d.array()}
    wanted: set[str] = set()
    for name, vol in sorted(model.items()):
        doc = names.get(name)
        if doc is None:
            continue
        if doc["content_type"] != vol.content:
            problems.append(f"{name}: content {doc['content_type']} != {vol.content}")
        if doc["config"].get("size") != f"{vol.size}GiB":
            problems.append(f"{name}: size {doc['config'].get('size')} != {vol.size}GiB")
        keys = {k: v for k, v in doc["config"].items() if k.startswith("user.")}
        if keys != vol.keys:
            problems.append(f"{name}: keys {keys} != {vol.keys}")
        arrays = array_names(d, name, doc)
        wanted.update(arrays)
        snaps = d.call("GET", f"{VOLUMES}/{urllib.parse.quote(name)}/snapshots").doc["metadata"]
        snap_names = sorted(s.rsplit("/", 1)[-1] for s in snaps)
        if snap_names != sorted(vol.snaps):
            problems.append(f"{name}: snapshots {snap_names} != {sorted(vol.snaps)}")
            continue
        for array_name in arrays:
            if array_name not in on_array:
                problems.append(f"{name}: array volume {array_name} missing")
        if arrays[0] in on_array and on_array[arrays[0]]["size_kb"] * 1024 != vol.size * GIB:
            problems.append(f"{name}: array size {on_array[arrays[0]]['size_kb']} KiB")
        if vol.content == "block" and all(a in on_array for a in arrays):
            if vol.marker is not None and read_mark(d, arrays[0]) != vol.marker:
                problems.append(f"{name}: data differs")
            snap_docs = d.call(
                "GET", f"{VOLUMES}/{urllib.parse.quote(name)}/snapshots?recursion=1"
            ).doc["metadata"]
            for snap in snap_docs:
                mark = vol.snaps.get(snap["name"])
                snap_array = volume_name(
                    VolumeType.CUSTOM,
                    Content.BLOCK,
                    uuid.UUID(snap["config"]["volatile.uuid"]),
                    snapshot=True,
                )
                if mark is not None and read_mark(d, snap_array) != mark:
                    problems.append(f"{name}/{snap['name']}: data differs")
    orphans = sorted(set(on_array) - wanted)
    if orphans:
        problems.append(f"array volumes without a record: {orphans}")
    mapped = sorted(v["name"] for v in d.array() if v["mappings"])
    if mapped:
        problems.append(f"mapped at rest: {mapped}")
    host = d.state / "sim" / "hosts" / "local"
    devices = sorted(p.name for p in (host / "dev" / "disk" / "by-id").iterdir())
    if devices:
        problems.append(f"devices at rest: {devices}")
    controllers = sorted(p.name for p in (host / "sys" / "class" / "nvme").iterdir())
    if controllers:
        problems.append(f"NVMe connections at rest: {controllers}")
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if str(d.state) in line.split()[4]]
    if mounts:
        problems.append(f"mounts at rest: {mounts}")
    scratch = d.state / "lxflex" / "scratch"
    left = sorted(p.name for p in scratch.iterdir()) if scratch.is_dir() else []
    if left:
        problems.append(f"scratch at rest: {left}")
    return problems


def check_findings(d: Daemon) -> list[dict[str, Any]]:
    answer = d.call("GET", f"/1.0/storage-pools/{POOL}/check")
    assert answer.status == 200, answer.doc
    findings: list[dict[str, Any]] = answer.doc["metadata"]["findings"]
    return findings


class Busy:
    """Names the workers hold, so each volume sees one operation at a time (the model
    stays exact); the daemon is free to run different volumes at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[str] = set()

    def take(self, rng: random.Random, names: list[str]) -> str | None:
        with self._lock:
            free = [n for n in names if n not in self._held]
            if not free:
                return None
            name = rng.choice(free)
            self._held.add(name)
            return name

    def claim(self, name: str) -> bool:
        with self._lock:
            if name in self._held:
                return False
            self._held.add(name)
            return True

    def free(self, *names: str) -> None:
        with self._lock:
            self._held.difference_update(names)
