"""Handlers for volume backups: ``/1.0/storage-pools/<p>/volumes/custom/<v>/backups...``
and the import of a backup tarball (an octet-stream ``POST`` on the volumes collection).

Making, renaming and deleting a backup, and importing one, are operations (lxc waits on
them); the export is the tarball itself, streamed. The operation that makes a backup
names it in ``resources.backups`` as ``/1.0/backups/<name>``, where lxc 5.0.2 looks.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..service.backups import Backup
from ..service.rules import check_name
from . import render
from .common import (
    bool_of,
    custom_only,
    project_of,
    recursion_of,
    start_operation,
    storage_of,
    str_of,
)
from .envelope import ApiError, json_body, parse_time, rfc3339, sync
from .operations import Operation

__all__ = ["add_routes", "import_volume"]

_CHUNK = 1 << 20


def _render(backup: Backup) -> dict[str, Any]:
    return {
        "name": backup.name,
        "created_at": rfc3339(backup.created_at),
        "expires_at": rfc3339(backup.expires_at),
        "volume_only": backup.volume_only,
        "optimized_storage": False,
    }


def _where(request: web.Request) -> tuple[str, str, str]:
    custom_only(request)
    return request.match_info["pool"], request.match_info["volume"], project_of(request)


def _url(pool: str, volume: str, name: str, project: str) -> str:
    base, _, query = render.volume_url(pool, volume, project=project).partition("?")
    url = f"{base}/backups/{quote(name, safe='')}"
    return f"{url}?{query}" if query else url


async def backups_get(request: web.Request) -> web.Response:
    pool, volume, project = _where(request)
    found = await storage_of(request).backups.list(pool, volume, project=project)
    if recursion_of(request):
        return sync([_render(b) for b in found])
    return sync([_url(pool, volume, b.name, project) for b in found])


async def backups_post(request: web.Request) -> web.Response:
    pool, volume, project = _where(request)
    storage = storage_of(request)
    doc = await json_body(request)
    if doc.get("optimized_storage"):
        raise ApiError(400, "optimized storage backups are not supported by the powerflex driver")
    name = str_of(doc, "name") or await storage.backups.free_name(pool, volume, project=project)
    check_name(name)  # before the operation names it
    expires_at = parse_time(doc.get("expires_at"), "expires_at")
    compression = str_of(doc, "compression_algorithm")
    volume_only = bool_of(doc, "volume_only")
    await storage.volumes.get(pool, volume, project=project)  # errors now, not in the op

    async def work(op: Operation) -> None:
        await storage.backups.create(
            pool,
            volume,
            name,
            project=project,
            expires_at=expires_at,
            volume_only=volume_only,
            compression=compression,
            progress=lambda done, total: op.progress(done, total, "create_backup_progress"),
        )

    return start_operation(
        request,
        f"Backing up storage volume {volume}",
        work,
        {
            "storage_volumes": [render.volume_url(pool, volume, project=project)],
            "backups": [f"/1.0/backups/{quote(name, safe='')}"],
        },
        project,
    )


async def backup_get(request: web.Request) -> web.Response:
    pool, volume, project = _where(request)
    backup = await storage_of(request).backups.get(
        pool, volume, request.match_info["backup"], project=project
    )
    return sync(_render(backup))


async def backup_post(request: web.Request) -> web.Response:
    pool, volume, project = _where(request)
    name = request.match_info["backup"]
    storage = storage_of(request)
    await storage.backups.get(pool, volume, name, project=project)
    new = str_of(await json_body(request), "name")
    check_name(new)

    async def work(_: Operation) -> None:
        await storage.backups.rename(pool, volume, name, new, project=project)

    return start_operation(
        request,
        f"Renaming backup {name} of storage volume {volume}",
        work,
        {"backups": [f"/1.0/backups/{quote(new, safe='')}"]},
        project,
    )


async def backup_delete(request: web.Request) -> web.Response:
    pool, volume, project = _where(request)
    name = request.match_info["backup"]
    storage = storage_of(request)
    await storage.backups.get(pool, volume, name, project=project)

    async def work(_: Operation) -> None:
        await storage.backups.delete(pool, volume, name, project=project)

    return start_operation(
        request,
        f"Deleting backup {name} of storage volume {volume}",
        work,
        {"backups": [f"/1.0/backups/{quote(name, safe='')}"]},
        project,
    )


async def backup_export(request: web.Request) -> web.StreamResponse:
    pool, volume, project = _where(request)
    path = await storage_of(request).backups.tarball(
        pool, volume, request.match_info["backup"], project=project
    )
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})


async def import_volume(request: web.Request) -> web.Response:
    """A new volume from the request body (an operation): a backup tarball, or an ISO
    image when ``X-LXD-type`` is ``iso`` (then ``X-LXD-name`` is required)."""
    custom_only(request)
    pool, project = request.match_info["pool"], project_of(request)
    storage = storage_of(request)
    await storage.pools.get(pool)  # errors now, before the upload is stored
    name = request.headers.get("X-LXD-name") or None
    kind = request.headers.get("X-LXD-type", "")
    if kind not in ("", "backup", "iso"):
        raise ApiError(400, f"unknown import type {kind!r}: backup or iso")
    if kind == "iso" and not name:
        raise ApiError(400, "an ISO import needs the volume's name (X-LXD-name)")
    scratch = storage.runtimes.host.scratch
    scratch.mkdir(parents=True, exist_ok=True)
    upload = scratch / f"upload-{uuid.uuid4().hex}.tar"
    fd = os.open(upload, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        async for chunk in request.content.iter_chunked(_CHUNK):
            await asyncio.to_thread(_write_all, fd, chunk)
    except BaseException:
        upload.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)

    async def work(op: Operation) -> None:
        def progress(done: int, total: int) -> None:
            op.progress(done, total, "restore_progress")

        try:
            if kind == "iso":
                assert name is not None  # noqa: S101 - checked above
                await storage.isos.create(pool, name, upload, project=project, progress=progress)
            else:
                await storage.backups.restore(
                    pool, upload, name, project=project, progress=progress
                )
        finally:
            upload.unlink(missing_ok=True)

    resources = (
        {"storage_volumes": [render.volume_url(pool, name, project=project)]} if name else {}
    )
    what = "ISO image" if kind == "iso" else "storage volume backup"
    return start_operation(request, f"Importing {what}", work, resources, project)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def add_routes(app: web.Application) -> None:
    one = "/1.0/storage-pools/{pool}/volumes/{type}/{volume}/backups"
    r = app.router
    r.add_get(one, backups_get)
    r.add_post(one, backups_post)
    r.add_get(one + "/{backup}", backup_get)
    r.add_post(one + "/{backup}", backup_post)
    r.add_delete(one + "/{backup}", backup_delete)
    r.add_get(one + "/{backup}/export", backup_export)
