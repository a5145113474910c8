"""The simulator's control plane, under ``/_sim/`` (outside the PowerFlex namespace).

Counters, fault injection, token expiry, reset, state dump, and the fabric endpoints the
shims call. It has no authentication: the simulator is a test tool and binds loopback by
default; never expose it.

Fault injection: ``POST /_sim/faults`` with
``{"route": GLOB, "http_status": 503, "error_code": 0, "message": "...", "probability": 1.0,
"count": N, "after": M, "latency_ms": 20, "mode": "error"|"reset"}``. ``route`` matches the
counter key of a request, ``"METHOD /path/template"`` such as
``"POST /api/instances/Volume::{id}/action/removeVolume"`` (shell-style glob; ``"*"``
matches all). A fault lets the first ``after`` matching requests through, then acts on a
matching request with ``probability``, and on at most ``count`` requests when given. It
delays the request by ``latency_ms``; with ``http_status`` it then answers that error
(502/503/504 as an HTML page, others as a gateway error document with ``error_code`` and
``message``); ``mode: reset`` drops the connection instead.
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .commands import run_drvcfg, run_nvme
from .gateway import Handler, body_of, ok, sim_of

if TYPE_CHECKING:
    pass


@dataclass
class Fault:
    route: str = "*"
    http_status: int | None = None
    error_code: int = 0
    message: str = "Injected fault"
    probability: float = 1.0
    count: int | None = None
    latency_ms: float = 0.0
    mode: str = "error"
    after: int = 0

    def matches(self, key: str) -> bool:
        return fnmatch.fnmatchcase(key, self.route)

    @property
    def breaks(self) -> bool:
        """True for a failing fault; False for one that only delays."""
        return self.http_status is not None or self.mode == "reset"

    def fires(self) -> bool:
        """Whether the fault acts on this request; spends one of ``count`` if so."""
        if self.count is not None and self.count <= 0:
            return False
        if self.after > 0:
            self.after -= 1
            return False
        if random.random() >= self.probability:  # noqa: S311 - test tool, not crypto
            return False
        if self.count is not None:
            self.count -= 1
        return True


def route_key(request: web.Request) -> str:
    """``"METHOD template"`` with the type, relationship and action filled in."""
    info = request.match_info
    resource = info.route.resource
    template = resource.canonical if resource is not None else request.path
    for name in ("kind", "rel", "action"):
        if name in info:
            template = template.replace(f"{{{name}}}", info[name])
    return f"{request.method} {template}"


@web.middleware
async def traffic_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts requests, applies latency and faults, emulates a gateway that is down."""
    if request.path.startswith("/_sim/"):
        return await handler(request)
    sim = sim_of(request)
    key = route_key(request)
    sim.counters[key] += 1
    if sim.down is not None:
        return _fail(request, sim.down, 503, 0, "Service Unavailable")
    firing = [f for f in sim.faults if f.matches(key) and f.fires()]
    latency = sum(f.latency_ms for f in firing)
    if latency:
        await sim.clock.sleep(latency / 1000)
    for fault in firing:
        if fault.breaks:
            return _fail(
                request, fault.mode, fault.http_status or 500, fault.error_code, fault.message
            )
    return await handler(request)


def _fail(
    request: web.Request, mode: str, status: int, code: int, message: str
) -> web.StreamResponse:
    if mode == "reset":
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("simulated gateway connection reset")
    if status in (502, 503, 504):
        return web.Response(status=status, text=message, content_type="text/html")
    return web.json_response(
        {"message": message, "httpStatusCode": status, "errorCode": code}, status=status
    )


# --- handlers ---------------------------------------------------------------------------


async def stats(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    return ok(
        {
            "requests": dict(sim.counters),
            "total": sum(sim.counters.values()),
            "logins": sim.tokens.logins,
            "refusals": dict(sim.refusals),
        }
    )


async def stats_reset(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    sim.counters.clear()
    sim.refusals.clear()
    sim.tokens.logins = 0
    return ok({})


async def faults_get(request: web.Request) -> web.StreamResponse:
    return ok([asdict(f) for f in sim_of(request).faults])


async def faults_add(request: web.Request) -> web.StreamResponse:
    doc = await body_of(request)
    try:
        fault = Fault(**doc)
    except TypeError as exc:
        raise web.HTTPBadRequest(text=f"bad fault: {exc}") from None
    if fault.mode not in ("error", "reset"):
        raise web.HTTPBadRequest(text="mode must be error or reset")
    sim_of(request).faults.append(fault)
    return ok(asdict(fault))


async def faults_clear(request: web.Request) -> web.StreamResponse:
    sim_of(request).faults.clear()
    return ok({})


async def down(request: web.Request) -> web.StreamResponse:
    doc = await body_of(request)
    sim = sim_of(request)
    if doc.get("down", True):
        mode = str(doc.get("mode", "error"))
        if mode not in ("error", "reset"):
            raise web.HTTPBadRequest(text="mode must be error or reset")
        sim.down = mode
    else:
        sim.down = None
    return ok({"down": sim.down is not None})


async def expire_tokens(request: web.Request) -> web.StreamResponse:
    sim_of(request).tokens.expire_all()
    return ok({})


async def reset(request: web.Request) -> web.StreamResponse:
    await sim_of(request).reset()
    return ok({})


async def state(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    doc: dict[str, Any] = sim.array.to_dict()
    doc["api_version"] = sim.array.api_version
    doc["fabric"] = [sim.fabric.describe(h) for h in sim.fabric.hosts.values()]
    return ok(doc)


async def info(request: web.Request) -> web.StreamResponse:
    return ok(sim_of(request).info())


async def fabric_add_host(request: web.Request) -> web.StreamResponse:
    doc = await body_of(request)
    sim = sim_of(request)
    name = doc.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise web.HTTPBadRequest(text="name must be an identifier")
    host = await sim.add_fabric_host(name, doc.get("by_id"))
    return ok(sim.fabric.describe(host))


async def fabric_command(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    host = sim.fabric.hosts.get(request.match_info["host"])
    if host is None:
        raise web.HTTPNotFound(text="no such emulated host")
    doc = await body_of(request)
    argv = doc.get("argv")
    if not isinstance(argv, list) or not all(isinstance(x, str) for x in argv):
        raise web.HTTPBadRequest(text="argv must be a list of strings")
    async with sim.mutex:
        if request.match_info["tool"] == "nvme":
            result = await run_nvme(sim.fabric, host, argv)
        else:
            result = await run_drvcfg(sim.fabric, host, argv)
    if result.settle:
        sim.settle()
    return ok(result.as_dict())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_sim/stats", stats)
    r.add_post("/_sim/stats/reset", stats_reset)
    r.add_get("/_sim/faults", faults_get)
    r.add_post("/_sim/faults", faults_add)
    r.add_delete("/_sim/faults", faults_clear)
    r.add_post("/_sim/down", down)
    r.add_post("/_sim/tokens/expire", expire_tokens)
    r.add_post("/_sim/reset", reset)
    r.add_get("/_sim/state", state)
    r.add_get("/_sim/info", info)
    r.add_post("/_sim/fabric/hosts", fabric_add_host)
    r.add_post("/_sim/fabric/hosts/{host}/{tool:nvme|drv_cfg}", fabric_command)
