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
import tempfile
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

from ..conftest import unmount_under

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


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: int = 60) -> None:
    """Stop a process this test started: ``sig``, then SIGKILL after ``timeout`` seconds."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
        stop_process(proc)


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


@contextmanager
def real_lxd(tmp: Path, pool: str) -> Iterator[Daemon]:
    """The real LXD 5.0.2 (Debian ``lxd``) in a state directory of its own, with a
    ``dir`` pool named ``pool``; its instances are deleted and its mounts undone when
    the block ends. Skipped where LXD is not installed, except on CI."""
    binary = shutil.which("lxd")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("the real LXD (Debian lxd) is missing on CI")
        pytest.skip("the real LXD (Debian lxd) is not installed")
    # LXD_DIR must be short: it holds unix sockets (108-byte limit).
    state = Path(tempfile.mkdtemp(prefix="lxd-", dir="/tmp"))
    d = Daemon(state, tmp / "lxd-conf", tmp / "lxd.log")
    d.conf.mkdir()
    proc = subprocess.Popen(
        [binary, "--group", "root", "--logfile", str(d.log)],
        env={**os.environ, "LXD_DIR": str(state)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while d.lxc("info", check=False).returncode != 0:
            assert proc.poll() is None, f"lxd exited: {d.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "lxd did not start"
            time.sleep(0.5)
        d.lxc("storage", "create", pool, "dir")
        yield d
    finally:
        listed = d.lxc("list", "--format", "csv", "-c", "n", check=False).stdout.split()
        for name in listed:  # running containers outlive LXD's SIGTERM: stop them first
            d.lxc("delete", "--force", name, check=False)
        stop_process(proc, timeout=120)
        unmount_under(state)
        shutil.rmtree(state, ignore_errors=True)


def busybox_image(d: Daemon, tmp: Path, alias: str = "busybox") -> None:
    """An image made here from the static busybox (no image server is reachable),
    imported into ``d`` as ``alias``; and a root disk on its ``default`` pool."""
    busybox = shutil.which("busybox")
    if busybox is None:
        if os.environ.get("CI"):
            pytest.fail("busybox-static is missing on CI")
        pytest.skip("busybox (Debian busybox-static) is not installed")
    root = tmp / "image" / "rootfs"
    for directory in ("bin", "sbin", "etc", "dev", "proc", "sys", "tmp", "root", "data"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in ("sh", "ls", "cat", "echo", "mkdir", "sleep", "id", "stat", "sync"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "sbin" / "init").symlink_to("../bin/busybox")
    (root.parent / "metadata.yaml").write_text(
        "architecture: x86_64\ncreation_date: 1700000000\n"
        "properties:\n  os: busybox\n  description: busybox for tests\n"
    )
    tarball = tmp / "image.tar.gz"
    subprocess.run(
        ["tar", "-C", str(root.parent), "-czf", str(tarball), "metadata.yaml", "rootfs"],
        check=True,
    )
    d.lxc("image", "import", str(tarball), "--alias", alias)
    root_disk(d)


def root_disk(d: Daemon) -> None:
    """A root disk for ``d``'s instances: a ``default`` dir pool in its default profile."""
    if "default" not in d.lxc("storage", "list", "--format", "csv").stdout:
        d.lxc("storage", "create", "default", "dir")
    d.lxc("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default")


def lxd_remote(client: Daemon, server: Daemon, name: str) -> None:
    """``server`` (a real LXD) as remote ``name`` of ``client``'s lxc, for migrations
    between the two: both serve HTTPS on loopback (the target of a move pulls from the
    source), and ``server`` trusts ``client``'s certificate (added through its socket:
    no trust password on any command line)."""
    for d in (client, server):
        if not d.lxc("config", "get", "core.https_address").stdout.strip():
            d.lxc("config", "set", "core.https_address", f"127.0.0.1:{free_port()}")
    if not (client.conf / "client.crt").exists():
        make_client_cert(client.conf)
    server.lxc("config", "trust", "add", str(client.conf / "client.crt"))
    address = server.lxc("config", "get", "core.https_address").stdout.strip()
    client.lxc("remote", "add", name, f"https://{address}", "--accept-certificate")


def lxflex(d: Daemon, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    """The lxflex client against ``d``, which must exit with ``code``."""
    done = subprocess.run(
        [str(BIN / "lxflex"), *args],
        env=d.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == code, done.stdout + done.stderr
    return done
