"""Waiting for a path to appear or vanish, driven by inotify rather than fixed sleeps.

The kernel (or the fabric emulation) creates ``/dev/disk/by-id`` links asynchronously
after a mapping changes. :func:`wait_for_path` watches the link's directory with inotify
and re-checks the path on every event, so it returns within moments of the link's
creation; the path is checked once the watch is in place, so an event cannot be missed.
Where inotify is unavailable it falls back to polling with a short, growing interval.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["wait_for_path"]

_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_MASK = 0x80 | 0x40 | 0x100 | 0x200 | 0x4  # moved to/from, create, delete, attrib

_init: Any
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _init = _libc.inotify_init1
    _add = _libc.inotify_add_watch
    _add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
except (OSError, AttributeError):  # pragma: no cover - non-Linux
    _init = None


def _present(path: Path) -> bool:
    return path.exists()


async def _poll(path: Path, done: Callable[[], bool], deadline: float) -> None:
    loop = asyncio.get_running_loop()
    delay = 0.005
    while not done():
        if loop.time() >= deadline:
            raise TimeoutError
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 0.1)


async def wait_for_path(
    path: Path,
    *,
    present: bool = True,
    timeout: float = 30.0,
    ready: Callable[[Path], bool] = _present,
) -> None:
    """Return once ``path`` is ``ready`` (by default: exists), or with ``present=False``
    once it no longer exists; TimeoutError after ``timeout`` s.

    A symlink counts as present only when its target exists; ``ready`` can ask more of
    it (that it leads to the right device: a stale link may lead to another one).
    """

    def done() -> bool:
        return ready(path) if present else not _present(path)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    fd = _init(_IN_NONBLOCK | _IN_CLOEXEC) if _init is not None else -1
    if fd < 0:
        await _poll(path, done, deadline)
        return
    try:
        if _add(fd, os.fsencode(path.parent), _MASK) < 0:
            await _poll(path, done, deadline)
            return
        changed = asyncio.Event()
        loop.add_reader(fd, changed.set)
        try:
            while not done():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except TimeoutError:
                    continue
                try:
                    while os.read(fd, 65536):
                        pass
                except BlockingIOError:
                    pass
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)
