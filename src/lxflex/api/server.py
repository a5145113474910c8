"""The lxflexd application: ``/1.0``, operations, events, errors, and the storage API.

Errors become LXD error envelopes with the matching status: the service's and driver's
errors carry theirs (400, 404, 409, 412, 503); an unexpected exception is a 500 whose
text says only that it is a bug (the details go to the log), so nothing internal, and
never a secret, reaches a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import __version__
from ..driver import ConfigError, DriverError
from ..service import Storage
from ..service.trust import check_server_config
from . import attachments as attachment_routes
from . import backups as backup_routes
from . import cluster as cluster_routes
from . import join as join_routes
from . import projects as project_routes
from . import render
from . import storage as storage_routes
from . import trust as trust_routes
from .cluster import FORWARDER, forward_middleware, operation_elsewhere, others_operations
from .common import OPS, SERVER_NAME, STORAGE
from .envelope import ApiError, check_etag, empty, error, etag, json_body, sync
from .events import REQUESTOR, EventHub, EventRelay, LogForwarder
from .forward import Forwarder
from .operations import Operation, Operations
from .projects import project_middleware
from .trust import HTTPS, TRUSTED, Https, trust_middleware

log = logging.getLogger("lxflex.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_FORWARDER: web.AppKey[LogForwarder] = web.AppKey("log-forwarder")

# Only what is implemented; each one changes what lxc and pylxd try.
API_EXTENSIONS = [
    "storage",
    "clustering",
    "clustering_join_token",
    "resources",
    "etag",
    "patch",
    "entity_description",
    "storage_volume_state",
    "storage_volume_state_total",
    "storage_api_volume_snapshots",
    "storage_api_volume_rename",
    "storage_api_local_volume_handling",
    "custom_block_volumes",
    "custom_volume_snapshot_expiry",
    "projects",
    "storage_api_project",
    "storage_volumes_all_projects",
    "storage_volume_api_filtering",
    "operation_description",
    "custom_volume_backup",
    "backup_compression_algorithm",
    "backup_override_name",
    "custom_volume_iso",
    "custom_volume_refresh",
    "certificate_update",
    "certificate_token",
    "event_lifecycle",
    "event_location",
    "event_lifecycle_requestor_address",
    "event_project",
    "lxflex_storage_check",  # lxflex's own: /1.0/storage-pools/{pool}/check
    "lxflex_attachments",  # lxflex's own: .../volumes/custom/{volume}/attachments
]


def describe(exc: BaseException) -> str:
    """The text a client sees for an error of an operation or request."""
    if isinstance(exc, ApiError | DriverError | ConfigError):
        return str(exc)
    log.error("unexpected error", exc_info=exc)
    return "internal error (a bug in lxflexd; see its log)"


def _status(exc: BaseException) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, ConfigError):
        return 400
    if isinstance(exc, DriverError):
        return exc.status
    return 500


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "OPTIONS":
        return web.Response(status=200)  # as LXD: an empty 200 on any path (CORS preflight)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status == 404 and exc.reason == "Not Found":
            return error(404, "not found")
        if exc.status == 405:
            return error(501, "not implemented")  # LXD's answer to a method a path lacks
        if exc.status == 413:
            return error(413, "request body too large")
        if exc.status >= 400:  # every error a client sees is an LXD envelope
            return error(exc.status, exc.reason.lower())
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:  # rendered for the client; unexpected ones logged
        return error(_status(exc), describe(exc))


def _untrusted_info() -> dict[str, Any]:
    return {
        "api_extensions": API_EXTENSIONS,
        "api_status": "stable",
        "api_version": "1.0",
        "auth": "untrusted",
        "public": False,
        "auth_methods": ["tls"],
    }


def server_info(app: web.Application, config: dict[str, str]) -> dict[str, Any]:
    name = app[SERVER_NAME]
    https = app[HTTPS]
    certificate, fingerprint = https.certificate()
    return {
        **_untrusted_info(),
        "config": config,
        "auth": "trusted",
        "environment": {
            "addresses": https.addresses(),
            "architectures": [platform.machine()],
            "certificate": certificate,
            "certificate_fingerprint": fingerprint,
            "driver": "",
            "driver_version": "",
            "firewall": "",
            "kernel": platform.system(),
            "kernel_architecture": platform.machine(),
            "kernel_features": {},
            "kernel_version": platform.release(),
            "lxc_features": {},
            "os_name": "lxflex",
            "os_version": __version__,
            "project": "default",
            "server": "lxd",
            "server_clustered": app[STORAGE].cluster.clustered,
            "server_event_mode": "full-mesh",
            "server_name": name,
            "server_pid": os.getpid(),
            "server_version": "5.0.2",
            "storage": "powerflex",
            "storage_version": __version__,
            "storage_supported_drivers": [
                {"Name": "powerflex", "Version": __version__, "Remote": True}
            ],
        },
    }


async def root(request: web.Request) -> web.Response:
    return sync(["/1.0"])


async def api_get(request: web.Request) -> web.Response:
    if not request[TRUSTED]:
        return sync(_untrusted_info())
    config = await request.app[STORAGE].trust.config()
    return sync(server_info(request.app, config), etag_value=etag(config))


async def api_update(request: web.Request) -> web.Response:
    """PUT replaces the server config, PATCH merges into it; HTTPS follows at once."""
    trust = request.app[STORAGE].trust
    current = await trust.config()
    check_etag(request, etag(current))
    doc = await json_body(request)
    given = doc.get("config") or {}
    if not isinstance(given, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in given.items()
    ):
        raise ApiError(400, "config must be an object of string values")
    wanted = check_server_config({**current, **given} if request.method == "PATCH" else dict(given))
    https = request.app[HTTPS]
    address = wanted.get("core.https_address", "")
    if address != current.get("core.https_address", "") and https.fixed_address is None:
        await https.apply(address)  # refused addresses change nothing
    await trust.set_config(wanted)
    return empty()


def _op(request: web.Request) -> Operation:
    op = request.app[OPS].get(request.match_info["id"])
    if op is None:
        raise ApiError(404, "Operation not found")
    return op


async def operations_get(request: web.Request) -> web.Response:
    """This member's operations, and in a cluster every other member's."""
    ops = request.app[OPS].all()
    grouped: dict[str, list[Any]] = {}
    recursive = request.query.get("recursion", "0") != "0"
    for op in ops:
        rendered = op.render()
        grouped.setdefault(rendered["status"].lower(), []).append(
            rendered if recursive else f"/1.0/operations/{op.id}"
        )
    for state, entries in (await others_operations(request, recursive)).items():
        grouped.setdefault(state, []).extend(entries)
    return sync(grouped)


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _own(handler: _Handler) -> _Handler:
    """An operation's handler, for this member's operations or, found elsewhere, for
    another member's (forwarded)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        if request.app[OPS].get(request.match_info["id"]) is None:
            found = await operation_elsewhere(request)
            if found is not None:
                return found
        return await handler(request)

    return wrapped


async def operation_get(request: web.Request) -> web.Response:
    return sync(_op(request).render())


async def operation_delete(request: web.Request) -> web.Response:
    op = _op(request)
    if not op.may_cancel or op.final:
        raise ApiError(400, "This operation can't be cancelled")
    request.app[OPS].cancel(op)
    return empty()


async def operation_wait(request: web.Request) -> web.Response:
    op = _op(request)
    try:
        timeout = float(request.query.get("timeout", "-1"))
    except ValueError:
        raise ApiError(400, "timeout must be a number of seconds") from None
    if not op.final:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(op.done.wait(), None if timeout < 0 else timeout)
    return sync(op.render())


def build_app(
    storage: Storage,
    *,
    server_name: str | None = None,
    state_dir: Path | None = None,
    https_address: str | None = None,
) -> web.Application:
    """The API; ``state_dir`` holds the server certificate (none without it), and
    ``https_address`` fixes the HTTPS address whatever ``core.https_address`` says."""
    app = web.Application(
        middlewares=[error_middleware, trust_middleware, forward_middleware, project_middleware],
        client_max_size=64 * 1024**2,
    )
    app[SERVER_NAME] = storage.cluster.name or server_name or socket.gethostname()
    served = "cluster" if storage.cluster.clustered else "server"  # what clients pin
    app[HTTPS] = Https(state_dir, fixed_address=https_address, served=served)
    hub = EventHub(storage.cluster.name or "none")
    app[FORWARDER] = Forwarder(state_dir)
    storage.pools.events.subscribe(
        lambda event: hub.publish(
            "lifecycle", render.lifecycle(event, REQUESTOR.get()), event.project
        )
    )
    app[STORAGE] = storage
    app[OPS] = Operations(hub, describe=describe)
    r = app.router
    r.add_get("/", root)
    r.add_get("/1.0", api_get)
    r.add_put("/1.0", api_update)
    r.add_patch("/1.0", api_update)
    r.add_get("/1.0/events", hub.handle)
    r.add_get("/1.0/operations", operations_get)
    r.add_get("/1.0/operations/{id}", _own(operation_get))
    r.add_delete("/1.0/operations/{id}", _own(operation_delete))
    r.add_get("/1.0/operations/{id}/wait", _own(operation_wait))
    storage_routes.add_routes(app)
    backup_routes.add_routes(app)
    trust_routes.add_routes(app)
    project_routes.add_routes(app)
    cluster_routes.add_routes(app)
    join_routes.add_routes(app)
    attachment_routes.add_routes(app)

    relay = EventRelay(hub, storage.cluster) if storage.cluster.clustered else None

    async def on_startup(app: web.Application) -> None:
        if relay is not None:
            relay.start()
        forwarder = LogForwarder(hub, asyncio.get_running_loop())
        logging.getLogger("lxflex").addHandler(forwarder)
        app[_FORWARDER] = forwarder

    async def on_shutdown(app: web.Application) -> None:
        logging.getLogger("lxflex").removeHandler(app[_FORWARDER])
        await app[HTTPS].close()
        await app[FORWARDER].close()
        if relay is not None:
            await relay.close()
        await hub.close()
        await app[OPS].close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app
