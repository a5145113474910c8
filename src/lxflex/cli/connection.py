"""Talking to lxflexd: where it is, its envelopes, its operations.

The daemon is found as lxc finds LXD: ``LXFLEX_DIR`` (or ``LXD_DIR``) names its state
directory, whose ``unix.socket`` is the local daemon (``/var/lib/lxflex`` by default). A
``REMOTE:`` prefix on a pool names a remote from lxc's own configuration
(``$LXD_CONF/config.yml``, else ``~/.config/lxc``), so ``lxc remote add`` enrols lxflex
too; such a remote is reached over HTTPS with lxc's client certificate, pinned to the
server certificate lxc saved. This module talks HTTP only: it imports nothing of the
daemon's layers.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import yaml

__all__ = ["Connection", "DaemonError", "Unreachable", "connect"]

DEFAULT_DIR = Path("/var/lib/lxflex")
_CHUNK = 1 << 20


class DaemonError(Exception):
    """The daemon refused a request, or an operation failed."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Unreachable(Exception):
    """No daemon answers where it should be."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("lxd", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


@dataclass(frozen=True)
class Endpoint:
    """Where a daemon listens: a unix socket, or an HTTPS address with credentials."""

    socket: Path | None = None
    address: str = ""
    client_cert: Path | None = None
    client_key: Path | None = None
    server_cert: Path | None = None

    def describe(self) -> str:
        return str(self.socket) if self.socket else f"https://{self.address}"


def lxc_config_dir() -> Path:
    if "LXD_CONF" in os.environ:
        return Path(os.environ["LXD_CONF"])
    return Path.home() / ".config" / "lxc"


def endpoint_for(remote: str | None) -> Endpoint:
    if not remote:
        state = os.environ.get("LXFLEX_DIR") or os.environ.get("LXD_DIR")
        return Endpoint(socket=(Path(state) if state else DEFAULT_DIR) / "unix.socket")
    conf = lxc_config_dir()
    try:
        doc = yaml.safe_load((conf / "config.yml").read_text()) or {}
    except FileNotFoundError:
        doc = {}
    found = (doc.get("remotes") or {}).get(remote)
    if not isinstance(found, dict) or not str(found.get("addr", "")).startswith("https://"):
        raise DaemonError(f"no HTTPS remote {remote!r} in {conf / 'config.yml'} (lxc remote add)")
    return Endpoint(
        address=str(found["addr"]).removeprefix("https://").rstrip("/"),
        client_cert=conf / "client.crt",
        client_key=conf / "client.key",
        server_cert=conf / "servercerts" / f"{remote}.crt",
    )


class Connection:
    """Requests to one daemon. Each call opens a connection (the CLI makes few)."""

    def __init__(
        self, endpoint: Endpoint, timeout: float = 300.0, target: str | None = None
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.target = target  # the cluster member every request is for (?target=)

    def _connection(self) -> http.client.HTTPConnection:
        ep = self.endpoint
        if ep.socket is not None:
            return _UnixConnection(str(ep.socket), self.timeout)
        ctx = ssl.create_default_context(cafile=str(ep.server_cert))
        ctx.check_hostname = False  # pinned: the saved server certificate is the only CA
        ctx.load_cert_chain(str(ep.client_cert), str(ep.client_key))
        host, _, port = ep.address.rpartition(":")
        return http.client.HTTPSConnection(
            host.strip("[]"), int(port), timeout=self.timeout, context=ctx
        )

    @contextmanager
    def _talking(self) -> Iterator[http.client.HTTPConnection]:
        """A connection for one exchange; transport failures become Unreachable."""
        conn = self._connection()
        try:
            yield conn
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(
                f"cannot reach lxflexd at {self.endpoint.describe()}: {exc}"
            ) from None
        finally:
            conn.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[Any, dict[str, str]]:
        """Send; return the envelope's metadata (an operation for async answers) and the
        response headers. Errors raise DaemonError with the daemon's message."""
        if self.target and not (query and "target" in query):
            query = {**(query or {}), "target": self.target}
        if query:
            path += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        with self._talking() as conn:
            conn.request(
                method,
                path,
                body=data,
                headers={"Content-Type": "application/json", **(headers or {})},
            )
            response = conn.getresponse()
            raw = response.read()
        try:
            doc = json.loads(raw)
        except ValueError:
            raise DaemonError(f"unexpected answer ({response.status})", response.status) from None
        if doc.get("type") == "error":
            raise DaemonError(str(doc.get("error") or "error"), int(doc.get("error_code") or 0))
        return doc.get("metadata"), {k.lower(): v for k, v in response.getheaders()}

    def download(
        self, path: str, out: BinaryIO, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Stream a raw (non-envelope) answer into ``out``; return the bytes written."""
        with self._talking() as conn:
            conn.request("GET", path)
            response = conn.getresponse()
            if response.status != 200:
                doc = json.loads(response.read() or b"{}")
                raise DaemonError(str(doc.get("error") or response.reason), response.status)
            total = int(response.getheader("Content-Length") or 0)
            done = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            return done

    def upload(
        self,
        path: str,
        source: BinaryIO,
        size: int,
        headers: dict[str, str],
        progress: Callable[[int, int], None] | None = None,
    ) -> Any:
        """Send ``size`` bytes of ``source`` as an octet-stream; return the metadata."""

        def chunks() -> Iterator[bytes]:
            done = 0
            while chunk := source.read(_CHUNK):
                done += len(chunk)
                if progress is not None:
                    progress(done, size)
                yield chunk

        with self._talking() as conn:
            conn.request(
                "POST",
                path,
                body=chunks(),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(size),
                    **headers,
                },
            )
            response = conn.getresponse()
            raw = response.read()
        doc = json.loads(raw or b"{}")
        if doc.get("type") == "error":
            raise DaemonError(str(doc.get("error") or "error"), int(doc.get("error_code") or 0))
        return doc.get("metadata")

    def get(self, path: str, **query: str) -> Any:
        return self.request("GET", path, query=query or None)[0]

    def finish(
        self, metadata: Any, progress: Callable[[dict[str, Any]], None] | None = None
    ) -> Any:
        """Wait for ``metadata`` if it is an operation (a sync answer is done already)."""
        if isinstance(metadata, dict) and "id" in metadata and "status_code" in metadata:
            return self.wait(metadata, progress)
        return metadata

    def wait(
        self, operation: dict[str, Any], progress: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Follow an operation to its end (reporting its metadata to ``progress``); a
        failed or cancelled one raises DaemonError with its error."""
        url = f"/1.0/operations/{operation['id']}"
        op = operation
        while op.get("status_code", 103) < 200:
            if progress is not None and op.get("metadata"):
                progress(op["metadata"])
            op = self.request("GET", url + "/wait", query={"timeout": "0.5"})[0]
            if op is None:  # pragma: no cover - a daemon always answers an operation
                time.sleep(0.5)
                op = operation
        if op["status_code"] != 200:
            raise DaemonError(op.get("err") or op.get("status", "operation failed"))
        if progress is not None and op.get("metadata"):
            progress(op["metadata"])
        return op


def connect(remote: str | None, target: str | None = None) -> Connection:
    """A connection to the daemon of ``remote`` (none: the local socket), whose requests
    go to cluster member ``target`` when one is named."""
    return Connection(endpoint_for(remote), target=target)
