"""The intent journal: what an operation is about to make before a row records it, and
what a failed cleanup left, until it is adopted or removed.

Theory of operation. A row is the record of an array volume (its name derives from the
row's ``volatile.uuid``); a row left ``creating`` by a crash is found and undone by
:mod:`.recovery`. Some array objects have no row while they exist: the snapshots of a
copy or an import (their rows come with the volume's, at the end), an export's temporary
snapshot, and whatever a cleanup could not remove (the gateway refused, the process was
cut short). Before an operation makes such an object it writes an entry naming it
(:meth:`Journal.intend`); the transaction that records its row deletes the entry
(:meth:`Journal.settle`), and so does its removal. A cleanup that fails hands the object to
:meth:`Journal.keep` through the driver's :class:`~lxflex.driver.leftovers.Leftovers`
port. :meth:`Journal.repair` removes (or unmaps) what the entries name, idempotently: an
object that is gone already settles its entry. It runs at start, after a failed
operation (on that operation's entries) and from ``storage check --repair``.

Host objects (mounts and directories under the scratch directory, mappings of volumes
that nothing mounts) are not journaled: everything there belongs to lxflex, so start-up
repair sweeps them (:mod:`.recovery`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from ..driver import Leftover, Leftovers, PowerFlexVolumes
from ..state import Conn, Database
from ..state import journal as jn

__all__ = ["Journal", "Repairs"]

log = logging.getLogger("lxflex.service")

Entry = jn.Entry
NewEntry = jn.NewEntry


@dataclass
class Repairs:
    """What a repair did: entries finished, and entries it could not finish (kept)."""

    done: list[Entry] = field(default_factory=list)
    failed: list[tuple[Entry, str]] = field(default_factory=list)


class _PoolLeftovers:
    def __init__(self, journal: Journal, pool_id: int) -> None:
        self._journal = journal
        self._pool_id = pool_id

    async def keep(self, leftover: Leftover) -> None:
        await self._journal.keep(self._pool_id, leftover)


class Journal:
    def __init__(self, db: Database, server: str) -> None:
        self.db = db
        self.server = server  # this server's UUID: whose host a mapping entry is on
        self._live: set[int] = set()  # entries of work running now: not leftovers yet

    def leftovers(self, pool_id: int) -> Leftovers:
        """The driver's port for one pool: leftovers of failed cleanups become entries."""
        return _PoolLeftovers(self, pool_id)

    async def keep(self, pool_id: int, leftover: Leftover) -> None:
        log.warning("pool %d: left for repair: %s", pool_id, leftover)
        entry = NewEntry(leftover.kind, leftover.array_id, leftover.name, leftover.reason)
        async with self.db.write() as conn:
            await jn.add_entries(conn, pool_id, self.server, [entry])

    async def intend(self, pool_id: int, names: Iterable[str], reason: str) -> list[int]:
        """Before making array volumes of these names: entries that name them."""
        entries = [NewEntry("volume", name=name, reason=reason) for name in names]
        if not entries:
            return []
        async with self.db.write() as conn:
            ids = await jn.add_entries(conn, pool_id, self.server, entries)
        self._live.update(ids)
        return ids

    async def settle(self, conn: Conn, ids: Collection[int]) -> None:
        """The objects of these entries are recorded (in ``conn``'s transaction) or gone."""
        await jn.delete_entries(conn, ids)
        self._live.difference_update(ids)

    def live(self, entry: Entry) -> bool:
        """Whether the entry belongs to work running now (it is no leftover yet)."""
        return entry.id in self._live

    async def entries(self, pool_id: int | None = None) -> list[Entry]:
        async with self.db.read() as conn:
            return await jn.list_entries(conn, pool_id)

    async def repair(
        self,
        pool_id: int,
        volumes: PowerFlexVolumes,
        ids: Collection[int] | None = None,
        *,
        mine_only: bool = False,
        fenced: str | None = None,
    ) -> Repairs:
        """Finish the pool's entries (those of ``ids`` only, if given; this server's
        only, with ``mine_only``: another's may be work it runs now; or only those of
        the ``fenced`` server, a member gone whose mappings were taken away, so that its
        mapping entries are done already), newest first. Each is idempotent; one that
        fails stays for the next repair. Never raises for an entry's failure."""
        result = Repairs()
        if ids is not None:
            self._live.difference_update(ids)  # the work that intended them is over
        if ids is not None and not ids:
            return result  # nothing was journaled: no query
        async with self.db.read() as conn:
            entries = await jn.list_entries(conn, pool_id, ids)
        for entry in entries:
            if fenced is not None and entry.server != fenced:
                continue
            others = fenced is None and entry.server != self.server
            if others and (mine_only or entry.kind == "unmap"):
                continue  # another server's work, or its host: that server repairs it
            try:
                if fenced is None or entry.kind != "unmap":  # a fenced host maps nothing
                    await _finish(entry, volumes)
            except Exception as exc:
                log.warning("repair of %s %s failed: %s", entry.kind, _ident(entry), exc)
                result.failed.append((entry, str(exc)))
                continue
            async with self.db.write() as conn:
                await jn.delete_entries(conn, [entry.id])
            result.done.append(entry)
        return result


def _ident(entry: Entry) -> str:
    return entry.array_id or entry.name or "?"


async def _finish(entry: Entry, volumes: PowerFlexVolumes) -> None:
    if entry.kind == "volume":
        vol_id = entry.array_id
        if vol_id is None and entry.name is not None:
            vol_id = await volumes.lookup(entry.name)
        if vol_id is not None:
            await volumes.delete(vol_id)  # unmaps every host; gone already is fine
    elif entry.kind == "unmap" and entry.array_id is not None:
        await volumes.attacher.unmap_unused(entry.array_id)
    else:
        raise ValueError(f"unknown journal entry kind {entry.kind!r}")
