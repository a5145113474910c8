"""Background operations, as LXD's API exposes them.

An operation runs a coroutine in a task. Its state changes (and progress updates) are
published as ``operation`` events; ``GET /1.0/operations/<id>`` and ``/wait`` read it. A
finished operation stays readable for ``keep`` seconds. A task that fails records its
error in ``err`` with status Failure; the error's text is what clients show, so it must
never carry a secret (service errors do not).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .envelope import rfc3339
from .events import EventHub

log = logging.getLogger("lxflex.api")

RUNNING, SUCCESS, FAILURE, CANCELLED = 103, 200, 400, 401
_STATUS = {RUNNING: "Running", SUCCESS: "Success", FAILURE: "Failure", CANCELLED: "Cancelled"}

Work = Callable[["Operation"], Awaitable[None]]


@dataclass
class Operation:
    id: str
    description: str
    resources: dict[str, list[str]]
    project: str = "default"
    cls: str = "task"
    status_code: int = RUNNING
    metadata: dict[str, Any] | None = None
    err: str = ""
    created_at: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC)
    )
    updated_at: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC)
    )
    done: asyncio.Event = field(default_factory=asyncio.Event)
    hub: EventHub | None = None
    loop: asyncio.AbstractEventLoop | None = None
    may_cancel: bool = False
    _last_progress: float = 0.0
    _progress_start: tuple[float, int] | None = None

    @property
    def final(self) -> bool:
        return self.status_code >= 200

    def render(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class": self.cls,
            "description": self.description,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "status": _STATUS[self.status_code],
            "status_code": self.status_code,
            "resources": self.resources,
            "metadata": self.metadata,
            "may_cancel": self.may_cancel,
            "err": self.err,
            "location": self.hub.location if self.hub else "none",
        }

    def _changed(self) -> None:
        self.updated_at = datetime.datetime.now(datetime.UTC)
        if self.hub is not None:
            self.hub.publish("operation", self.render(), self.project)

    def progress(self, done: int, total: int, key: str = "fs_progress") -> None:
        """Record progress; callable from worker threads (copies run in one)."""
        loop = self.loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._progress(done, total, key)
        else:
            loop.call_soon_threadsafe(self._progress, done, total, key)

    def _progress(self, done: int, total: int, key: str) -> None:
        # Published at most twice a second, and at the end.
        assert self.loop is not None  # noqa: S101 - set at start
        now = self.loop.time()
        if done < total and now - self._last_progress < 0.5:
            return
        self._last_progress = now
        if self._progress_start is None:
            self._progress_start = (now, done)
        started, first = self._progress_start
        speed = (done - first) / (now - started) if now > started else 0.0
        percent = 100 * done // total if total else 100
        self.metadata = {
            **(self.metadata or {}),
            key: f"{percent}% ({_iec(done)} of {_iec(total)}, {_iec(int(speed))}/s)",
            "bytes_done": done,
            "bytes_total": total,
        }
        self._changed()

    def finish(self, error: str = "", *, cancelled: bool = False) -> None:
        if cancelled:
            self.status_code, self.err = CANCELLED, "operation cancelled"
        else:
            self.status_code = FAILURE if error else SUCCESS
            self.err = error
        self._changed()
        self.done.set()


def _iec(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.2f}{unit}"
        value /= 1024
    return f"{value:.2f}TiB"


class Operations:
    """Background operations; ``describe`` turns an operation's error into the text its
    client sees (short, no host paths: the API's own rendering of errors)."""

    def __init__(
        self,
        hub: EventHub,
        keep: float = 300.0,
        describe: Callable[[BaseException], str] = str,
    ) -> None:
        self.hub = hub
        self.keep = keep
        self.describe = describe
        self._ops: dict[str, Operation] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(
        self,
        description: str,
        work: Work,
        resources: dict[str, list[str]] | None = None,
        project: str = "default",
    ) -> Operation:
        op = Operation(
            str(uuid.uuid4()),
            description,
            resources or {},
            project,
            hub=self.hub,
            loop=asyncio.get_running_loop(),
        )
        self._ops[op.id] = op
        op._changed()

        async def run() -> None:
            try:
                await work(op)
            except Exception as exc:  # the error is the operation's result
                text = self.describe(exc) or type(exc).__name__
                log.warning("operation %s (%s) failed: %s", op.id, description, text)
                op.finish(text)
            else:
                op.finish()
            loop = asyncio.get_running_loop()
            loop.call_later(self.keep, self._ops.pop, op.id, None)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return op

    def hold(
        self,
        description: str,
        metadata: dict[str, Any],
        *,
        cls: str = "token",
        resources: dict[str, list[str]] | None = None,
    ) -> Operation:
        """A running operation with no work: it ends when :meth:`cancel` is called (a
        trust token is one, until it is used or revoked)."""
        op = Operation(
            str(uuid.uuid4()),
            description,
            resources or {},
            cls=cls,
            metadata=metadata,
            hub=self.hub,
            loop=asyncio.get_running_loop(),
            may_cancel=True,
        )
        self._ops[op.id] = op
        op._changed()
        return op

    def cancel(self, op: Operation) -> None:
        """End a held operation as cancelled; it stays readable for ``keep`` seconds."""
        if op.final:
            return
        op.finish(cancelled=True)
        asyncio.get_running_loop().call_later(self.keep, self._ops.pop, op.id, None)

    def get(self, op_id: str) -> Operation | None:
        return self._ops.get(op_id)

    def all(self) -> list[Operation]:
        return list(self._ops.values())

    async def close(self) -> None:
        """Wait for running operations (bounded by the callers' own timeouts)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
