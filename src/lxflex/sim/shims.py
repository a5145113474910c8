"""``lxflex-sim-nvme`` and ``lxflex-sim-drvcfg``: stand-ins for nvme-cli and drv_cfg.

They forward their arguments to the simulator that emulates this host's fabric and print
its answer, exiting with the same code the real tool would. The simulator is found through
``LXFLEX_SIM_URL`` (its address), ``LXFLEX_SIM_HOST`` (the emulated host, default
``local``) and optionally ``LXFLEX_SIM_CA`` (its certificate when it serves TLS); the
wrappers the simulator writes to ``<state>/hosts/<host>/bin/`` set all three.

Every attach and detach starts a shim, so it imports only what one POST needs: a plain
HTTP/1.1 request over a socket (and ssl for https). urllib.request would double its
start-up.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from urllib.parse import quote, urlsplit


def _post(url: str, path: str, body: bytes) -> tuple[int, bytes]:
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if https else 80)
    sock = socket.create_connection((host, port), timeout=120)
    try:
        if https:
            import ssl

            context = ssl.create_default_context(cafile=os.environ.get("LXFLEX_SIM_CA"))
            sock = context.wrap_socket(sock, server_hostname=host)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        answer = bytearray()
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sock.close()
    header, _, content = bytes(answer).partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    if fields.get("transfer-encoding") == "chunked":
        content = _unchunk(content)
    return status, content


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[:size]
        data = data[size + 2 :]


def _call(tool: str, argv: list[str]) -> int:
    url = os.environ.get("LXFLEX_SIM_URL")
    if not url:
        print(
            f"{tool}: LXFLEX_SIM_URL is not set; run the wrapper in <state>/hosts/<host>/bin",
            file=sys.stderr,
        )
        return 2
    host = os.environ.get("LXFLEX_SIM_HOST", "local")
    body = json.dumps({"argv": argv}).encode()
    path = f"/_sim/fabric/hosts/{quote(host, safe='')}/{tool}"
    try:
        status, content = _post(url, path, body)
    except (OSError, ValueError, IndexError) as exc:
        print(f"{tool}: cannot reach the simulator at {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        text = content.decode(errors="replace")
        print(f"{tool}: simulator answered HTTP {status}: {text}", file=sys.stderr)
        return 1
    result = json.loads(content)
    sys.stdout.write(result.get("stdout", ""))
    sys.stderr.write(result.get("stderr", ""))
    return int(result.get("rc", 1))


def nvme_main() -> None:
    sys.exit(_call("nvme", sys.argv[1:]))


def drvcfg_main() -> None:
    sys.exit(_call("drv_cfg", sys.argv[1:]))


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("nvme", "drv_cfg"):
        print("usage: python -m lxflex.sim.shims nvme|drv_cfg ARGS...", file=sys.stderr)
        sys.exit(2)
    sys.exit(_call(sys.argv[1], sys.argv[2:]))
