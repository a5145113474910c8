"""Handlers for ``/1.0/storage-pools/...``: pools, custom volumes, their snapshots.

Which answers are sync and which are operations follows what lxc 5.0.2 and pylxd
expect: pool and volume create, update, rename and delete are sync (lxc does not wait on
them); snapshot create, rename and delete, and volume copy and move, are operations.
Only custom volumes live here; the other volume types list empty.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from ..driver import NotFound
from ..secret import Secret
from ..service import PASSWORD_KEY, PoolView, SnapshotRecord, Storage, VolumeView
from . import render
from .backups import import_volume
from .common import (
    OPS,
    SERVER_NAME,
    VOLUME_TYPES,
    bool_of,
    config_of,
    custom_only,
    project_of,
    recursion_of,
    start_operation,
    storage_of,
    str_of,
)
from .envelope import (
    ApiError,
    async_response,
    check_etag,
    created,
    empty,
    json_body,
    parse_time,
    sync,
)
from .filters import matches, parse_filter
from .operations import Operation

# --- pools ------------------------------------------------------------------------------


async def _used_by(storage: Storage, pool: str) -> list[str]:
    names = await storage.volumes.names(pool)
    return [render.volume_url(pool, name, project=project) for project, name in names]


async def pools_get(request: web.Request) -> web.Response:
    storage = storage_of(request)
    views = await storage.pools.all()
    if recursion_of(request) == 0:
        return sync([render.pool_url(v.name) for v in views])
    return sync(
        [
            render.pool(v, await _used_by(storage, v.name), await _locations(storage, v))
            for v in views
        ]
    )


async def _locations(storage: Storage, view: PoolView) -> list[str]:
    """A pool's members: every member of the cluster (a PowerFlex pool is shared), or
    those a pending pool is defined on."""
    if not storage.cluster.clustered:
        return ["none"]
    if view.status == "pending":
        return sorted(view.pending_on)
    return [m.name for m in await storage.cluster.members()]


def _pool_config(value: Any) -> tuple[dict[str, str], Secret | None]:
    """A pool's config from a request, and its gateway password apart, as a Secret
    (None when not given or empty: an update then keeps the pool's)."""
    config = config_of(value)
    password = config.pop(PASSWORD_KEY, "")
    return config, Secret(password) if password else None


async def pools_post(request: web.Request) -> web.Response:
    doc = await json_body(request)
    storage = storage_of(request)
    target = request.query.get("target")
    name = str_of(doc, "name")
    config, password = _pool_config(doc.get("config"))
    if storage.cluster.clustered and target:
        # LXD's first step (`lxc storage create P powerflex --target m` on each member):
        # only a member's own keys, and a PowerFlex pool has none. The texts and the 500
        # are LXD's, which tooling that drives the steps expects.
        await storage.cluster.member(target)  # 404 for one that is not
        if config or password:
            key = next(iter(sorted(config)), PASSWORD_KEY)
            raise ApiError(500, f'Config key "{key}" may not be used as member-specific key')
        await storage.pools.define(name, str_of(doc, "driver"), target)
        return created(render.pool_url(name))
    if target not in (None, "", "none", request.app[SERVER_NAME]):
        raise ApiError(400, f"this server is not clustered: no member {target!r}")
    view = await storage.pools.create(
        name, str_of(doc, "driver"), config, str_of(doc, "description"), password=password
    )
    return created(render.pool_url(view.name))


async def pool_get(request: web.Request) -> web.Response:
    storage = storage_of(request)
    view = await storage.pools.get(request.match_info["pool"])
    return sync(
        render.pool(view, await _used_by(storage, view.name), await _locations(storage, view)),
        etag_value=render.pool_etag(view),
    )


async def _pool_update(request: web.Request, *, merge: bool) -> web.Response:
    storage = storage_of(request)
    name = request.match_info["pool"]
    current = await storage.pools.get(name)
    check_etag(request, render.pool_etag(current))
    doc = await json_body(request)
    config, password = _pool_config(doc.get("config"))
    if merge:
        config = {**current.config, **config}
    description = doc.get("description")
    if description is not None and not isinstance(description, str):
        raise ApiError(400, "description must be a string")
    await storage.pools.update(
        name,
        config,
        description if description is not None or not merge else None,
        password=password,
    )
    return empty()


async def pool_put(request: web.Request) -> web.Response:
    return await _pool_update(request, merge=False)


async def pool_patch(request: web.Request) -> web.Response:
    return await _pool_update(request, merge=True)


async def pool_delete(request: web.Request) -> web.Response:
    await storage_of(request).pools.delete(request.match_info["pool"])
    return empty()


async def pool_resources(request: web.Request) -> web.Response:
    used, total = await storage_of(request).pools.resources(request.match_info["pool"])
    return sync({"space": {"used": used, "total": total}, "inodes": {"used": 0, "total": 0}})


async def pool_check(request: web.Request) -> web.Response:
    """lxflex's ``storage check``: GET reports; POST ``{"repair": bool, "remove": [names]}``
    repairs what is safe and removes the unrecorded array volumes it names."""
    repair, remove = False, []
    if request.method == "POST":
        doc = await json_body(request)
        repair = bool_of(doc, "repair")
        names = doc.get("remove") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ApiError(400, "remove must be a list of array volume names")
        remove = names
    report = await storage_of(request).check(
        request.match_info["pool"], repair=repair, remove=remove
    )
    return sync(render.check(report))


# --- volumes ----------------------------------------------------------------------------


async def volumes_get(request: web.Request) -> web.Response:
    storage = storage_of(request)
    pool = request.match_info["pool"]
    vtype = request.match_info.get("type")
    if vtype is not None and vtype not in VOLUME_TYPES:
        raise ApiError(400, f"invalid storage volume type {vtype!r}")
    await storage.pools.get(pool)  # 404 for an unknown pool
    all_projects = request.query.get("all-projects", "").lower() == "true"
    project = None if all_projects else project_of(request)
    views = (
        [] if vtype not in (None, "custom") else await storage.volumes.all(pool, project=project)
    )
    # (volume, snapshot or None, document): URLs are made only for the answer that
    # lists them (recursion=0), documents for every answer (filters read them).
    entries: list[tuple[VolumeView, SnapshotRecord | None, render.VolumeDoc]] = []
    members = await storage.cluster.names() if any(v.uses for v in views) else {}
    for view in views:
        entries.append((view, None, render.volume(view, members)))
        for snap in view.snapshot_records:
            doc = render.snapshot_as_volume(view.name, snap, view.content_type, view.project)
            entries.append((view, snap, doc))
    expression = parse_filter(request.query.get("filter", ""))
    if expression is not None:
        entries = [e for e in entries if matches(expression, msgspec.to_builtins(e[2]))]
    if recursion_of(request) == 0:
        return sync(
            [
                render.snapshot_url(pool, view.name, snap.name, view.project)
                if snap
                else render.volume_url(pool, view.name, project=view.project)
                for view, snap, _ in entries
            ]
        )
    return sync([doc for _, _, doc in entries])


async def volumes_post(request: web.Request) -> web.Response:
    custom_only(request)
    if request.content_type == "application/octet-stream":
        return await import_volume(request)
    storage = storage_of(request)
    pool = request.match_info["pool"]
    project = project_of(request)
    doc = await json_body(request)
    name = str_of(doc, "name")
    if str_of(doc, "type", "custom") != "custom":
        raise ApiError(400, "only custom volumes can be created here")
    source = doc.get("source") or {}
    if not isinstance(source, dict):
        raise ApiError(400, "source must be an object")
    source_type = str_of(source, "type")
    if source_type == "":
        await storage.volumes.create(
            pool,
            name,
            content_type=str_of(doc, "content_type", "filesystem") or "filesystem",
            config=config_of(doc.get("config")),
            description=str_of(doc, "description"),
            project=project,
        )
        return empty()
    if source_type != "copy":
        raise ApiError(400, f"unsupported volume source type {source_type!r}")
    refresh = bool_of(source, "refresh")
    src_pool = str_of(source, "pool") or pool
    src_name = str_of(source, "name")
    src_volume, _, src_snapshot = src_name.partition("/")
    src_project = str_of(source, "project") or project
    # The source must exist before the operation starts: errors are immediate.
    view = await storage.volumes.get(src_pool, src_volume, project=src_project)
    overrides = config_of(doc.get("config"))  # the driver's key table says what may change

    volume_only = bool_of(source, "volume_only")
    # LXD's copy --refresh of an existing target; without one it is a plain copy.
    refreshing = refresh and not src_snapshot and await _exists(storage, pool, name, project)

    async def work(op: Operation) -> None:
        if refreshing:
            await storage.volumes.refresh(
                src_pool,
                src_volume,
                pool,
                name,
                project=src_project,
                target_project=project,
                progress=op.progress,
            )
            return
        await storage.volumes.copy(
            src_pool,
            src_volume,
            pool,
            name,
            with_snapshots=not volume_only,
            config=overrides,
            project=src_project,
            target_project=project,
            source_snapshot=src_snapshot or None,
            progress=op.progress,
        )

    verb = f"Refreshing storage volume {name} from" if refreshing else "Copying storage volume"
    return start_operation(
        request,
        f"{verb} {view.name}",
        work,
        {"storage_volumes": [render.volume_url(pool, name, project=project)]},
        project,
    )


async def _exists(storage: Storage, pool: str, name: str, project: str) -> bool:
    try:
        await storage.volumes.get(pool, name, project=project)
    except NotFound:
        return False
    return True


async def volume_get(request: web.Request) -> web.Response:
    custom_only(request)
    storage = storage_of(request)
    view = await storage.volumes.get(
        request.match_info["pool"], request.match_info["volume"], project=project_of(request)
    )
    members = await storage.cluster.names() if view.uses else {}
    return sync(render.volume(view, members), etag_value=render.volume_etag(view))


async def _volume_update(request: web.Request, *, merge: bool) -> web.Response:
    custom_only(request)
    storage = storage_of(request)
    pool, name, project = (
        request.match_info["pool"],
        request.match_info["volume"],
        project_of(request),
    )
    current = await storage.volumes.get(pool, name, project=project)
    check_etag(request, render.volume_etag(current))
    doc = await json_body(request)
    restore = doc.get("restore")
    if restore:  # config and description are ignored with a restore, as LXD does
        if not isinstance(restore, str):
            raise ApiError(400, "restore must be a snapshot name")
        await storage.volumes.restore(pool, name, restore, project=project)
        return empty()
    config = config_of(doc.get("config"))
    if merge:
        config = {**current.config, **config}
    description = doc.get("description")
    if description is not None and not isinstance(description, str):
        raise ApiError(400, "description must be a string")
    await storage.volumes.update(pool, name, config, description=description, project=project)
    return empty()


async def volume_put(request: web.Request) -> web.Response:
    return await _volume_update(request, merge=False)


async def volume_patch(request: web.Request) -> web.Response:
    return await _volume_update(request, merge=True)


async def volume_post(request: web.Request) -> web.Response:
    """Rename (sync) or move to another pool (operation)."""
    custom_only(request)
    storage = storage_of(request)
    pool, name, project = (
        request.match_info["pool"],
        request.match_info["volume"],
        project_of(request),
    )
    doc = await json_body(request)
    if doc.get("migration"):
        raise ApiError(400, "migration between servers is not supported")
    new_name = str_of(doc, "name") or name
    target_pool = str_of(doc, "pool") or pool
    target_project = str_of(doc, "project") or project
    if target_project != project:
        raise ApiError(400, "moving volumes between projects is not supported")
    if target_pool == pool:
        await storage.volumes.rename(pool, name, new_name, project=project)
        return created(render.volume_url(pool, new_name, project=project))
    await storage.volumes.get(pool, name, project=project)

    async def work(op: Operation) -> None:
        await storage.volumes.move(
            pool, name, target_pool, new_name, project=project, progress=op.progress
        )

    return start_operation(
        request,
        f"Moving storage volume {name}",
        work,
        {"storage_volumes": [render.volume_url(target_pool, new_name, project=project)]},
        project,
    )


async def volume_delete(request: web.Request) -> web.Response:
    custom_only(request)
    await storage_of(request).volumes.delete(
        request.match_info["pool"], request.match_info["volume"], project=project_of(request)
    )
    return empty()


async def volume_state(request: web.Request) -> web.Response:
    custom_only(request)
    view = await storage_of(request).volumes.get(
        request.match_info["pool"], request.match_info["volume"], project=project_of(request)
    )
    usage = await storage_of(request).volumes.usage(view.pool, view.name, project=view.project)
    return sync({"usage": usage})


# --- snapshots --------------------------------------------------------------------------


def _volume_key(request: web.Request) -> tuple[str, str, str]:
    custom_only(request)
    return request.match_info["pool"], request.match_info["volume"], project_of(request)


async def snapshots_get(request: web.Request) -> web.Response:
    pool, name, project = _volume_key(request)
    view: VolumeView = await storage_of(request).volumes.get(pool, name, project=project)
    if recursion_of(request) == 0:
        return sync(
            [render.snapshot_url(pool, name, s.name, project) for s in view.snapshot_records]
        )
    return sync([render.snapshot(s, view.content_type, listed=True) for s in view.snapshot_records])


async def snapshots_post(request: web.Request) -> web.Response:
    pool, name, project = _volume_key(request)
    storage = storage_of(request)
    doc = await json_body(request)
    snap_name = str_of(doc, "name")
    if snap_name:  # a bad or taken name is refused now, not in the operation (as LXD)
        await storage.volumes.check_snapshot(pool, name, snap_name, project=project)
    else:
        await storage.volumes.get(pool, name, project=project)
    expires: Any = "default"
    if "expires_at" in doc and doc["expires_at"] is not None:
        expires = parse_time(doc["expires_at"], "expires_at")
    url = render.snapshot_url(pool, name, snap_name, project) if snap_name else ""

    async def work(op: Operation) -> None:
        made = await storage.volumes.snapshot(
            pool,
            name,
            snap_name or None,
            project=project,
            description=str_of(doc, "description"),
            expires_at=expires,
        )
        op.resources["storage_volume_snapshots"] = [render.snapshot_url(pool, name, made, project)]

    resources = {"storage_volumes": [render.volume_url(pool, name, project=project)]}
    if url:
        resources["storage_volume_snapshots"] = [url]
    op = request.app[OPS].start(f"Snapshotting storage volume {name}", work, resources, project)
    return async_response(op.render())


async def snapshot_get(request: web.Request) -> web.Response:
    pool, name, project = _volume_key(request)
    storage = storage_of(request)
    view = await storage.volumes.get(pool, name, project=project)
    snap = await storage.volumes.snapshot_record(
        pool, name, request.match_info["snapshot"], project=project
    )
    return sync(render.snapshot(snap, view.content_type), etag_value=render.snapshot_etag(snap))


async def _snapshot_update(request: web.Request, *, merge: bool) -> web.Response:
    pool, name, project = _volume_key(request)
    storage = storage_of(request)
    snap = await storage.volumes.snapshot_record(
        pool, name, request.match_info["snapshot"], project=project
    )
    check_etag(request, render.snapshot_etag(snap))
    doc = await json_body(request)
    description = (
        str_of(doc, "description") if "description" in doc or not merge else snap.description
    )
    expires = (
        parse_time(doc.get("expires_at"), "expires_at")
        if "expires_at" in doc or not merge
        else snap.expires_at
    )
    await storage.volumes.update_snapshot(
        pool, name, snap.name, description=description, expires_at=expires, project=project
    )
    return empty()


async def snapshot_put(request: web.Request) -> web.Response:
    return await _snapshot_update(request, merge=False)


async def snapshot_patch(request: web.Request) -> web.Response:
    return await _snapshot_update(request, merge=True)


async def snapshot_post(request: web.Request) -> web.Response:
    pool, name, project = _volume_key(request)
    storage = storage_of(request)
    snapshot = request.match_info["snapshot"]
    await storage.volumes.snapshot_record(pool, name, snapshot, project=project)
    doc = await json_body(request)
    new_name = str_of(doc, "name")
    if not new_name:
        raise ApiError(400, "a new snapshot name is required")

    async def work(op: Operation) -> None:
        await storage.volumes.rename_snapshot(pool, name, snapshot, new_name, project=project)

    return start_operation(
        request,
        f"Renaming snapshot {snapshot} of {name}",
        work,
        {"storage_volume_snapshots": [render.snapshot_url(pool, name, new_name, project)]},
        project,
    )


async def snapshot_delete(request: web.Request) -> web.Response:
    pool, name, project = _volume_key(request)
    storage = storage_of(request)
    snapshot = request.match_info["snapshot"]
    await storage.volumes.snapshot_record(pool, name, snapshot, project=project)

    async def work(op: Operation) -> None:
        await storage.volumes.delete_snapshot(pool, name, snapshot, project=project)

    return start_operation(
        request,
        f"Deleting snapshot {snapshot} of {name}",
        work,
        {"storage_volume_snapshots": [render.snapshot_url(pool, name, snapshot, project)]},
        project,
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    base = "/1.0/storage-pools"
    r.add_get(base, pools_get)
    r.add_post(base, pools_post)
    r.add_get(base + "/{pool}", pool_get)
    r.add_put(base + "/{pool}", pool_put)
    r.add_patch(base + "/{pool}", pool_patch)
    r.add_delete(base + "/{pool}", pool_delete)
    r.add_get(base + "/{pool}/resources", pool_resources)
    r.add_get(base + "/{pool}/check", pool_check)
    r.add_post(base + "/{pool}/check", pool_check)
    vols = base + "/{pool}/volumes"
    r.add_get(vols, volumes_get)
    r.add_post(vols, volumes_post)
    r.add_get(vols + "/{type}", volumes_get)
    r.add_post(vols + "/{type}", volumes_post)
    one = vols + "/{type}/{volume}"
    r.add_get(one, volume_get)
    r.add_put(one, volume_put)
    r.add_patch(one, volume_patch)
    r.add_post(one, volume_post)
    r.add_delete(one, volume_delete)
    r.add_get(one + "/state", volume_state)
    r.add_get(one + "/snapshots", snapshots_get)
    r.add_post(one + "/snapshots", snapshots_post)
    snap = one + "/snapshots/{snapshot}"
    r.add_get(snap, snapshot_get)
    r.add_put(snap, snapshot_put)
    r.add_patch(snap, snapshot_patch)
    r.add_post(snap, snapshot_post)
    r.add_delete(snap, snapshot_delete)
