"""``/1.0/cluster`` and its members, as ``lxc cluster list|show|remove`` and pylxd's
cluster models read them (see ``shared/reference/lxd-cluster.md`` §1.2-1.3).

A standalone server answers ``enabled: false`` (lxc then says the server is not part of
a cluster) and no members. Members hold no raft roles: the database is PostgreSQL, so
``database`` is false and ``roles`` empty; every member is in failure domain and group
``default``.

Also here: the routing of ``?target=`` to another member (:func:`forward_middleware`,
through :mod:`.forward`), and the operations of the other members, listed and found.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from ..service import MemberView
from .common import STORAGE, project_of, recursion_of, storage_of
from .envelope import ApiError, empty, sync
from .forward import FORWARDED, Forwarder

__all__ = [
    "FORWARDER",
    "add_routes",
    "forward_middleware",
    "member_doc",
    "operation_elsewhere",
    "others_operations",
]

FORWARDER: web.AppKey[Forwarder] = web.AppKey("forwarder")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Served by the member that receives them whatever their target: the events stream
# (events are the cluster's), and a pool's creation (a PowerFlex pool is every
# member's; the handler answers a --target itself).
_LOCAL = [("GET", re.compile(r"/1\.0/events/?")), ("POST", re.compile(r"/1\.0/storage-pools/?"))]


# Work on a custom volume (not a read; not its attachments, which move it): served by the
# member whose host has the volume attached, as LXD serves an instance's work where it is.
_VOLUME = re.compile(r"/1\.0/storage-pools/([^/]+)/volumes/custom/([^/]+)(/(?!attachments).*)?")
# A backup's tarball is a file of the member that made it: its export, rename and
# delete are served there.
_BACKUP = re.compile(
    r"/1\.0/storage-pools/([^/]+)/volumes/custom/([^/]+)/backups/([^/]+)(/export)?"
)


@web.middleware
async def forward_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``?target=<another member>``: forward the request to it (see :mod:`.forward`).
    Without a target, work on a volume another member has attached goes to it."""
    cluster = request.app[STORAGE].cluster
    target = request.query.get("target")
    if not cluster.clustered or any(
        m == request.method and p.fullmatch(request.path) for m, p in _LOCAL
    ):
        return await handler(request)
    if target is None:
        holder = await _holder(request)
        if holder is None:
            return await handler(request)
        return await request.app[FORWARDER].forward(request, holder)
    if target in ("", "none", cluster.name):
        return await handler(request)
    member = await cluster.member(target)  # 404 Cluster member not found
    return await request.app[FORWARDER].forward(request, member)


async def _holder(request: web.Request) -> MemberView | None:
    """The other member that must serve this request, if one must: the one holding a
    backup's tarball, or the one (Online) whose host has the volume attached."""
    if FORWARDED[1] in request.headers:  # a member sent it: served here
        return None
    storage = request.app[STORAGE]
    project = project_of(request)
    if found := _BACKUP.fullmatch(request.path):
        pool, name, backup = unquote(found[1]), unquote(found[2]), unquote(found[3])
        server = await storage.backups.server_of(pool, name, backup, project=project)
        if server is None:
            return None  # this member's
        return await _member_of(request, server, f"the tarball of backup {backup!r}")
    if request.method == "GET" or not (found := _VOLUME.fullmatch(request.path)):
        return None
    server = await storage.attachments.holder(unquote(found[1]), unquote(found[2]), project=project)
    if server is None or server == storage.cluster.server_uuid:
        return None
    member = await storage.cluster.of_server(server)
    return member if member is not None and member.online else None


async def _member_of(request: web.Request, server: str, what: str) -> MemberView:
    """The member of server ``server``, which must answer for ``what``."""
    member = await request.app[STORAGE].cluster.of_server(server)
    if member is None:
        raise ApiError(404, f"{what} was on a server that is no longer a member")
    if not member.online:
        raise ApiError(503, f"{what} is on member {member.name}, which is Offline")
    return member


async def _others(request: web.Request) -> list[MemberView]:
    """The other members to ask, online, unless the request names its member."""
    cluster = request.app[STORAGE].cluster
    if not cluster.clustered or "target" in request.query:
        return []
    return [m for m in await cluster.members() if m.name != cluster.name and m.online]


async def others_operations(request: web.Request, recursive: bool) -> dict[str, list[Any]]:
    """The other members' operations by status, as each lists its own."""
    grouped: dict[str, list[Any]] = {}
    for member in await _others(request):
        path = f"/1.0/operations?recursion={int(recursive)}&target={member.name}"
        status, doc = await request.app[FORWARDER].fetch(member, path)
        listed = (doc or {}).get("metadata") if status == 200 else None
        for state, entries in (listed or {}).items():
            if isinstance(entries, list):
                grouped.setdefault(state, []).extend(entries)
    return grouped


async def operation_elsewhere(request: web.Request) -> web.StreamResponse | None:
    """An operation this member does not know, asked for on the member that runs it
    (found by asking each), as LXD looks it up in the cluster; None if none does."""
    op_id = request.match_info["id"]
    for member in await _others(request):
        path = f"/1.0/operations/{quote(op_id, safe='')}?target={member.name}"
        status, _ = await request.app[FORWARDER].fetch(member, path)
        if status == 200:
            return await request.app[FORWARDER].forward(request, member)
    return None


def member_doc(member: MemberView) -> dict[str, Any]:
    return {
        "server_name": member.name,
        "url": f"https://{member.address}",
        "database": False,
        "status": "Online" if member.online else "Offline",
        "message": member.message,
        "architecture": member.architecture,
        "roles": [],
        "failure_domain": "default",
        "description": "",
        "config": {},
        "groups": ["default"],
    }


def _url(name: str) -> str:
    return f"/1.0/cluster/members/{quote(name, safe='')}"


async def cluster_get(request: web.Request) -> web.Response:
    cluster = storage_of(request).cluster
    doc = {"server_name": cluster.name or "", "enabled": cluster.clustered, "member_config": []}
    return sync(doc)


async def members_get(request: web.Request) -> web.Response:
    members = await storage_of(request).cluster.members()
    if recursion_of(request):
        return sync([member_doc(m) for m in members])
    return sync([_url(m.name) for m in members])


async def member_get(request: web.Request) -> web.Response:
    member = await storage_of(request).cluster.member(request.match_info["name"])
    return sync(member_doc(member))


async def member_delete(request: web.Request) -> web.Response:
    force = request.query.get("force", "0") not in ("", "0", "false")
    await storage_of(request).remove_member(request.match_info["name"], force=force)
    return empty()


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/1.0/cluster", cluster_get)
    r.add_get("/1.0/cluster/members", members_get)
    r.add_get("/1.0/cluster/members/{name}", member_get)
    r.add_delete("/1.0/cluster/members/{name}", member_delete)
