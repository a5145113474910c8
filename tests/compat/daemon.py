"""Running lxflexd --simulator in a child process for the compatibility tests."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lxflex.driver.naming import Content, VolumeType, volume_name

BIN = Path(sys.executable).parent


@dataclass
class Daemon:
    state: Path
    conf: Path
    log: Path

    @property
    def socket(self) -> Path:
        return self.state / "unix.socket"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LXD_DIR": str(self.state),
            "LXD_CONF": str(self.conf),
            "LC_ALL": "C",
            "HOME": str(self.conf),
        }

    def lxc(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["lxc", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            input=stdin,
            timeout=300,
            check=False,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"lxc {' '.join(args)} failed ({res.returncode}): {res.stderr}"
                f"\n--- daemon log ---\n{self.log.read_text()[-3000:]}"
            )
        return res


def _ready(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@contextmanager
def running_daemon(tmp: Path, *args: str) -> Iterator[Daemon]:
    if shutil.which("lxc") is None and os.environ.get("CI"):
        pytest.fail("the lxc client (Debian lxd-client) is missing on CI")
    if os.geteuid() != 0:
        pytest.skip("the daemon's simulator attaches loop devices: needs root")
    daemon = Daemon(tmp / "state", tmp / "conf", tmp / "daemon.log")
    daemon.conf.mkdir(parents=True)
    with open(daemon.log, "w") as log:
        proc = subprocess.Popen(
            [str(BIN / "lxflexd"), "--state-dir", str(daemon.state), "--simulator", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not _ready(daemon.socket):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"lxflexd did not start:\n{daemon.log.read_text()}")
            time.sleep(0.1)
        yield daemon
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def backing_file(
    d: Daemon, volume: str, snapshot: str | None = None, *, content: str = "block"
) -> Path:
    """The simulator's backing file of a block volume (or snapshot) in the pool."""
    path = f"/1.0/storage-pools/powerflex/volumes/custom/{volume}"
    if snapshot:
        path += f"/snapshots/{snapshot}"
    config = json.loads(d.lxc("query", path).stdout)["config"]
    name = volume_name(
        VolumeType.CUSTOM,
        Content(content),
        uuid.UUID(config["volatile.uuid"]),
        snapshot=snapshot is not None,
    )
    port = (d.state / "sim" / "port").read_text().strip()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/state", timeout=30) as r:
        volumes = json.loads(r.read())["volumes"]
    (found,) = [v for v in volumes if v["name"] == name]
    backing: Path = d.state / "sim" / "volumes" / str(found["id"])
    if not backing.exists():  # the simulator makes it when the data is first needed
        with open(backing, "xb") as f:
            f.truncate(found["size_kb"] * 1024)
    return backing


def pwrite(path: Path, chunks: dict[int, bytes]) -> None:
    with open(path, "r+b") as f:
        for offset, data in chunks.items():
            f.seek(offset)
            f.write(data)


def pread(path: Path, chunks: dict[int, bytes]) -> dict[int, bytes]:
    with open(path, "rb") as f:
        found = {}
        for offset, data in chunks.items():
            f.seek(offset)
            found[offset] = f.read(len(data))
    return found


def make_client_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed client certificate and its key, as PEM files in ``directory``."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-client")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )
    crt, pem_key = directory / "client.crt", directory / "client.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, pem_key


class Monitor:
    """``lxc monitor --format=json`` in the background, its events collected as they come."""

    def __init__(self, d: Daemon, kind: str) -> None:
        self.proc = subprocess.Popen(
            ["lxc", "monitor", f"--type={kind}", "--format=json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=d.env(),
        )
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        block: list[str] = []
        for line in self.proc.stdout:
            if line.strip():
                block.append(line)
            elif block:
                self.events.append(json.loads("".join(block)))
                block = []

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(0.5)  # the last events on their way
        # SIGTERM, not SIGINT: a test run started in the background of a shell inherits
        # SIGINT ignored, and so would lxc.
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        return self.events
