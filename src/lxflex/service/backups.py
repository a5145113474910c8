"""Backups of custom volumes: made, listed, renamed, expired, exported, imported.

A backup is a tarball in LXD's layout (see :mod:`lxflex.driver.backup`) kept in
``STATE_DIR/backups/<volume ID>/<name>`` with a row in the database; it follows its volume
through renames and goes with it. Expired backups are removed whenever backups are used
and when the daemon starts. ``index.yaml`` carries the volume, its snapshots and its pool
as LXD's API shows them, never the gateway password.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from ..driver import (
    BackupSource,
    Conflict,
    Content,
    InvalidRequest,
    NotFound,
    Progress,
    format_size,
    imported_volume_config,
    parse_size,
)
from ..host.archive import COMPRESSIONS, compression_available
from ..host.runner import CommandError
from ..state import CREATE_DONE, Database, NameTaken, Status
from ..state import backups as bk
from ..state import store as st
from ..times import ZERO_TIME, parse_rfc3339
from .pools import PoolService
from .rules import check_name, fill_config, next_name
from .specs import snapshot_names, spec_of
from .views import VolumeView, array_of, make_view
from .volumes import CUSTOM, VolumeService

__all__ = ["DEFAULT_COMPRESSION", "Backup", "BackupService"]

log = logging.getLogger("lxflex.service")

Backup = bk.Backup
DEFAULT_COMPRESSION = "gzip"


# Keys a restored volume takes from its backup; volatile ones are made anew.
def _time(value: datetime.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _parse_time(value: Any) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):  # YAML reads an unquoted time itself
        if value.year <= 1:
            return None
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    try:
        return parse_rfc3339(str(value or ""))
    except ValueError:
        raise InvalidRequest(
            f"backup/index.yaml has a time that is not RFC 3339: {value!r}"
        ) from None


class BackupService:
    def __init__(self, db: Database, pools: PoolService, volumes: VolumeService) -> None:
        self.db = db
        self.pools = pools
        self.volumes = volumes

    @property
    def root(self) -> Path:
        return self.pools.runtimes.host.backups

    def _file(self, backup: Backup) -> Path:
        return self.root / str(backup.volume_id) / backup.name

    def _mine(self, backup: Backup) -> bool:
        """Whether this server holds the backup's tarball (in a cluster, another member
        may: records are shared, tarballs are files of the member that made them)."""
        return backup.server_uuid in (None, self.pools.runtimes.uuid)

    async def server_of(
        self, pool: str, volume: str, name: str, *, project: str = "default"
    ) -> str | None:
        """The server whose state directory holds the backup's tarball, when it is
        another server's; None when it is this one's or there is no such backup."""
        try:
            backup = await self.get(pool, volume, name, project=project)
        except NotFound:
            return None
        return None if self._mine(backup) else backup.server_uuid

    # --- reading ----------------------------------------------------------------------

    async def list(self, pool: str, volume: str, *, project: str = "default") -> list[Backup]:
        await self._expire()
        vol = await self.volumes.record(pool, volume, project=project)
        async with self.db.read() as conn:
            return [b for b in await bk.list_backups(conn, vol.id) if b.status == Status.CREATED]

    async def get(self, pool: str, volume: str, name: str, *, project: str = "default") -> Backup:
        vol = await self.volumes.record(pool, volume, project=project)
        async with self.db.read() as conn:
            found = await bk.get_backup(conn, vol.id, name)
        if found is None or found.status != Status.CREATED:
            raise NotFound("Storage volume backup not found")
        return found

    async def tarball(self, pool: str, volume: str, name: str, *, project: str = "default") -> Path:
        backup = await self.get(pool, volume, name, project=project)
        path = self._file(backup)
        if not path.is_file():
            log.error("the tarball of backup %s is missing: %s", name, path)
            raise NotFound(f"the tarball of backup {name!r} is missing (see the daemon's log)")
        self.pools.events.backup("retrieved", pool, volume, name, project)
        return path

    # --- making -----------------------------------------------------------------------

    async def free_name(self, pool: str, volume: str, *, project: str = "default") -> str:
        """The first ``backup<N>`` the volume does not have."""
        vol = await self.volumes.record(pool, volume, project=project)
        async with self.db.read() as conn:
            taken = {b.name for b in await bk.list_backups(conn, vol.id)}
        return next_name("backup%d", taken)

    async def create(
        self,
        pool_name: str,
        volume: str,
        name: str | None = None,
        *,
        project: str = "default",
        expires_at: datetime.datetime | None = None,
        volume_only: bool = False,
        compression: str = "",
        progress: Progress | None = None,
    ) -> Backup:
        """Make a backup of the volume (with its snapshots unless ``volume_only``)."""
        compression = compression or DEFAULT_COMPRESSION
        if compression not in COMPRESSIONS:
            raise InvalidRequest(
                f"unknown compression {compression!r}: one of {', '.join(COMPRESSIONS)}"
            )
        if not compression_available(compression):
            raise InvalidRequest(f"compression {compression!r} needs its tool on this server")
        await self._expire()
        async with self.volumes.lock(pool_name, project, volume):
            pool, vol = await self.volumes.load(pool_name, project, volume)
            if vol.content_type not in ("filesystem", "block"):
                raise InvalidRequest(f"a {vol.content_type} volume has no backups: keep its file")
            async with self.db.read() as conn:
                taken = {b.name for b in await bk.list_backups(conn, vol.id)}
                snaps = await st.list_snapshots(conn, vol.id, whole=True)
            name = name or next_name("backup%d", taken)
            check_name(name)
            try:
                async with self.db.write() as conn:
                    backup = await bk.create_backup(
                        conn,
                        vol.id,
                        name,
                        expires_at=expires_at,
                        volume_only=volume_only,
                        compression=compression,
                        server_uuid=self.pools.runtimes.uuid,
                    )
            except NameTaken:
                raise Conflict(f"backup {name!r} of {volume!r} already exists") from None
            snaps = [] if volume_only else snaps
            runtime = await self.pools.runtime(pool)
            if vol.content_type == Content.BLOCK:
                # All of the device is in the image: an array volume that grew while its
                # row did not (a grow cut short) is recorded at the size the image has,
                # or the backup would not fit the volume an import makes.
                actual = await runtime.volumes.size_of(array_of(vol))
                if actual > parse_size(vol.config["size"]):
                    vol = msgspec.structs.replace(
                        vol, config={**vol.config, "size": format_size(actual)}
                    )
            source = BackupSource(
                spec_of(vol.content_type, vol.config),
                array_of(vol),
                [(s.name, spec_of(vol.content_type, s.config), array_of(s)) for s in snaps],
            )
            out = self._file(backup)
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_name(f".{out.name}.partial")
            # A block volume is read from a temporary snapshot: journaled by name first.
            view_uuid = uuid.uuid4()
            journal = self.pools.journal
            intents = (
                []
                if source.spec.is_filesystem
                else await journal.intend(
                    pool.id,
                    snapshot_names(runtime, vol.type, vol.content_type, [view_uuid]),
                    f"the export of {volume!r}",
                )
            )
            try:
                await runtime.backups.export(
                    source,
                    _index(pool, vol, snaps),
                    self.pools.runtimes.host.scratch / f"backup-{uuid.uuid4().hex}",
                    partial,
                    compression,
                    progress,
                    view_uuid=view_uuid,
                )
                os.chmod(partial, 0o600)  # volume data: root's only
                partial.rename(out)
                async with self.db.write() as conn:
                    # The export removed its snapshot, or kept it as a leftover by ID.
                    await journal.settle(conn, intents)
                    await bk.update_backup(conn, backup.id, step=CREATE_DONE)
            except BaseException:
                partial.unlink(missing_ok=True)
                out.unlink(missing_ok=True)
                async with self.db.write() as conn:
                    await bk.delete_backup(conn, backup.id)
                # A snapshot whose answer was lost is found by its name.
                await journal.repair(pool.id, runtime.volumes, intents)
                raise
        self.pools.events.backup("created", pool_name, volume, name, project, {"type": CUSTOM})
        return await self.get(pool_name, volume, name, project=project)

    async def rename(
        self, pool: str, volume: str, name: str, new: str, *, project: str = "default"
    ) -> None:
        check_name(new)
        async with self.volumes.lock(pool, project, volume):
            backup = await self.get(pool, volume, name, project=project)
            try:
                async with self.db.write() as conn:
                    await bk.update_backup(conn, backup.id, name=new)
            except NameTaken:
                raise Conflict(f"backup {new!r} of {volume!r} already exists") from None
            self._file(backup).rename(self._file(backup).with_name(new))
        self.pools.events.backup("renamed", pool, volume, new, project, {"old_name": name})

    async def delete(self, pool: str, volume: str, name: str, *, project: str = "default") -> None:
        async with self.volumes.lock(pool, project, volume):
            backup = await self.get(pool, volume, name, project=project)
            await self._remove(backup)
        self.pools.events.backup("deleted", pool, volume, name, project)

    async def _remove(self, backup: Backup) -> None:
        """The backup's row, and its tarball when it is this server's (another
        member's is gone with that member, or removed by it)."""
        if self._mine(backup):
            self._file(backup).unlink(missing_ok=True)
        async with self.db.write() as conn:
            await bk.delete_backup(conn, backup.id)

    async def _expire(self) -> int:
        """Remove the expired backups of this server (one query: done whenever backups
        are used); another member removes its own."""
        async with self.db.read() as conn:
            expired = [b for b in await bk.expired_backups(conn, st.now()) if self._mine(b)]
        for backup in expired:
            await self._remove(backup)
        if expired:
            log.info("removed %d expired backup(s)", len(expired))
        return len(expired)

    async def prune(self) -> int:
        """At start: remove expired backups, backups a crash cut short (rows left
        ``creating``, partial tarballs), and the tarballs of volumes that are gone;
        return how many expired. Only while no backup is being made."""
        removed = await self._expire()
        async with self.db.read() as conn:
            found = await bk.all_backups(conn)
        for backup in found:
            if backup.status != Status.CREATED and self._mine(backup):  # cut short
                # (Another member's may be under way now: it repairs its own.)
                partial = self._file(backup).with_name(f".{backup.name}.partial")
                partial.unlink(missing_ok=True)
                await self._remove(backup)
        known = {str(b.volume_id) for b in found}
        if self.root.is_dir():
            for entry in self.root.iterdir():
                if entry.is_dir() and entry.name not in known:
                    shutil.rmtree(entry, ignore_errors=True)
                elif entry.is_dir():
                    for stale in entry.glob(".*.partial"):
                        stale.unlink(missing_ok=True)
        return removed

    # --- import -----------------------------------------------------------------------

    async def restore(
        self,
        pool_name: str,
        archive: Path,
        name: str | None = None,
        *,
        project: str = "default",
        progress: Progress | None = None,
    ) -> VolumeView:
        """A new volume (with its snapshots) from a backup tarball; ``name`` overrides
        the name the backup carries."""
        pool = await self.pools.record(pool_name)
        runtime = await self.pools.runtime(pool)
        index, members = await self._open(archive)
        volume = index.get("config", {}).get("volume") or {}
        name = name or str(index.get("name") or volume.get("name") or "")
        check_name(name)
        content = str(volume.get("content_type") or "filesystem")
        if content not in ("filesystem", "block"):
            raise InvalidRequest(f"lxflex cannot import a {content} volume")
        config = imported_volume_config(volume.get("config") or {})
        filled = fill_config(pool, content, config, runtime.volumes.granularity)
        snapshots = _snapshots(index)
        async with self.volumes.lock(pool_name, project, name):
            try:
                async with self.db.write() as conn:
                    row = await st.create_volume(
                        conn,
                        pool.id,
                        project,
                        name,
                        CUSTOM,
                        content,
                        filled,
                        description=str(volume.get("description") or ""),
                    )
            except NameTaken:
                raise Conflict(
                    f"storage volume {name!r} already exists in pool {pool_name!r}"
                ) from None
            snap_uuids = [uuid.uuid4() for _ in snapshots]
            journal = self.pools.journal
            names = snapshot_names(runtime, CUSTOM, content, snap_uuids)
            intents = await journal.intend(pool.id, names, f"a snapshot of import {name!r}")
            try:
                vol_id, snap_ids = await runtime.backups.restore(
                    spec_of(content, filled),
                    [(s["name"], u) for s, u in zip(snapshots, snap_uuids, strict=True)],
                    archive,
                    members,
                    self.pools.runtimes.host.scratch / f"restore-{uuid.uuid4().hex}",
                    progress,
                )
            except BaseException:
                async with self.db.write() as conn:
                    await st.delete_volume(conn, row.id)
                await journal.repair(pool.id, runtime.volumes, intents)
                raise
            try:
                async with self.db.write() as conn:
                    await journal.settle(conn, intents)
                    await st.update_volume(conn, row.id, step=CREATE_DONE, array_id=vol_id)
                    for snap, snap_uuid, snap_id in zip(
                        snapshots, snap_uuids, snap_ids, strict=True
                    ):
                        made_snap = await st.create_snapshot(
                            conn,
                            row.id,
                            snap["name"],
                            {**filled, **snap["config"], "volatile.uuid": str(snap_uuid)},
                            description=snap["description"],
                            expires_at=snap["expires_at"],
                            status=Status.CREATED,
                        )
                        await st.update_snapshot(conn, made_snap.id, array_id=snap_id)
            except BaseException:
                for array_id in [*reversed(snap_ids), vol_id]:
                    await runtime.volumes.remove_quietly(array_id)
                async with self.db.write() as conn:
                    await st.delete_volume(conn, row.id)
                await journal.repair(pool.id, runtime.volumes, intents)
                raise
        async with self.db.read() as conn:
            made = await st.get_volume(conn, pool.id, project, CUSTOM, name)
            assert made is not None  # noqa: S101 - written above
            snaps = await st.list_snapshots(conn, made.id)
        self.pools.events.volume("created", pool.name, name, project, context={"type": CUSTOM})
        return make_view(pool, made, snaps)

    async def _open(self, archive: Path) -> tuple[dict[str, Any], set[str]]:
        """A backup tarball's index and the names of its members."""
        archives = self.pools.runtimes.archives
        try:
            raw = await archives.read_member(archive, "backup/index.yaml")
            members = set(await archives.members(archive))
        except CommandError as exc:
            detail = exc.stderr.splitlines()[0] if exc.stderr else str(exc)
            raise InvalidRequest(f"not a readable backup tarball: {detail}") from None
        return _read_index(raw), members


def _index(pool: st.Pool, vol: st.Volume, snaps: list[st.Snapshot]) -> bytes:
    """``backup/index.yaml``: LXD's backup info, with the API's shapes."""
    doc = {
        "name": vol.name,
        "backend": pool.driver,
        "pool": pool.name,
        "snapshots": [s.name for s in snaps],
        "optimized": False,
        "optimized_header": False,
        "type": "custom",
        "config": {
            "pool": {
                "name": pool.name,
                "description": pool.description,
                "driver": pool.driver,
                "config": dict(pool.config),  # holds no password
                "status": "Created",
                "locations": ["none"],
            },
            "volume": {
                "name": vol.name,
                "description": vol.description,
                "type": "custom",
                "content_type": vol.content_type,
                "config": dict(vol.config),
                "project": vol.project,
                "location": "none",
                "created_at": _time(vol.created_at),
            },
            "volume_snapshots": [
                {
                    "name": s.name,
                    "description": s.description,
                    "config": dict(s.config),
                    "content_type": vol.content_type,
                    "created_at": _time(s.created_at),
                    # LXD reads a time here, never null: the zero time is "no expiry".
                    "expires_at": _time(s.expires_at) or ZERO_TIME,
                }
                for s in snaps
            ],
        },
    }
    if not snaps:
        del doc["snapshots"]
    import yaml  # loaded when backups are used, not at start

    text: str = yaml.safe_dump(doc, sort_keys=False)
    return text.encode()


def _read_index(raw: bytes) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"backup/index.yaml is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("backup/index.yaml is missing or not a mapping")
    if doc.get("type", "custom") != "custom":
        raise InvalidRequest(f"this is a backup of a {doc.get('type')}, not of a custom volume")
    if doc.get("optimized"):
        raise InvalidRequest(
            f"this is an optimized backup of a {doc.get('backend') or 'another'} pool, in "
            "that driver's own format: lxflex imports portable backups only (export it "
            "again without --optimized-storage)"
        )
    return doc


def _snapshots(index: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The snapshots a backup holds, oldest first, with what each keeps."""
    described = {
        str(s.get("name")): s
        for s in (index.get("config", {}).get("volume_snapshots") or [])
        if isinstance(s, dict)
    }
    names = [str(n) for n in index.get("snapshots") or described]
    found = []
    for snap in names:
        check_name(snap)
        info = described.get(snap, {})
        config = info.get("config") or {}
        found.append(
            {
                "name": snap,
                "description": str(info.get("description") or ""),
                "expires_at": _parse_time(info.get("expires_at")),
                "config": {k: str(v) for k, v in config.items() if k.startswith("user.")},
            }
        )
    return found
