"""Running lxflexd --simulator in a child process for the compatibility tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

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
