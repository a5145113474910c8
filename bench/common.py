"""Helpers shared by the benchmarks: a simulator in its own process, on loopback.

The gateway runs in a separate process, as a real one runs on another machine, so the
client's and the gateway's CPU time do not share one event loop.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen


@dataclass
class Sim:
    url: str
    password: str
    ca_file: str | None
    pid: int

    def call(self, method: str, path: str, body: Any = None) -> Any:
        import ssl

        data = None if body is None else json.dumps(body).encode()
        req = Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        ctx = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        with urlopen(req, timeout=30, context=ctx) as r:
            return json.loads(r.read())

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "/_sim/stats")
        return result


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def simulator(api_version: str = "4.5", tls: bool = False) -> Iterator[Sim]:
    password = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="lxflex-bench-") as tmp:
        argv = [
            str(Path(sys.executable).parent / "lxflex-sim"),
            "--state-dir",
            tmp,
            "--api-version",
            api_version,
            "--no-fabric",
        ]
        if tls:
            argv.append("--tls")
        env = {**os.environ, "LXFLEX_SIM_ADMIN_PASSWORD": password}
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        try:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            ca = str(Path(tmp) / "tls" / "cert.pem") if tls else None
            yield Sim(info["url"], password, ca, proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
