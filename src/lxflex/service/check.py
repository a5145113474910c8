"""``storage check``: compare a pool's array, this host and the state, and repair what is
safe to repair.

What is compared:

* the state's rows (volumes and snapshots) and journal entries;
* the array: the storage pool's volumes named by our scheme, and what it maps to this
  host;
* this host: the by-id device links of the system's volumes, the NVMe connection, the
  mounts under the pool's mount directory, this host's attachments (each one's mount or
  device), and the scratch directory.

The check runs while the daemon serves, so it must not take work in flight for damage.
Every operation holds its volume's lock for as long as it runs, records a row (or a
journal entry) before it makes an array volume, and removes the array volume before its
row; so a row whose lock is free is at rest, and an array volume is unrecorded only if it
was listed *before* a state read that found no record of it and is still there *after*
(a second look by ID). Mappings held or being made, and journal entries of running work,
are skipped likewise. Scratch entries are judged only when no volume work runs at all.

``repair`` fixes what is safe: rows left mid-operation (finished or undone as at start),
journal entries, mappings and NVMe connections nothing uses, mounts no volume owns,
attachments whose mount or device went (attached again), and scratch. A row whose array
volume is gone, sizes that disagree and device links without a mapping are reported for
the operator to judge. An unrecorded array volume may belong to
another system sharing the storage pool (LXD's PowerFlex driver names volumes the same
way): it is removed only when named in ``remove``.
"""

from __future__ import annotations

import enum
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ..driver import Content, InvalidRequest, PoolDriver, format_size, parse_size
from ..host.fs import Filesystems, mounted_under
from ..powerflex import Volume as ArrayVolume
from ..state import Database, Status
from ..state import store as st
from .attachments import BrokenAttachment
from .journal import Entry
from .kinds import kind_of
from .pools import PoolService
from .recovery import Lock, clear_scratch_entry, finish_grow, recover_volume
from .specs import array_names

__all__ = ["Finding", "Kind", "Report", "check_pool"]

log = logging.getLogger("lxflex.service")

SCRATCH_QUIET = 60.0  # seconds a scratch entry must be unchanged to count as a leftover


class Kind(enum.StrEnum):
    INTERRUPTED = "interrupted"
    MISSING = "missing"
    SIZE = "size"
    JOURNAL = "journal"
    UNRECORDED = "unrecorded"
    MAPPING = "mapping"
    DEVICE = "device"
    CONNECTION = "connection"
    MOUNT = "mount"
    SCRATCH = "scratch"
    ATTACHMENT = "attachment"


class Finding(msgspec.Struct, kw_only=True):
    kind: Kind
    subject: str  # what it is about
    meaning: str  # what it means
    action: str  # what --repair does, or what the operator can do
    repairable: bool  # whether --repair fixes it (unrecorded: only when named)
    repaired: bool = False
    error: str = ""  # why a repair failed


class Report(msgspec.Struct, kw_only=True):
    pool: str
    volumes: int = 0
    snapshots: int = 0
    array_volumes: int = 0
    mapped: int = 0  # array volumes of the pool mapped to this host
    journal: int = 0
    findings: list[Finding] = msgspec.field(default_factory=list)

    @property
    def left(self) -> list[Finding]:
        return [f for f in self.findings if not f.repaired]


@dataclass
class _State:
    vols: list[st.Volume]
    snaps: dict[int, list[st.Snapshot]]
    entries: list[Entry]

    def records(self) -> list[tuple[st.Volume, st.Volume | st.Snapshot]]:
        out: list[tuple[st.Volume, st.Volume | st.Snapshot]] = []
        for vol in self.vols:
            out.append((vol, vol))
            out.extend((vol, s) for s in self.snaps.get(vol.id, []))
        return out


@dataclass
class _Known:
    ids: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)

    def has(self, vol: ArrayVolume) -> bool:
        return vol.id in self.ids or (vol.name or "") in self.names


@dataclass
class CheckContext:
    """What a check reads and repairs: the state, the pools, this host."""

    db: Database
    pools: PoolService
    fs: Filesystems
    mounts: Path  # this host's mount directory (one directory per pool below it)
    scratch: Path
    lock: Lock  # a volume's lock (its key: Kind.lock_key)
    # Whether that lock is held or waited for now, here or on another member.
    busy: Callable[[str, str, str], Awaitable[bool]]
    idle: Callable[[], bool]  # whether no volume work runs at all
    # This host's attachments of a pool whose mount or device is missing.
    broken: Callable[[str], Awaitable[list[BrokenAttachment]]]


async def _read(ctx: CheckContext, pool_id: int) -> _State:
    async with ctx.db.read() as conn:
        vols = await st.list_volumes(conn, pool_id)
        snaps = await st.list_pool_snapshots(conn, pool_id)
    return _State(vols, snaps, await ctx.pools.journal.entries(pool_id))


def _known(runtime: PoolDriver, state: _State) -> _Known:
    """The array IDs and names the state accounts for (rows, and their names where an
    operation under way has no IDs recorded yet; journal entries)."""
    known = _Known()
    for vol, record in state.records():
        ids = {i for i in (record.array_id, record.fs_array_id) if i}
        known.ids |= ids
        if not ids and "volatile.uuid" in record.config:
            known.names.update(
                array_names(
                    runtime, vol.type, vol.content_type, record.config, snapshot=record is not vol
                )
            )
    for entry in state.entries:
        if entry.array_id:
            known.ids.add(entry.array_id)
        if entry.name:
            known.names.add(entry.name)
    return known


def _label(vol: st.Volume, record: st.Volume | st.Snapshot) -> str:
    kind = "storage volume" if vol.type == "custom" else f"{vol.type} volume"
    name = vol.name if record is vol else f"{vol.name}/{record.name}"
    return f"{kind} {vol.project}/{name}"


def _array_label(vol: ArrayVolume) -> str:
    return f"array volume {vol.name} (ID {vol.id}, {format_size(vol.size_bytes)})"


async def check_pool(
    ctx: CheckContext, pool_name: str, *, repair: bool = False, remove: Collection[str] = ()
) -> Report:
    """Check one pool (and this host's scratch); with ``repair``, fix what is safe; remove
    the unrecorded array volumes named in ``remove`` (InvalidRequest, before any change,
    if one of them is not an unrecorded volume of the pool)."""
    pool = await ctx.pools.record(pool_name)
    runtime = await ctx.pools.runtime(pool)
    driver = runtime.volumes
    listed = {v.id: v for v in await driver.listed()}  # before the state: see the docstring
    state = await _read(ctx, pool.id)
    report = Report(
        pool=pool.name,
        volumes=len(state.vols),
        snapshots=sum(len(s) for s in state.snaps.values()),
        array_volumes=len(listed),
        journal=len(state.entries),
    )
    unrecorded = await _unrecorded(ctx, runtime, pool.id, listed, state)
    names = {v.name: v for v in unrecorded}
    wrong = sorted(set(remove) - set(names))
    if wrong:
        raise InvalidRequest(
            f"not an unrecorded array volume of pool {pool.name!r}: {', '.join(wrong)} "
            "(nothing was changed)"
        )
    mapped = await driver.attacher.mapped_here()
    report.mapped = len(mapped & set(listed))
    await _rows(ctx, runtime, pool.name, listed, state, report, repair)
    await _journal(ctx, runtime, pool.id, state, report, repair)
    for vol in unrecorded:
        where = " It is mapped to this host." if vol.id in mapped else ""
        finding = Finding(
            kind=Kind.UNRECORDED,
            subject=_array_label(vol),
            meaning="named by lxflex's scheme, but no record and no journal entry know it: it "
            "may belong to another system sharing the storage pool (LXD's PowerFlex driver "
            f"names volumes the same way).{where}",
            action=f"if it is lxflex's, remove it with --remove {vol.name}",
            repairable=vol.name in remove,
        )
        report.findings.append(finding)
        if vol.name in remove:
            await _attempt(finding, functools.partial(driver.delete, vol.id))
    await _host(ctx, runtime, pool.name, state, mapped, report, repair)
    return report


async def _attempt(finding: Finding, fix: Callable[[], Awaitable[object]]) -> None:
    """Run one repair; its failure is part of the finding, not an error of the check."""
    try:
        await fix()
    except Exception as exc:
        log.warning("check: cannot repair %s: %s", finding.subject, exc)
        finding.error = str(exc)
        return
    finding.repaired = True


async def _unrecorded(
    ctx: CheckContext,
    runtime: PoolDriver,
    pool_id: int,
    listed: dict[str, ArrayVolume],
    state: _State,
) -> list[ArrayVolume]:
    """Listed array volumes that no record knows, confirmed by a second read of the state
    and a second look at the array (so work in flight is never one of them)."""
    candidates = [v for v in listed.values() if not _known(runtime, state).has(v)]
    if not candidates:
        return []
    known = _known(runtime, await _read(ctx, pool_id))
    return [v for v in candidates if not known.has(v) and await runtime.volumes.exists(v.id)]


async def _rows(
    ctx: CheckContext,
    runtime: PoolDriver,
    pool_name: str,
    listed: dict[str, ArrayVolume],
    state: _State,
    report: Report,
    repair: bool,
) -> None:
    for vol in state.vols:
        if await ctx.busy(pool_name, vol.project, kind_of(vol.type).lock_key(vol.name)):
            continue  # work under way: judged when it is over
        snaps = state.snaps.get(vol.id, [])
        if vol.status != Status.CREATED or any(s.status != Status.CREATED for s in snaps):
            await _interrupted(ctx, runtime, pool_name, vol, report, repair)
            continue
        records: list[st.Volume | st.Snapshot] = [vol, *snaps]
        for record in records:
            await _array_of(ctx, runtime, pool_name, vol, record, listed, report, repair)


async def _interrupted(
    ctx: CheckContext,
    runtime: PoolDriver,
    pool_name: str,
    vol: st.Volume,
    report: Report,
    repair: bool,
) -> None:
    finding = Finding(
        kind=Kind.INTERRUPTED,
        subject=_label(vol, vol),
        meaning=f"left {vol.status!r} (or with a snapshot not created) by an operation that "
        "failed or was cut short; it is hidden or refuses changes until repaired",
        action="repair finishes it as start-up would: a create or snapshot is undone, a "
        "delete finished, a restore put back",
        repairable=True,
    )
    report.findings.append(finding)
    if not repair:
        return

    async def fix() -> None:
        async with ctx.db.read() as conn:
            fresh = await st.get_volume(conn, vol.pool_id, vol.project, vol.type, vol.name)
            snaps = await st.list_snapshots(conn, fresh.id) if fresh else []
        if fresh is not None:
            await recover_volume(ctx.db, runtime, fresh, snaps)

    async with ctx.lock(pool_name, vol.project, kind_of(vol.type).lock_key(vol.name)):
        await _attempt(finding, fix)


async def _array_of(
    ctx: CheckContext,
    runtime: PoolDriver,
    pool_name: str,
    vol: st.Volume,
    record: st.Volume | st.Snapshot,
    listed: dict[str, ArrayVolume],
    report: Report,
    repair: bool,
) -> None:
    """A record at rest: its array volumes exist, with the recorded size."""
    for array_id in (i for i in (record.array_id, record.fs_array_id) if i):
        found = listed.get(array_id)
        if found is None and not await runtime.volumes.exists(array_id):
            report.findings.append(
                Finding(
                    kind=Kind.MISSING,
                    subject=f"{_label(vol, record)} (array ID {array_id})",
                    meaning="recorded, but the array has no such volume: its data is gone "
                    "(removed outside lxflex, or the pool points at another storage pool)",
                    action="nothing automatic: delete it to drop the record",
                    repairable=False,
                )
            )
            continue
        size = record.config.get("size")
        if found is None or array_id != record.array_id or not size:
            continue  # listed after the first read, or a VM's filesystem twin
        if parse_size(size) == found.size_bytes:
            continue
        grown = (
            record is vol
            and vol.content_type != Content.ISO
            and found.size_bytes > parse_size(size)
        )
        finding = Finding(
            kind=Kind.SIZE,
            subject=_label(vol, record),
            meaning=f"recorded as {format_size(parse_size(size))} but the array volume "
            f"{found.name} has {format_size(found.size_bytes)}"
            + (": a grow cut short after the array grew" if grown else ""),
            action="repair grows the filesystem to the array's size and records it"
            if grown
            else "nothing automatic: the array volume was changed outside lxflex",
            repairable=grown,
        )
        report.findings.append(finding)
        if grown and repair:
            async with ctx.lock(pool_name, vol.project, kind_of(vol.type).lock_key(vol.name)):
                await _attempt(
                    finding, functools.partial(finish_grow, ctx.db, runtime, vol, found.size_bytes)
                )


async def _journal(
    ctx: CheckContext,
    runtime: PoolDriver,
    pool_id: int,
    state: _State,
    report: Report,
    repair: bool,
) -> None:
    journal = ctx.pools.journal
    labels = {r.array_id: _label(v, r) for v, r in state.records() if r.array_id}
    found: list[tuple[Entry, Finding]] = []
    for entry in state.entries:
        if journal.live(entry) or (entry.kind == "unmap" and entry.server != journal.server):
            continue  # running work's, or another server's host
        what = entry.name or entry.array_id or "?"
        if entry.array_id in labels:
            what = f"{entry.array_id} ({labels[entry.array_id]})"
        subject = f"array volume {what}" if entry.kind == "volume" else f"mapping of volume {what}"
        finding = Finding(
            kind=Kind.JOURNAL,
            subject=subject,
            meaning=f"left for repair since {entry.created_at:%Y-%m-%d %H:%M:%S %Z}: "
            f"{entry.reason}",
            action="repair removes it" if entry.kind == "volume" else "repair unmaps it",
            repairable=True,
        )
        found.append((entry, finding))
        report.findings.append(finding)
    if not repair or not found:
        return
    result = await journal.repair(pool_id, runtime.volumes, [e.id for e, _ in found])
    done = {e.id for e in result.done}
    failed = {e.id: why for e, why in result.failed}
    for entry, finding in found:
        finding.repaired = entry.id in done
        finding.error = failed.get(entry.id, "")


async def _host(
    ctx: CheckContext,
    runtime: PoolDriver,
    pool_name: str,
    state: _State,
    mapped: set[str],
    report: Report,
    repair: bool,
) -> None:
    attacher = runtime.volumes.attacher
    ours = {i for _, r in state.records() for i in (r.array_id, r.fs_array_id) if i}
    journaled = {e.array_id for e in state.entries if e.kind == "unmap"}
    for volume_id in sorted(mapped & ours - journaled):  # journaled: a journal finding
        if attacher.busy(volume_id):
            continue
        finding = Finding(
            kind=Kind.MAPPING,
            subject=f"mapping of array volume {volume_id} to this host",
            meaning="mapped, but nothing on this host uses it (left by a failed unmap or "
            "work cut short): the device stays visible",
            action="repair unmaps it",
            repairable=True,
        )
        report.findings.append(finding)
        if repair:
            await _attempt(finding, functools.partial(attacher.unmap_unused, volume_id))
    for volume_id, link in sorted(attacher.linked().items()):
        if volume_id in mapped:
            continue
        report.findings.append(
            Finding(
                kind=Kind.DEVICE,
                subject=f"device link {link}",
                meaning=f"leads to array volume {volume_id}, which the array does not map to "
                "this host: a stale link or device (an unclean stop of the transport)",
                action="nothing automatic: lxflex never uses it (it checks each device it "
                "waits for); rescan the transport to drop it",
                repairable=False,
            )
        )
    if not mapped and attacher.idle_connection():
        finding = Finding(
            kind=Kind.CONNECTION,
            subject="NVMe/TCP connection to the system's subsystem",
            meaning="connected, but no volume is mapped to this host",
            action="repair disconnects it (the next attach connects again)",
            repairable=True,
        )
        report.findings.append(finding)
        if repair:
            await _attempt(finding, attacher.disconnect_if_unused)
    await _mounts(ctx, pool_name, state, report, repair)
    await _attachments(ctx, pool_name, report, repair)
    await _scratch(ctx, report, repair)


async def _attachments(ctx: CheckContext, pool_name: str, report: Report, repair: bool) -> None:
    for broken in await ctx.broken(pool_name):
        what = "mount" if broken.stray else "attachment"
        finding = Finding(
            kind=Kind.ATTACHMENT,
            subject=f"{what} of storage volume {broken.project}/{broken.volume} at {broken.path}",
            meaning=broken.problem
            if broken.stray
            else f"recorded as in use on this host, but {broken.problem} (lost behind "
            "lxflex's back, or not restored when lxflexd started)",
            action="repair unmounts it" if broken.stray else "repair attaches it again",
            repairable=True,
        )
        report.findings.append(finding)
        if repair:
            await _attempt(finding, broken.repair)


async def _mounts(
    ctx: CheckContext, pool_name: str, state: _State, report: Report, repair: bool
) -> None:
    root = ctx.mounts / pool_name
    owned = {(v.project, v.name) for v in state.vols}
    for target in mounted_under(root):
        project, _, name = target.name.partition("_")
        if target.parent.parent == root and (project, name) in owned:
            continue
        finding = Finding(
            kind=Kind.MOUNT,
            subject=f"mount {target}",
            meaning="under the pool's mount directory, but no volume of the pool owns it",
            action="repair unmounts it (refused while it is busy)",
            repairable=True,
        )
        report.findings.append(finding)
        if repair:
            await _attempt(finding, functools.partial(ctx.fs.unmount, target))


async def _scratch(ctx: CheckContext, report: Report, repair: bool) -> None:
    if not ctx.scratch.is_dir() or not ctx.idle():
        return  # entries of running work cannot be told from leftovers
    for entry in sorted(ctx.scratch.iterdir()):
        try:
            age = time.time() - entry.lstat().st_mtime
        except OSError:
            continue
        if age < SCRATCH_QUIET:
            continue
        busy = bool(mounted_under(entry))
        finding = Finding(
            kind=Kind.SCRATCH,
            subject=f"scratch entry {entry}",
            meaning="left by a backup, restore, copy or upload whose cleanup failed"
            + (" (still mounted)" if busy else ""),
            action="repair unmounts and removes it",
            repairable=True,
        )
        report.findings.append(finding)
        if repair:
            await _attempt(finding, functools.partial(clear_scratch_entry, ctx.fs, entry))
