"""What a failed cleanup leaves behind: the driver's port to the service's journal.

The driver undoes its own steps when a later one fails (see :mod:`lxflex.revert`). When an
undo step fails too (the gateway refuses a removal, an unmap times out), the object it
was undoing is a :class:`Leftover`, handed to the pool's :class:`Leftovers`: the service
records it in its intent journal, and start-up repair or ``storage check --repair``
finishes the cleanup. Nothing the driver made is forgotten because a cleanup failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Leftover", "Leftovers", "LoggedLeftovers", "keep_quietly"]

log = logging.getLogger("lxflex.driver")


@dataclass(frozen=True, slots=True)
class Leftover:
    """An array object to remove (``volume``: a volume or snapshot, by ID or by name) or
    a mapping of a volume to this host to undo (``unmap``), and why it is left."""

    kind: Literal["volume", "unmap"]
    array_id: str | None = None
    name: str | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.array_id is None and (self.kind == "unmap" or self.name is None):
            raise ValueError(f"a {self.kind} leftover needs an array ID or, for a volume, a name")

    def __str__(self) -> str:
        what = "mapping of volume" if self.kind == "unmap" else "array volume"
        ident = self.array_id or self.name
        return f"{what} {ident}" + (f" ({self.reason})" if self.reason else "")


class Leftovers(Protocol):
    async def keep(self, leftover: Leftover) -> None:
        """Record a leftover for repair; may raise if it cannot be recorded."""


class LoggedLeftovers:
    """Leftovers only logged: for a driver used without a journal (tools, tests)."""

    async def keep(self, leftover: Leftover) -> None:
        log.error("left behind, to clean up by hand: %s", leftover)


async def keep_quietly(leftovers: Leftovers, leftover: Leftover) -> None:
    """Hand a leftover over for repair; never raises (a failure to record it is logged,
    with what is left, so that an operator can clean it up)."""
    try:
        await leftovers.keep(leftover)
    except Exception:
        log.exception("cannot record for repair: %s", leftover)
