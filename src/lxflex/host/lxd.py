"""This host's LXD (or Incus) daemon, through its unix socket: the instances that use
lxflex volumes, their disk devices, and the lifecycle events that say when they change.

Only what attaching a volume to an instance needs: read instances, add, replace and
remove a device, wait for an instance's operations, and follow ``instance-*`` lifecycle
events. LXD's API answers in its
envelope (``type`` sync, async or error); an async answer is an operation, waited for.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

__all__ = ["LxdClient", "LxdError", "find_socket"]

log = logging.getLogger("lxflex.host")

# Where LXD and Incus put their API socket: the Debian package, the snap, Incus.
SOCKETS = (
    Path("/var/lib/lxd/unix.socket"),
    Path("/var/snap/lxd/common/lxd/unix.socket"),
    Path("/var/lib/incus/unix.socket"),
)
_TIMEOUT = 120.0


class LxdError(Exception):
    """LXD refused or could not be reached; ``status`` is its HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def find_socket(*, besides: Path | None = None) -> Path:
    """The API socket of this host's LXD or Incus: ``$LXD_DIR/unix.socket``, else the
    first of the usual places that answers; never ``besides`` (lxflexd's own, which
    speaks LXD's API too)."""
    candidates = [Path(os.environ["LXD_DIR"]) / "unix.socket"] if "LXD_DIR" in os.environ else []
    for path in [*candidates, *SOCKETS]:
        if path == besides:
            continue
        if path.is_socket() and _answers(path):
            return path
    tried = ", ".join(str(p) for p in [*candidates, *SOCKETS])
    raise LxdError(f"no LXD or Incus answers on this host (tried {tried}); name its socket")


def _instance_path(name: str, project: str) -> str:
    path = f"/1.0/instances/{quote(name, safe='')}"
    return path if project in ("", "default") else f"{path}?project={quote(project, safe='')}"


class LxdClient:
    """Requests to one LXD (or Incus) API socket."""

    def __init__(self, socket_path: Path) -> None:
        self.socket = socket_path
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self.socket)),
                timeout=aiohttp.ClientTimeout(total=_TIMEOUT),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, path: str, body: Any = None, *, etag: str | None = None
    ) -> tuple[Any, str]:
        """The answer's metadata (an async answer: the operation's, once it is done) and
        its ETag; LxdError for an error answer or no answer."""
        headers = {"If-Match": etag} if etag else {}
        try:
            async with self._client().request(
                method, f"http://lxd{path}", json=body, headers=headers
            ) as answer:
                doc = await answer.json(content_type=None)
                tag = answer.headers.get("ETag", "")
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise LxdError(f"LXD at {self.socket} did not answer {method} {path}: {exc}") from None
        if not isinstance(doc, dict):
            raise LxdError(f"LXD at {self.socket} answered {method} {path} with no envelope")
        if doc.get("type") == "error" or int(doc.get("status_code", 200)) >= 400:
            code = int(doc.get("error_code") or doc.get("status_code") or 500)
            raise LxdError(str(doc.get("error") or f"error {code}"), code)
        if doc.get("type") == "async":
            return await self._wait(str(doc.get("operation", ""))), tag
        return doc.get("metadata"), tag

    async def _wait(self, operation: str) -> Any:
        op, _ = await self.request("GET", f"{operation}/wait?timeout={int(_TIMEOUT)}")
        if not isinstance(op, dict) or op.get("status_code") != 200:
            err = op.get("err") if isinstance(op, dict) else None
            raise LxdError(str(err or "the operation did not succeed"))
        return op.get("metadata")

    async def server(self) -> dict[str, Any]:
        doc, _ = await self.request("GET", "/1.0")
        return doc if isinstance(doc, dict) else {}

    async def instance(self, name: str, project: str = "default") -> tuple[dict[str, Any], str]:
        """The instance (LXD's document) and its ETag."""
        doc, tag = await self.request("GET", _instance_path(name, project))
        if not isinstance(doc, dict):
            raise LxdError(f"LXD answered no instance {name!r}")
        return doc, tag

    async def set_device(
        self,
        name: str,
        project: str,
        device: str,
        config: dict[str, str],
        *,
        new: bool = False,
        known: tuple[dict[str, Any], str] | None = None,
    ) -> None:
        """Give the instance ``config`` as its device ``device``: a ``new`` one (refused
        if it has one so named), else in place of the one it has. ``known``: the
        instance and its ETag as read already (LXD refuses the change if the instance
        changed since)."""
        doc, tag = known or await self.instance(name, project)
        has = device in (doc.get("devices") or {})
        if new and has:
            raise LxdError(f"instance {name!r} already has a device named {device!r}", 409)
        if not new and not has:
            raise LxdError(f"instance {name!r} has no device named {device!r}", 404)
        # A PATCH replaces the devices it names, whole, and leaves the others alone.
        await self.request(
            "PATCH", _instance_path(name, project), {"devices": {device: config}}, etag=tag
        )

    async def settled(self, name: str, project: str = "default") -> None:
        """Wait until no operation of the daemon works on the instance (an instance
        arriving by migration is announced before its data has come)."""
        query = "" if project in ("", "default") else f"&project={quote(project, safe='')}"
        mine = _instance_path(name, project).partition("?")[0]
        while True:
            ops, _ = await self.request("GET", f"/1.0/operations?recursion=1{query}")
            running = ops.get("running") if isinstance(ops, dict) else None
            pending = [
                str(op.get("id"))
                for op in running or []
                if isinstance(op, dict)
                and any(
                    str(url).partition("?")[0] == mine
                    for url in (op.get("resources") or {}).get("instances") or []
                )
            ]
            if not pending:
                return
            for op_id in pending:  # however it ends
                try:
                    await self.request(
                        "GET", f"/1.0/operations/{quote(op_id, safe='')}/wait?timeout=60"
                    )
                except LxdError as exc:
                    if exc.status != 404:  # gone: it is over
                        raise

    async def instances(self) -> list[dict[str, Any]]:
        """Every instance of the daemon, in all projects (LXD's documents)."""
        docs, _ = await self.request("GET", "/1.0/instances?recursion=1&all-projects=true")
        return [d for d in docs or [] if isinstance(d, dict)]

    async def remove_device(self, name: str, project: str, device: str) -> bool:
        """Take the device away from the instance; False if it had none so named."""
        doc, tag = await self.instance(name, project)
        devices = dict(doc.get("devices") or {})
        if device not in devices:
            return False
        del devices[device]
        put = {
            k: doc[k]
            for k in ("architecture", "config", "description", "ephemeral", "profiles", "stateful")
            if k in doc
        }
        await self.request(
            "PUT", _instance_path(name, project), {**put, "devices": devices}, etag=tag
        )
        return True

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The daemon's lifecycle events, for as long as the caller listens (all
        projects); ends when the daemon goes away."""
        try:
            async with self._client().ws_connect(
                "http://lxd/1.0/events?type=lifecycle&all-projects=true", heartbeat=30
            ) as ws:
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        continue
                    try:
                        event = json.loads(message.data)
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        yield event
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.info("LXD events at %s ended: %s", self.socket, exc)
