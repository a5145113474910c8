"""The PowerFlex REST namespace of the simulator: ``/api/...`` and ``/rest/auth/...``.

Handlers parse the request, call the :class:`~lxflex.sim.model.Array` and render with
:mod:`.views`. Mutating handlers run under the simulator's mutex, save the state and let
the fabric catch up (devices appear or vanish) before they answer, so a client that sees
the answer of addMappedHost can find the device once its host is connected.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from . import errors as e
from . import views

if TYPE_CHECKING:
    from .server import Simulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SIM_KEY: web.AppKey[Simulator] = web.AppKey("simulator")

_HTML_401 = (
    "<html><head><title>401 Authorization Required</title></head>"
    "<body><center><h1>401 Authorization Required</h1></center></body></html>"
)


def sim_of(request: web.Request) -> Simulator:
    return request.app[SIM_KEY]


def ok(value: Any) -> web.Response:
    return web.json_response(value)


async def body_of(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        raise e.illegal("request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise e.illegal("request body must be a JSON object")
    return doc


def unauthorized(sim: Simulator) -> web.Response:
    if sim.array.legacy:
        return web.json_response(
            {"message": "Unauthorized", "httpStatusCode": 401, "errorCode": 0},
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="PowerFlex"'},
        )
    return web.Response(status=401, text=_HTML_401, content_type="text/html")


def _basic(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    try:
        user, _, secret = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, secret


def token_of(request: web.Request, legacy: bool) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and not legacy:
        return header[7:].strip()
    basic = _basic(request)
    return basic[1] if basic else None


# --- authentication ---------------------------------------------------------------------


async def api_login(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    basic = _basic(request)
    if basic is None or not sim.tokens.check_password(*basic):
        return unauthorized(sim)
    token, _ = sim.tokens.issue(basic[0])
    return ok(token)


async def api_logout(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    token = token_of(request, sim.array.legacy)
    if token is None or sim.tokens.validate(token) is None:
        return unauthorized(sim)
    sim.tokens.revoke(token)
    return web.Response(status=200)


async def rest_login(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    if sim.array.legacy:
        raise web.HTTPNotFound()
    doc = await body_of(request)
    user, password = doc.get("username"), doc.get("password")
    if (
        not isinstance(user, str)
        or not isinstance(password, str)
        or not sim.tokens.check_password(user, password)
    ):
        return web.json_response(
            {"error": "invalid_grant", "error_description": "Invalid user credentials"},
            status=401,
        )
    access, refresh = sim.tokens.issue(user, with_refresh=True)
    policy = sim.tokens.policy
    return ok(
        {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": int(policy.lifetime),
            "refresh_expires_in": int(policy.lifetime * 6),
            "token_type": "Bearer",
            "scope": "profile email",
        }
    )


async def rest_logout(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    if sim.array.legacy:
        raise web.HTTPNotFound()
    token = token_of(request, legacy=False)
    if token is None or sim.tokens.validate(token) is None:
        return unauthorized(sim)
    doc = await body_of(request)
    sim.tokens.revoke(token)
    refresh = doc.get("refresh_token")
    if isinstance(refresh, str):
        sim.tokens.revoke(refresh)
    return web.Response(status=204)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every ``/api`` call but login needs a valid token (Basic password or Bearer)."""
    path = request.path
    if path.startswith("/api/") and path not in ("/api/login", "/api/logout"):
        sim = sim_of(request)
        token = token_of(request, sim.array.legacy)
        if token is None or sim.tokens.validate(token) is None:
            return unauthorized(sim)
    return await handler(request)


_NVME_ONLY = (
    "/api/types/Host/",
    "/api/instances/Host::",
    "/api/types/Sdt/",
    "/api/instances/Sdt::",
    "/relationships/Sdt",
    "/action/addMappedHost",
    "/action/removeMappedHost",
)


@web.middleware
async def generation_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A 3.x gateway knows nothing of NVMe/TCP: no hosts, no SDTs, no host mappings."""
    if sim_of(request).array.legacy and any(part in request.path for part in _NVME_ONLY):
        raise web.HTTPNotFound()
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except e.SimError as err:
        sim_of(request).refusals[err.message] += 1
        return web.json_response(err.body(), status=err.http_status)


# --- reads ------------------------------------------------------------------------------


async def version(request: web.Request) -> web.StreamResponse:
    return ok(sim_of(request).array.api_version)


def _render(sim: Simulator, kind: str, obj_id: str) -> dict[str, Any]:
    a = sim.array
    if kind == "System":
        if obj_id != a.system_id:
            raise e.SimError(3, "Not found")
        return views.system(a)
    if kind == "ProtectionDomain":
        return views.protection_domain(a, obj_id)
    if kind == "StoragePool":
        return views.storage_pool(a.pool(obj_id))
    if kind == "Volume":
        return views.volume(a, a.volume(obj_id))
    if kind == "VTree":
        return views.vtree(a, a.vtree(obj_id))
    if kind in ("Sdc", "Host"):
        host = a.sdc(sdc_id=obj_id) if kind == "Sdc" else a.host(obj_id)
        if kind == "Host" and host.kind != "NVMeHost":
            raise e.not_found_host()
        return views.host(a, host)
    if kind == "Sdt":
        sdt = a.sdts.get(obj_id)
        if sdt is None:
            raise e.SimError(3, "Not found")
        return views.sdt(a, sdt)
    raise web.HTTPNotFound()


def _all_ids(sim: Simulator, kind: str) -> list[str]:
    a = sim.array
    table: dict[str, list[str]] = {
        "System": [a.system_id],
        "ProtectionDomain": list(a.pds),
        "StoragePool": list(a.pools),
        "Volume": list(a.volumes),
        "VTree": list(a.vtrees),
        "Sdc": list(a.hosts),
        "Host": [h.id for h in a.hosts.values() if h.kind == "NVMeHost"],
        "Sdt": list(a.sdts),
    }
    if kind not in table:
        raise web.HTTPNotFound()
    return table[kind]


async def list_instances(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    kind = request.match_info["kind"]
    return ok([_render(sim, kind, i) for i in _all_ids(sim, kind)])


async def get_instance(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    return ok(_render(sim, request.match_info["kind"], request.match_info["id"]))


async def relationship(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    a = sim.array
    kind, obj_id, rel = (request.match_info[k] for k in ("kind", "id", "rel"))
    _render(sim, kind, obj_id)  # 404-style errors for unknown objects first
    if kind == "StoragePool":
        pool = a.pool(obj_id)
        if rel == "Statistics":
            return ok(views.pool_statistics(a, pool))
        if rel == "Volume":
            return ok([views.volume(a, v) for v in a.volumes.values() if v.pool_id == obj_id])
        if rel == "VTree":
            return ok([views.vtree(a, t) for t in a.vtrees.values() if t.pool_id == obj_id])
    elif kind == "ProtectionDomain":
        if rel == "StoragePool":
            return ok([views.storage_pool(p) for p in a.pools.values() if p.pd_id == obj_id])
        if rel == "Sdt":
            return ok([views.sdt(a, s) for s in a.sdts.values() if s.pd_id == obj_id])
    elif kind == "VTree":
        if rel == "Volume":
            return ok([views.volume(a, v) for v in a.vtree_members(obj_id)])
        if rel == "Statistics":
            return ok(views.vtree_statistics(a, a.vtree(obj_id)))
    elif kind == "Volume" and rel == "Statistics":
        return ok(views.volume_statistics(a.volume(obj_id)))
    elif kind == "System":
        if rel == "ProtectionDomain":
            return ok([views.protection_domain(a, i) for i in a.pds])
        if rel == "Sdc":
            return ok([views.host(a, h) for h in a.hosts.values()])
    elif kind in ("Sdc", "Host") and rel == "Volume":
        return ok([views.volume(a, v) for v in a.mapped_volumes(obj_id)])
    raise web.HTTPNotFound()


async def type_action(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    a = sim.array
    kind, action = request.match_info["kind"], request.match_info["action"]
    doc = await body_of(request)
    if action == "queryIdByKey":
        name = doc.get("name")
        if not isinstance(name, str):
            raise e.illegal("name is required")
        if kind == "Volume":
            return ok(a.volume_id_by_name(name))
        if kind == "ProtectionDomain":
            return ok(a.pd_id_by_name(name))
        if kind == "StoragePool":
            pd_id = doc.get("protectionDomainId")
            if pd_id is None and "protectionDomainName" in doc:
                pd_id = a.pd_id_by_name(str(doc["protectionDomainName"]))
            return ok(a.pool_id_by_name(name, None if pd_id is None else str(pd_id)))
    elif action == "queryBySelectedIds":
        ids = doc.get("ids")
        if not isinstance(ids, list):
            raise e.illegal("ids must be a list")
        return ok([_render(sim, kind, str(i)) for i in ids])
    elif action == "querySelectedStatistics" and kind == "StoragePool":
        ids = list(a.pools) if "allIds" in doc else [str(i) for i in doc.get("ids", [])]
        return ok({i: views.pool_statistics(a, a.pool(i)) for i in ids})
    raise web.HTTPNotFound()


async def legacy_volume_by_name(request: web.Request) -> web.StreamResponse:
    name = unquote(request.match_info["name"])
    sim = sim_of(request)
    try:
        return ok(sim.array.volume_id_by_name(name))
    except e.SimError:
        raise e.SimError(3, "Not found") from None
