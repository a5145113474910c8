"""Undo of multi-step work, step by step: the one way lxflex rolls back.

Theory of operation: an operation that makes several things (an array volume, then its
snapshots, then a row) opens a :class:`Reverter`, and after each step that succeeds
adds the step that undoes it. When the operation ends without :meth:`Reverter.success`
(an error, a cancellation), the undo steps run newest first. An undo step that fails is
never dropped: it is logged, and its ``kept`` callback records what was left behind (the
service's intent journal), so that start-up repair or ``storage check`` finishes it. The
error the caller sees is always the operation's own, never a cleanup's.

Modelled on LXD's ``revert`` package: ``defer revert.Fail()`` becomes ``async with``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

__all__ = ["Reverter", "Undo"]

log = logging.getLogger("lxflex.revert")

Undo = Callable[[], Awaitable[None]]
Kept = Callable[[BaseException], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Step:
    undo: Undo
    what: str
    kept: Kept | None


class Reverter:
    """Undo steps of one operation; an async context manager.

    ``async with Reverter() as revert: ...; revert.add(undo, "what"); ...;
    revert.success()``. Leaving the block by an exception runs the undo steps (newest
    first) and lets the exception through; leaving it normally without ``success()``
    runs them too (a forgotten ``success()`` must not leak half an operation silently).
    """

    def __init__(self) -> None:
        self._steps: list[_Step] = []
        self._done = False

    def add(self, undo: Undo, what: str, *, kept: Kept | None = None) -> None:
        """Undo ``what`` with ``undo`` if the operation fails; when ``undo`` itself fails,
        ``kept(error)`` records the leftover."""
        self._steps.append(_Step(undo, what, kept))

    def success(self) -> None:
        """The operation is complete: nothing is undone."""
        self._done = True
        self._steps.clear()

    async def revert(self) -> list[str]:
        """Run the undo steps now, newest first; return what could not be undone."""
        failed: list[str] = []
        interrupted: BaseException | None = None
        steps, self._steps = self._steps, []
        for step in reversed(steps):
            try:
                await step.undo()
            except BaseException as exc:
                log.warning("cannot undo %s: %s", step.what, exc or type(exc).__name__)
                failed.append(step.what)
                if step.kept is not None:
                    try:
                        await step.kept(exc)
                    except Exception:
                        log.exception("cannot record the leftover of %s", step.what)
                if not isinstance(exc, Exception):
                    interrupted = interrupted or exc  # the other steps still run
        if interrupted is not None:
            raise interrupted
        return failed

    async def __aenter__(self) -> Reverter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done:
            await self.revert()
