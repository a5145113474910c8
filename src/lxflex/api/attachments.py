"""``/1.0/storage-pools/{pool}/volumes/custom/{volume}/attachments``: volumes in use on
a host (an lxflex extension, ``lxflex_attachments``; see :mod:`lxflex.service.attachments`).

* ``GET``: the volume's attachments on every host, each with its ``location`` (the
  member, in a cluster) and ``path`` (the mount point, or the block device).
* ``POST {"path": "/srv/data"}``: attach the volume for this host's own use (``path``
  optional, filesystem volumes only); an operation, since mapping and mounting take a
  while. With ``?target=m`` another member attaches it to its host.
* ``POST {"instance": "c1", "path": "/data", "device": "", "instance_project": "",
  "socket": ""}``: give it to an instance of this host's LXD or Incus (found, or at
  ``socket``) as a disk device.
* Attaching a volume another member uses moves it: that member is asked to detach it
  first (its filesystem unmounted cleanly there, its mapping removed); an Offline
  member is fenced instead (its mapping of the volume removed at the array). No data
  is copied: the volume is the array's.
* ``DELETE .../attachments/host``: undo this host's own use;
  ``DELETE .../attachments/instances/c1[?instance_project=p]``: take it from c1
  (``&only_stopped=true``: refused while c1 runs; asked by a member whose host an
  instance arrived on with the volume's device, see
  :meth:`lxflex.service.instance_uses.InstanceUses.take_in`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import quote, urlencode

from aiohttp import web

from ..driver import Conflict, Unavailable
from ..service import AttachedElsewhere, Attachment
from . import render
from .cluster import FORWARDER
from .common import OPS, STORAGE, custom_only, project_of, storage_of, str_of
from .envelope import ApiError, async_response, json_body, sync
from .operations import Operation, Work

__all__ = ["add_routes"]


def _key(request: web.Request) -> tuple[str, str, str]:
    custom_only(request)
    return request.match_info["pool"], request.match_info["volume"], project_of(request)


async def attachments_get(request: web.Request) -> web.Response:
    pool, name, project = _key(request)
    storage = storage_of(request)
    views = await storage.attachments.of_volume(pool, name, project=project)
    members = await storage.cluster.names() if views else {}
    return sync([render.attachment(v, members) for v in views])


async def attachments_post(request: web.Request) -> web.Response:
    pool, name, project = _key(request)
    storage = storage_of(request)
    doc = await json_body(request)
    unknown = set(doc) - {"path", "instance", "instance_project", "device", "socket"}
    if unknown:
        raise ApiError(400, f"unknown attachment field(s): {', '.join(sorted(unknown))}")
    text, instance = str_of(doc, "path"), str_of(doc, "instance")
    socket = str_of(doc, "socket")
    if socket and not socket.startswith("/"):
        raise ApiError(400, f"the socket {socket!r} is not an absolute path")
    if not instance and not text.startswith("/") and text:
        raise ApiError(400, f"the path {text!r} is not absolute")
    await storage.volumes.get(pool, name, project=project)  # 404 now, not in the operation
    attachments = storage.attachments

    async def work(op: Operation) -> None:
        try:
            await attach(op)
        except AttachedElsewhere as exc:  # a move: taken from the other host first
            await take_from_others(request.app, pool, name, project, exc.holders)
            await attach(op)

    async def attach(op: Operation) -> None:
        if instance:
            view = await attachments.instances.attach(
                pool,
                name,
                project=project,
                instance=instance,
                instance_project=str_of(doc, "instance_project") or "default",
                path=text,
                device=str_of(doc, "device"),
                socket=Path(socket) if socket else None,
            )
            op.metadata = {"path": view.path, "instance": view.instance, "device": view.device}
        else:
            view = await attachments.attach(
                pool, name, project=project, path=Path(text) if text else None
            )
            op.metadata = {"path": view.path}

    resources = {"storage_volumes": [render.volume_url(pool, name, project=project)]}
    op = request.app[OPS].start(f"Attaching storage volume {name}", work, resources, project)
    return async_response(op.render())


async def attachment_delete(request: web.Request) -> web.Response:
    pool, name, project = _key(request)
    if request.match_info["use"] != "host":
        raise ApiError(404, "attachment not found (the host's own use is named host)")
    storage = storage_of(request)
    if await storage.attachments.host_use(pool, name, project=project) is None:
        uses = await storage.attachments.of_volume(pool, name, project=project)
        given = [u.instance for u in uses if u.instance]
        hint = (
            f" (it is given to instance {given[0]!r}: detach it with --instance)" if given else ""
        )
        raise ApiError(404, f"storage volume {name!r} is not attached to this host{hint}")

    async def work(_op: Operation) -> None:
        await storage.attachments.detach(pool, name, project=project)

    return _operation(request, f"Detaching storage volume {name}", work)


async def instance_delete(request: web.Request) -> web.Response:
    pool, name, project = _key(request)
    instance = request.match_info["instance"]
    instance_project = request.query.get("instance_project") or "default"
    only_stopped = request.query.get("only_stopped", "") in ("1", "true")
    storage = storage_of(request)
    uses = await storage.attachments.of_volume(pool, name, project=project)
    if not any((u.instance_project, u.instance) == (instance_project, instance) for u in uses):
        raise ApiError(404, f"storage volume {name!r} is not attached to instance {instance!r}")
    if only_stopped:  # refused now (409), not in the operation
        await storage.attachments.instances.refuse_running(
            pool, name, project=project, instance=instance, instance_project=instance_project
        )

    async def work(_op: Operation) -> None:
        await storage.attachments.instances.detach(
            pool,
            name,
            project=project,
            instance=instance,
            instance_project=instance_project,
            only_stopped=only_stopped,
        )

    return _operation(request, f"Detaching storage volume {name} from {instance}", work)


async def take_from_others(
    app: web.Application,
    pool: str,
    name: str,
    project: str,
    holders: list[Attachment],
    *,
    arrival: bool = False,
) -> None:
    """Move the volume here: each other host that uses it (``holders``) gives it up,
    its member asked to detach it (so its filesystem is unmounted cleanly there); a
    member that is Offline is fenced instead (its mapping of the volume removed at the
    array). For an ``arrival`` (an instance that came here with the volume's device) an
    instance that still runs there keeps it (Conflict) and the host's own use too; the
    members' errors are the service's (Unavailable: try again)."""
    storage = app[STORAGE]
    members = {m.server_uuid: m for m in await storage.cluster.members()}
    base = f"{render.volume_url(pool, name)}/attachments"
    for server_uuid in dict.fromkeys(h.server_uuid for h in holders):
        member = members.get(server_uuid)
        if member is None or not member.online:
            await storage.attachments.take_from(pool, name, server_uuid, project=project)
            continue
        for holder in (h for h in holders if h.server_uuid == server_uuid):
            query = {"target": member.name}
            if project != "default":
                query["project"] = project
            if holder.instance:
                query["instance_project"] = holder.instance_project
                path = f"{base}/instances/{quote(holder.instance, safe='')}"
            elif arrival:
                raise Conflict(
                    f"storage volume {name!r} is attached to the host of member "
                    f"{member.name} ({holder.path}) too: detach it there first"
                )
            else:
                path = f"{base}/host"
            if arrival:
                query["only_stopped"] = "true"
            try:
                await app[FORWARDER].run(member, "DELETE", f"{path}?{urlencode(query)}")
            except ApiError as exc:
                if exc.status == 404:
                    continue  # given up meanwhile
                if not arrival:
                    raise
                if exc.status == 409:
                    raise Conflict(exc.message) from None
                raise Unavailable(exc.message) from None


def _operation(request: web.Request, description: str, work: Work) -> web.Response:
    pool, name, project = _key(request)
    resources = {"storage_volumes": [render.volume_url(pool, name, project=project)]}
    op = request.app[OPS].start(description, work, resources, project)
    return async_response(op.render())


def add_routes(app: web.Application) -> None:
    app[STORAGE].attachments.instances.mover = functools.partial(
        take_from_others, app, arrival=True
    )
    base = "/1.0/storage-pools/{pool}/volumes/{type}/{volume}/attachments"
    app.router.add_get(base, attachments_get)
    app.router.add_post(base, attachments_post)
    app.router.add_delete(base + "/{use}", attachment_delete)
    app.router.add_delete(base + "/instances/{instance}", instance_delete)
