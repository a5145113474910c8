"""JSON of pools, volumes and snapshots, their URLs and ETags, as LXD renders them.

Configs are objects, never null (``lxc storage set`` writes into the map it receives);
``used_by`` is a list; volumes report ``location: ""``, as LXD does for the volumes of a
remote driver (they belong to no member); a pool's ``locations`` are its members (all of
a cluster's, or ``none`` for a standalone server).
The ETag hashes what a PUT can change: pool ``[name, driver, config]``, volume
``[name, type, config]``, snapshot ``[description, expires_at]``.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import msgspec

from ..service import (
    AttachmentView,
    CheckReport,
    PoolView,
    SnapshotRecord,
    VolumeUse,
    VolumeView,
)
from ..service.events import Lifecycle
from .envelope import etag, rfc3339

_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")


def _q(name: str) -> str:
    # Most names need no quoting, and a regex match costs a tenth of quote(): listings
    # of 10,000 volumes render several URLs per volume.
    return name if _PLAIN.fullmatch(name) else quote(name, safe="")


def pool_url(pool: str) -> str:
    return f"/1.0/storage-pools/{_q(pool)}"


def volume_url(pool: str, name: str, vtype: str = "custom", project: str = "default") -> str:
    url = f"{pool_url(pool)}/volumes/{vtype}/{_q(name)}"
    return url if project == "default" else f"{url}?project={_q(project)}"


def snapshot_url(pool: str, volume: str, snapshot: str, project: str = "default") -> str:
    url = f"{pool_url(pool)}/volumes/custom/{_q(volume)}/snapshots/{_q(snapshot)}"
    return url if project == "default" else f"{url}?project={_q(project)}"


def pool(view: PoolView, used_by: list[str], locations: list[str]) -> dict[str, Any]:
    return {
        "name": view.name,
        "driver": view.driver,
        "description": view.description,
        "config": dict(view.config),
        "status": view.status.capitalize(),  # LXD: "Created"
        "locations": locations,
        "used_by": used_by,
    }


def pool_etag(view: PoolView) -> str:
    return etag(view.name, view.driver, view.config)


class VolumeDoc(msgspec.Struct):
    """A volume as LXD renders it (in lists, a snapshot too, named ``volume/snapshot``).

    A struct, not a dict: lists render 10,000 of them, and msgspec builds and writes
    structs, times included (RFC 3339, Z for UTC), about three times faster."""

    name: str
    type: str
    description: str
    config: dict[str, str]
    content_type: str
    location: str
    project: str
    used_by: list[str]
    created_at: datetime.datetime


def volume(view: VolumeView, members: Mapping[str, str] | None = None) -> VolumeDoc:
    """A volume; ``members`` names the cluster's servers by UUID (for ``used_by``)."""
    return VolumeDoc(
        view.name,
        view.type,
        view.description,
        view.config,  # the view's own copy
        view.content_type,
        "",
        view.project,
        used_by(view.pool, view.name, view.project, view.uses, members or {}),
        view.created_at.astimezone(datetime.UTC),
    )


def attachment_url(pool: str, name: str, project: str, member: str | None) -> str:
    """The URL of a host's own use of a volume (on ``member``, in a cluster)."""
    url = f"{pool_url(pool)}/volumes/custom/{_q(name)}/attachments/host"
    query = [f"project={_q(project)}"] if project != "default" else []
    query += [f"target={_q(member)}"] if member else []
    return url + ("?" + "&".join(query) if query else "")


def used_by(
    pool: str,
    name: str,
    project: str,
    uses: Iterable[VolumeUse],
    members: Mapping[str, str],
) -> list[str]:
    """What uses a volume, as LXD lists it: instances by URL, and a host's own use by
    the URL of its attachment."""
    found = []
    for use in uses:
        if use.instance:
            url = f"/1.0/instances/{_q(use.instance)}"
            if use.instance_project not in ("", "default"):
                url += f"?project={_q(use.instance_project)}"
            found.append(url)
        else:
            found.append(attachment_url(pool, name, project, members.get(use.server_uuid)))
    return found


def attachment(view: AttachmentView, members: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": view.instance or "host",
        "location": members.get(view.server_uuid, "none"),
        "path": view.path,
        "instance": view.instance,
        "instance_project": view.instance_project,
        "device": view.device,
        "created_at": rfc3339(view.created_at),
    }


def volume_etag(view: VolumeView) -> str:
    return etag(view.name, view.type, view.config)


def snapshot(snap: SnapshotRecord, content_type: str, *, listed: bool = False) -> dict[str, Any]:
    """A snapshot; no expiry is the zero time, but ``null`` in a recursive listing, as
    LXD 5.0.2 answers (``lxc storage volume info`` reads the listing)."""
    expires: str | None = rfc3339(snap.expires_at)
    if listed and snap.expires_at is None:
        expires = None
    return {
        "name": snap.name,
        "description": snap.description,
        "config": dict(snap.config),
        "content_type": content_type,
        "created_at": rfc3339(snap.created_at),
        "expires_at": expires,
    }


def snapshot_as_volume(
    volume_name: str, snap: SnapshotRecord, content_type: str, project: str
) -> VolumeDoc:
    """A snapshot as it appears in a volume list: a volume named ``vol/snap``."""
    return VolumeDoc(
        f"{volume_name}/{snap.name}",
        "custom",
        snap.description,
        dict(snap.config),
        content_type,
        "",
        project,
        [],
        snap.created_at.astimezone(datetime.UTC),
    )


def snapshot_etag(snap: SnapshotRecord) -> str:
    return etag(snap.description, rfc3339(snap.expires_at))


def check(report: CheckReport) -> dict[str, Any]:
    """A ``storage check`` report; ``clean`` when no finding is left unrepaired."""
    doc: dict[str, Any] = msgspec.to_builtins(report)
    doc["clean"] = not report.left
    return doc


def lifecycle(event: Lifecycle, requestor: dict[str, str] | None) -> dict[str, Any]:
    """A ``lifecycle`` event's metadata as LXD sends it: ``context`` and ``requestor``
    only when there is one (a scheduled snapshot has no requestor). The source is the
    object's URL (LXD 5.0.2 puts ``<project>_<name>`` in volume sources; this does not)."""
    source = pool_url(event.pool)
    if event.action.startswith("project-"):
        source = f"/1.0/projects/{_q(event.project)}"
    elif event.volume is not None:
        source = volume_url(event.pool, event.volume)
        if event.snapshot is not None:
            source += f"/snapshots/{_q(event.snapshot)}"
        elif event.backup is not None:
            source += f"/backups/{_q(event.backup)}"
    doc: dict[str, Any] = {"action": event.action, "source": source}
    if event.context:
        doc["context"] = dict(event.context)
    if requestor is not None:
        doc["requestor"] = requestor
    return doc
