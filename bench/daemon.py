"""lxflexd --simulator in a child process, and an HTTP client on its unix socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen


@dataclass
class Daemon:
    state: Path
    proc: subprocess.Popen[bytes]

    @property
    def socket(self) -> str:
        return str(self.state / "unix.socket")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def gateway_requests(self) -> int:
        port = (self.state / "sim" / "port").read_text().strip()
        with urlopen(f"http://127.0.0.1:{port}/_sim/stats", timeout=30) as r:
            return int(json.loads(r.read())["total"])

    def gateway_fault(self, fault: dict[str, Any]) -> None:
        port = (self.state / "sim" / "port").read_text().strip()
        req = Request(
            f"http://127.0.0.1:{port}/_sim/faults",
            data=json.dumps(fault).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urlopen(req, timeout=30):
            pass


def _ready(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


@contextmanager
def daemon(state: Path, *args: str) -> Iterator[Daemon]:
    """lxflexd on ``state``; with no ``args``, on its embedded simulator."""
    state.mkdir(parents=True, exist_ok=True)
    log = open(state / "bench-daemon.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "lxflexd"),
            "--state-dir",
            str(state),
            *(args or ("--simulator",)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )
    d = Daemon(state, proc)
    try:
        deadline = time.monotonic() + 60
        while not _ready(d.socket):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("lxflexd did not start; see " + str(state / "bench-daemon.log"))
            time.sleep(0.05)
        yield d
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
