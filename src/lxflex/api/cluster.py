"""``/1.0/cluster`` and its members, as ``lxc cluster list|show|remove`` and pylxd's
cluster models read them (see ``shared/reference/lxd-cluster.md`` §1.2-1.3).

A standalone server answers ``enabled: false`` (lxc then says the server is not part of
a cluster) and no members. Members hold no raft roles: the database is PostgreSQL, so
``database`` is false and ``roles`` empty; every member is in failure domain and group
``default``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..service import MemberView
from .common import recursion_of, storage_of
from .envelope import empty, sync

__all__ = ["add_routes", "member_doc"]


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
    await storage_of(request).cluster.remove(request.match_info["name"], force=force)
    return empty()


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/1.0/cluster", cluster_get)
    r.add_get("/1.0/cluster/members", members_get)
    r.add_get("/1.0/cluster/members/{name}", member_get)
    r.add_delete("/1.0/cluster/members/{name}", member_delete)
