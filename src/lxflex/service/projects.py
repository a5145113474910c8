"""Projects: named sets of storage volumes, as LXD's projects hold them.

``default`` always exists. A project whose ``features.storage.volumes`` is ``false``
keeps no volumes of its own: its requests use the ``default`` project's, as in LXD. Only
the ``features.*`` and ``user.*`` keys are taken: lxflex serves storage, so the limits
and restrictions of instances, images and networks have nothing to act on here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..driver import Conflict, InvalidRequest, NotFound
from ..state import Database, NameTaken
from ..state import projects as pj
from ..state import store as st
from .events import Events, Lifecycle

__all__ = ["DEFAULT", "ProjectService", "ProjectView"]

DEFAULT = "default"
FEATURES = (
    "features.images",
    "features.networks",
    "features.networks.zones",
    "features.profiles",
    "features.storage.buckets",
    "features.storage.volumes",
)
# What LXD 5.0.2 gives a new project whose config does not say.
NEW_FEATURES = {
    "features.images": "true",
    "features.profiles": "true",
    "features.storage.volumes": "true",
}
_NAME = re.compile(r"[^\s/*]{1,63}")


class DefaultProject(InvalidRequest):
    """The ``default`` project cannot go (LXD answers 403)."""

    status = 403


@dataclass(frozen=True)
class ProjectView:
    name: str
    description: str
    config: dict[str, str]
    used_by: list[tuple[str, str, str]]  # (pool, volume type, volume name)


def _check_config(config: Mapping[str, str]) -> dict[str, str]:
    for key, value in config.items():
        if key.startswith("user."):
            continue
        if key not in FEATURES:
            raise InvalidRequest(
                f'unknown project configuration key "{key}" (lxflex serves storage: it takes '
                "features.* and user.* keys)"
            )
        if value not in ("true", "false"):
            raise InvalidRequest(f'Invalid value for "{key}": must be true or false')
    return dict(config)


def _check_name(name: str) -> None:
    if name in (".", "..") or not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"invalid project name {name!r}: no spaces, slashes or '*', at most 63 characters"
        )


class ProjectService:
    def __init__(self, db: Database, events: Events) -> None:
        self.db = db
        self.events = events

    async def _record(self, name: str) -> pj.Project:
        async with self.db.read() as conn:
            project = await pj.get_project(conn, name)
        if project is None:
            raise NotFound("Project not found")
        return project

    async def storage_project(self, name: str) -> str:
        """The project whose volumes a request in project ``name`` uses; NotFound for a
        project that does not exist."""
        if name == DEFAULT:
            return name
        project = await self._record(name)
        return name if project.config.get("features.storage.volumes") == "true" else DEFAULT

    async def _view(self, project: pj.Project) -> ProjectView:
        async with self.db.read() as conn:
            pools = {p.id: p.name for p in await st.list_pools(conn)}
            used = await pj.project_volumes(conn, project.name)
        return ProjectView(
            project.name,
            project.description,
            dict(project.config),
            [(pools[pool_id], vtype, name) for pool_id, vtype, name in used],
        )

    async def get(self, name: str) -> ProjectView:
        return await self._view(await self._record(name))

    async def all(self) -> list[ProjectView]:
        async with self.db.read() as conn:
            projects = await pj.list_projects(conn)
        return [await self._view(p) for p in projects]

    async def create(
        self, name: str, config: Mapping[str, str], description: str = ""
    ) -> ProjectView:
        _check_name(name)
        filled = {**NEW_FEATURES, **_check_config(config)}
        try:
            async with self.db.write() as conn:
                await pj.create_project(conn, name, filled, description)
        except NameTaken:
            raise Conflict(f"project {name!r} already exists") from None
        self.events.emit(Lifecycle("project-created", "", name))
        return await self.get(name)

    async def update(
        self, name: str, config: Mapping[str, str], description: str | None = None
    ) -> ProjectView:
        """Replace the project's config (a PUT; the API merges for a PATCH)."""
        project = await self._record(name)
        new = _check_config({k: v for k, v in config.items() if v != ""})
        changed = [k for k in FEATURES if project.config.get(k) != new.get(k)]
        if changed and (await self._view(project)).used_by:
            raise InvalidRequest(
                f"features can only be changed on empty projects ({', '.join(changed)})"
            )
        async with self.db.write() as conn:
            await pj.update_project(conn, project.id, config=new, description=description)
        self.events.emit(Lifecycle("project-updated", "", name))
        return await self.get(name)

    async def rename(self, name: str, new_name: str) -> ProjectView:
        _check_name(new_name)
        if name == DEFAULT:
            raise InvalidRequest("the 'default' project cannot be renamed")
        project = await self._record(name)
        if (await self._view(project)).used_by:
            raise InvalidRequest("only empty projects can be renamed")
        try:
            async with self.db.write() as conn:
                await pj.update_project(conn, project.id, name=new_name)
        except NameTaken:
            raise Conflict(f"project {new_name!r} already exists") from None
        self.events.emit(Lifecycle("project-renamed", "", new_name, context={"old_name": name}))
        return await self.get(new_name)

    async def delete(self, name: str) -> None:
        """Delete an empty project (LXD 5.0.2 deletes one holding volumes and orphans
        them; lxflex refuses)."""
        if name == DEFAULT:
            raise DefaultProject("The 'default' project cannot be deleted")
        project = await self._record(name)
        used = (await self._view(project)).used_by
        if used:
            raise InvalidRequest(
                f"only empty projects can be removed: {name!r} still has {len(used)} volume(s)"
            )
        async with self.db.write() as conn:
            await pj.delete_project(conn, project.id)
        self.events.emit(Lifecycle("project-deleted", "", name))
