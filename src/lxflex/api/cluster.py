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
from urllib.parse import quote

from aiohttp import web

from ..service import MemberView
from .common import STORAGE, recursion_of, storage_of
from .envelope import empty, sync
from .forward import Forwarder

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


@web.middleware
async def forward_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``?target=<another member>``: forward the request to it (see :mod:`.forward`)."""
    cluster = request.app[STORAGE].cluster
    target = request.query.get("target")
    if (
        not cluster.clustered
        or target in (None, "", "none", cluster.name)
        or any(m == request.method and p.fullmatch(request.path) for m, p in _LOCAL)
    ):
        return await handler(request)
    member = await cluster.member(target or "")  # 404 Cluster member not found
    return await request.app[FORWARDER].forward(request, member)


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
