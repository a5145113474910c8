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
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .envelope import rfc3339

log = logging.getLogger("lxflex.api")

_QUEUE = 1024

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
