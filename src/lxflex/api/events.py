"""The ``/1.0/events`` websocket: operation, lifecycle and logging events pushed to
listeners.

``lxc`` waits for operations through this stream, never through ``/wait``: it opens the
websocket before its request and waits for an ``operation`` event of that ID with a final
status. Each listener gets its own bounded queue; a listener too slow to keep up loses
its connection rather than holding memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from ..service import ClusterService
from .envelope import rfc3339

log = logging.getLogger("lxflex.api")

_QUEUE = 1024
# Types every member's listeners get from every member. Logging events stay the
# member's own: each is made only while someone listens to that member.
RELAYED = frozenset({"operation", "lifecycle"})

# Who asked for the request being served (LXD's lifecycle "requestor"): set by the trust
# middleware, inherited by the operation tasks a request starts.
REQUESTOR: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "requestor", default=None
)


@dataclass(eq=False)  # listeners are distinct by identity (kept in a set)
class _Listener:
    types: frozenset[str]
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(_QUEUE)
    )


class EventHub:
    def __init__(self, location: str = "none") -> None:
        self.location = location
        self._listeners: set[_Listener] = set()
        # Where this member's events go besides its listeners (the cluster's relay).
        self.relay: Callable[[dict[str, Any]], None] | None = None

    def listening(self, kind: str) -> bool:
        return any(kind in listener.types for listener in self._listeners)

    def publish(self, kind: str, metadata: dict[str, Any], project: str = "default") -> None:
        event = {
            "type": kind,
            "timestamp": rfc3339(datetime.datetime.now(datetime.UTC)),
            "metadata": metadata,
            "location": self.location,
            "project": project,
        }
        self.deliver(event)
        if self.relay is not None and kind in RELAYED:
            self.relay(event)

    def deliver(self, event: dict[str, Any]) -> None:
        """Hand an event (this member's, or another's) to the listeners of its type."""
        kind = event.get("type", "")
        for listener in list(self._listeners):
            if kind in listener.types:
                try:
                    listener.queue.put_nowait(event)
                except asyncio.QueueFull:
                    self._listeners.discard(listener)
                    with contextlib.suppress(asyncio.QueueFull):
                        listener.queue.put_nowait(None)

    async def close(self) -> None:
        for listener in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                listener.queue.put_nowait(None)
        self._listeners.clear()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        wanted = request.query.get("type", "")
        types = frozenset(t.strip() for t in wanted.split(",") if t.strip()) or frozenset(
            {"operation", "logging", "lifecycle"}
        )
        # No compression: lxc 5.0.2 (gorilla) rejects the frames aiohttp compresses.
        ws = web.WebSocketResponse(heartbeat=30, compress=False)
        await ws.prepare(request)
        listener = _Listener(types)
        self._listeners.add(listener)
        reader = asyncio.ensure_future(self._drain(ws))
        try:
            while True:
                getter = asyncio.ensure_future(listener.queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    getter.cancel()
                    break
                event = getter.result()
                if event is None:
                    break
                await ws.send_json(event)
        finally:
            self._listeners.discard(listener)
            reader.cancel()
            await ws.close()
        return ws

    @staticmethod
    async def _drain(ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break


_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "crit",
}


class LogForwarder(logging.Handler):
    """The daemon's log records as ``logging`` events (``lxc monitor --type=logging``),
    sent only while someone listens for them. Records from other threads reach the hub
    through its event loop. The log holds no secret, so neither do these events."""

    def __init__(self, hub: EventHub, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.DEBUG)
        self.hub = hub
        self.loop = loop
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if not self.hub.listening("logging"):
            return
        metadata = {
            "message": record.getMessage(),
            "level": _LEVELS.get(record.levelno, "info"),
            "context": {"logger": record.name},
        }
        if threading.get_ident() == self._thread:
            self.hub.publish("logging", metadata)
        else:
            self.loop.call_soon_threadsafe(self.hub.publish, "logging", metadata)


class EventRelay:
    """The cluster's events: this member's operation and lifecycle events go to the
    other members through the cluster's notices (PostgreSQL's NOTIFY), and theirs come to
    this member's listeners, each with its own ``location``, as LXD's full mesh of event
    connections delivers them. An event larger than a notice goes in parts, heard
    whole; one larger than 64 notices stays the member's own (logged); one that comes
    while the database is away is lost, as a listener's would be."""

    def __init__(self, hub: EventHub, cluster: ClusterService) -> None:
        self.hub, self.cluster = hub, cluster
        self._outbox: asyncio.Queue[str] = asyncio.Queue(_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.hub.relay = self._send
        self._tasks = [asyncio.ensure_future(self._sender()), asyncio.ensure_future(self._listen())]

    def _send(self, event: dict[str, Any]) -> None:
        try:
            self._outbox.put_nowait(json.dumps(event, separators=(",", ":")))
        except asyncio.QueueFull:
            log.warning("the event relay is behind: an event was not sent to the other members")

    async def _sender(self) -> None:
        while True:
            payload = await self._outbox.get()
            try:
                await self.cluster.tell(payload)
            except ValueError:
                log.info("an event too large to relay stayed this member's own")
            except Exception as exc:
                log.warning("cannot relay an event to the other members: %s", exc)

    async def _listen(self) -> None:
        async for payload in self.cluster.heard():
            try:
                event = json.loads(payload)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("location") != self.hub.location:
                self.hub.deliver(event)

    async def close(self) -> None:
        self.hub.relay = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
