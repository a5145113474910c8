"""``/1.0/projects``: the projects volumes live in, as LXD serves them (create, list,
show, update, rename, delete), and the check that a request's ``?project=`` exists."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..service.projects import ProjectView
from . import render
from .common import PROJECT, STORAGE, config_of, recursion_of, start_operation, storage_of, str_of
from .envelope import ApiError, check_etag, created, empty, etag, json_body, sync
from .operations import Operation

__all__ = ["add_routes", "project_middleware"]


def _url(name: str) -> str:
    return f"/1.0/projects/{quote(name, safe='')}"


def _render(view: ProjectView) -> dict[str, Any]:
    return {
        "name": view.name,
        "description": view.description,
        "config": view.config,
        "used_by": [
            render.volume_url(pool, name, vtype, project=view.name)
            for pool, vtype, name in view.used_by
        ],
    }


def _etag(view: ProjectView) -> str:
    return etag(view.description, view.config)


@web.middleware
async def project_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A request in an unknown project is LXD's 404 "Project not found"; one in a project
    without its own storage volumes acts on the default project's."""
    wanted = request.query.get("project")
    if wanted and not request.path.startswith("/1.0/projects"):
        request[PROJECT] = await request.app[STORAGE].projects.storage_project(wanted)
    return await handler(request)


async def projects_get(request: web.Request) -> web.Response:
    views = await storage_of(request).projects.all()
    if recursion_of(request) == 0:
        return sync([_url(v.name) for v in views])
    return sync([_render(v) for v in views])


async def projects_post(request: web.Request) -> web.Response:
    doc = await json_body(request)
    view = await storage_of(request).projects.create(
        str_of(doc, "name"), config_of(doc.get("config")), str_of(doc, "description")
    )
    return created(_url(view.name))


async def project_get(request: web.Request) -> web.Response:
    view = await storage_of(request).projects.get(request.match_info["name"])
    return sync(_render(view), etag_value=_etag(view))


async def _update(request: web.Request, *, merge: bool) -> web.Response:
    projects = storage_of(request).projects
    current = await projects.get(request.match_info["name"])
    check_etag(request, _etag(current))
    doc = await json_body(request)
    config = config_of(doc.get("config"))
    if merge:
        config = {**current.config, **config}
    description = str_of(doc, "description") if "description" in doc or not merge else None
    await projects.update(current.name, config, description)
    return empty()


async def project_put(request: web.Request) -> web.Response:
    return await _update(request, merge=False)


async def project_patch(request: web.Request) -> web.Response:
    return await _update(request, merge=True)


async def project_post(request: web.Request) -> web.Response:
    """Rename (an operation, as LXD)."""
    name = request.match_info["name"]
    doc = await json_body(request)
    new = str_of(doc, "name")
    if not new:
        raise ApiError(400, "name is required")
    projects = storage_of(request).projects
    await projects.get(name)

    async def work(op: Operation) -> None:
        await projects.rename(name, new)

    return start_operation(request, "Renaming project", work, {"projects": [_url(name)]}, name)


async def project_delete(request: web.Request) -> web.Response:
    await storage_of(request).projects.delete(request.match_info["name"])
    return empty()


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/1.0/projects", projects_get)
    r.add_post("/1.0/projects", projects_post)
    one = "/1.0/projects/{name}"
    r.add_get(one, project_get)
    r.add_put(one, project_put)
    r.add_patch(one, project_patch)
    r.add_post(one, project_post)
    r.add_delete(one, project_delete)
