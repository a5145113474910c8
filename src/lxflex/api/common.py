"""What the API's handler modules share: app keys, request helpers, operations."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..service import Storage
from .envelope import ApiError, async_response
from .operations import Operations, Work

STORAGE: web.AppKey[Storage] = web.AppKey("storage")
OPS: web.AppKey[Operations] = web.AppKey("operations")
SERVER_NAME: web.AppKey[str] = web.AppKey("server_name")

VOLUME_TYPES = ("custom", "container", "virtual-machine", "image")


def storage_of(request: web.Request) -> Storage:
    return request.app[STORAGE]


# The project whose volumes a request acts on (set by the project middleware).
PROJECT: web.RequestKey[str] = web.RequestKey("project")


def project_of(request: web.Request) -> str:
    return request.get(PROJECT) or "default"


def recursion_of(request: web.Request) -> int:
    """``?recursion=``: 0, 1 or 2; anything that is not a number counts as 0, as in LXD."""
    try:
        return int(request.query.get("recursion", "0"))
    except ValueError:
        return 0


def custom_only(request: web.Request) -> None:
    vtype = request.match_info.get("type", "custom")
    if vtype not in VOLUME_TYPES:
        raise ApiError(400, f"invalid storage volume type {vtype!r}")
    if vtype != "custom":
        raise ApiError(404, f"storage volume not found (lxflex serves custom volumes; not {vtype})")


def config_of(value: Any, field: str = "config") -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ApiError(400, f"{field} must be an object of string values")
    return dict(value)


def str_of(doc: dict[str, Any], key: str, default: str = "") -> str:
    value = doc.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string")
    return value


def bool_of(doc: dict[str, Any], key: str, default: bool = False) -> bool:
    """A JSON boolean field (absent or null: ``default``); anything else is a 400."""
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"{key} must be true or false")
    return value


def start_operation(
    request: web.Request,
    description: str,
    work: Work,
    resources: dict[str, list[str]],
    project: str,
) -> web.Response:
    """Start ``work`` as a background operation and answer 202 with it."""
    op = request.app[OPS].start(description, work, resources, project)
    return async_response(op.render())
