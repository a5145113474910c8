"""The simulator as an object: configuration, lifecycle, state file, application.

Usage from tests::

    sim = Simulator(SimConfig(state_dir=tmp_path, admin_password="..."))
    url = await sim.start()          # binds 127.0.0.1 on a free port
    ...
    await sim.stop()                 # detaches every loop device it attached

State lives in ``state_dir``: ``state.json`` (the array's objects, rewritten atomically
after every change), ``volumes/<id>`` (sparse backing files), ``hosts/<name>/`` (the
emulated hosts) and ``tls/`` (a self-signed certificate when TLS is on and none is given).
Tokens are not persisted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from . import actions, control, gateway, topology
from .clock import Clock, SystemClock
from .data import DataStore
from .fabric import Fabric, FabricError, FabricHost
from .model import Array, Host
from .tokens import TokenPolicy, TokenStore

_FLUSH_SPACING = 4  # a state write waits this many times the previous one's duration

log = logging.getLogger("lxflex.sim")

DEFAULT_ADMIN_PASSWORD = "Sim-Passw0rd!"  # noqa: S105 - documented test default
API_VERSIONS = ("3.6", "4.5", "5.0")


@dataclass(frozen=True)
class SimConfig:
    state_dir: Path
    api_version: str = "4.5"
    admin_user: str = "admin"
    admin_password: str = DEFAULT_ADMIN_PASSWORD
    host: str = "127.0.0.1"
    port: int = 0
    tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    topology: Path | None = None
    token_lifetime: float | None = None
    token_idle: float | None = None
    fabric: bool = True
    by_id_dir: Path | None = None
    fabric_delay: float = 0.0  # seconds between a mapping change and the host seeing it
    # "loop": hosts see loop devices (root); "file": their links lead to the volumes'
    # backing files (no root; no partitions), for tests of block I/O.
    fabric_devices: str = "loop"

    def __repr__(self) -> str:  # the admin password stays out of reprs and logs
        return f"SimConfig(state_dir={str(self.state_dir)!r}, api_version={self.api_version!r})"


class Simulator:
    """One simulated gateway with its array and emulated hosts."""

    def __init__(self, config: SimConfig, clock: Clock | None = None) -> None:
        """``clock``: the time of tokens, creation times and fault latency (the system's
        unless a test gives one it moves itself)."""
        if config.api_version not in API_VERSIONS:
            raise ValueError(f"api version must be one of {', '.join(API_VERSIONS)}")
        if config.fabric_devices not in ("loop", "file"):
            raise ValueError("fabric devices are loop devices or the backing files")
        self.config = config
        self.state_dir = config.state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)  # it holds volume data: root's only
        self.data = DataStore(self.state_dir / "volumes")
        self.clock: Clock = clock or SystemClock()
        self.array = Array(config.api_version, self.data, self.clock)
        self._state_file = self.state_dir / "state.json"
        self._load_or_create()
        legacy = self.array.legacy
        policy = TokenPolicy(
            lifetime=config.token_lifetime or (8 * 3600.0 if legacy else 300.0),
            idle=config.token_idle or 600.0,
        )
        self.tokens = TokenStore({config.admin_user: config.admin_password}, policy, self.clock)
        self.counters: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()  # the gateway's errors, by message
        self.faults: list[control.Fault] = []
        self.down: str | None = None
        self.mutex = asyncio.Lock()
        self.url = ""
        self.ca_file: str | None = None
        self.fabric = Fabric(self.array, self.state_dir, "", None)
        self._runner: web.AppRunner | None = None
        self._flush: asyncio.Future[None] | None = None
        self._next_flush = 0.0  # loop time before which no write starts (see commit)
        self._settle_pending = False
        self._settling: set[asyncio.Future[None]] = set()

    # --- state ------------------------------------------------------------------------

    def _load_or_create(self) -> None:
        if self._state_file.exists():
            self.array.load_dict(json.loads(self._state_file.read_text()))
        else:
            self.array.load_topology(topology.load(self.config.topology))
            self.save()

    def save(self) -> None:
        """Write the state file now (atomically: a crash leaves the old or the new one)."""
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_bytes(self.array.encode())
        os.replace(tmp, self._state_file)

    async def commit(self) -> None:
        """Return once the state file holds every change made so far.

        Changes made while one write is pending share it (group commit), so many
        concurrent requests cost one write, not one each; no request is answered before
        its change is on disk. A write starts no sooner than four times the previous
        one's duration after it ended: under a burst, writing the whole state (which
        grows with the volumes) takes at most a fifth of the simulator's time; an
        isolated change, or a small state, is written at once.
        """
        task = self._flush
        if task is None or task.done():
            task = self._flush = asyncio.ensure_future(self._flush_soon())
        await asyncio.shield(task)

    async def _flush_soon(self) -> None:
        loop = asyncio.get_running_loop()
        # Let changes of requests in flight join this write.
        await asyncio.sleep(max(self._next_flush - loop.time(), 0))
        started = loop.time()
        self.save()
        ended = loop.time()
        self._next_flush = ended + _FLUSH_SPACING * (ended - started)

    async def reset(self) -> None:
        """Back to a fresh topology: every volume and NVMe host goes, SDCs stay."""
        async with self.mutex:
            await self.fabric.shutdown()
            for vol_id in list(self.array.volumes):
                self.data.remove(vol_id)
            self.array.clear_volumes()
            for host_id in [h.id for h in self.array.hosts.values() if h.kind == "NVMeHost"]:
                del self.array.hosts[host_id]
            self.tokens.expire_all()
            self.faults.clear()
            self.down = None
            self.save()

    def settle(self) -> None:
        """Let the fabric follow a mapping change, as the kernel does: after the gateway
        has answered, not before (devices and links appear asynchronously, as with udev).

        Changes that arrive while a run is pending join it; a host-side failure is
        logged and never fails the gateway call.
        """
        if self._settle_pending:
            return
        self._settle_pending = True
        task = asyncio.ensure_future(self._settle_later())
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle_later(self) -> None:
        await asyncio.sleep(self.config.fabric_delay)
        self._settle_pending = False  # later changes schedule another run
        try:
            await self.fabric.reconcile()
        except FabricError as exc:
            log.warning("fabric emulation: %s", exc)

    # --- application ------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[
                control.traffic_middleware,
                gateway.error_middleware,
                gateway.auth_middleware,
                gateway.generation_middleware,
            ],
            client_max_size=16 * 1024 * 1024,
        )
        app[gateway.SIM_KEY] = self
        r = app.router
        kind = "{kind:[A-Za-z]+}"
        r.add_get("/api/version", gateway.version)
        r.add_get("/api/login", gateway.api_login)
        r.add_get("/api/logout", gateway.api_logout)
        r.add_post("/rest/auth/login", gateway.rest_login)
        r.add_post("/rest/auth/logout", gateway.rest_logout)
        r.add_get("/api/types/Volume/instances/getByName::{name}", gateway.legacy_volume_by_name)
        r.add_get(f"/api/types/{kind}/instances", gateway.list_instances)
        r.add_post(f"/api/types/{kind}/instances", actions.create_instance)
        r.add_post(f"/api/types/{kind}/instances/action/{{action}}", gateway.type_action)
        r.add_post("/api/instances/System/action/{action}", actions.system_action)
        r.add_post("/api/instances/System::{id}/action/{action}", actions.system_action)
        r.add_post("/api/instances/Volume::{id}/action/{action}", actions.volume_action)
        r.add_post("/api/instances/{kind:Sdc|Host}::{id}/action/{action}", actions.host_action)
        r.add_get(f"/api/instances/{kind}::{{id}}", gateway.get_instance)
        r.add_get(f"/api/instances/{kind}::{{id}}/relationships/{{rel}}", gateway.relationship)
        control.add_routes(app)
        return app

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        cert, key = self.config.tls_cert, self.config.tls_key
        if cert is None or key is None:
            from .tls import ensure_certificate  # cryptography only when TLS is asked for

            cert, key = ensure_certificate(self.state_dir / "tls", self.config.host)
        self.ca_file = str(cert)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        return ctx

    async def start(self) -> str:
        """Serve, and return the base URL (``http(s)://host:port``)."""
        ctx = self._ssl_context()
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=ctx)
        await site.start()
        port = self._runner.addresses[0][1]
        scheme = "https" if ctx else "http"
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        self.url = f"{scheme}://{host}:{port}"
        self.fabric = Fabric(
            self.array,
            self.state_dir,
            self.url,
            self.ca_file,
            files=self.config.fabric_devices == "file",
        )
        await self.fabric.cleanup_stale()
        if self.config.fabric:
            local = next((h for h in self.array.hosts.values() if h.kind == "SdcHost"), None)
            self.fabric.add_host("local", self.config.by_id_dir, local.guid if local else None)
        log.info("PowerFlex gateway simulator (API %s) on %s", self.array.api_version, self.url)
        return self.url

    async def add_fabric_host(self, name: str, by_id: Any) -> FabricHost:
        """Add an emulated host with an SDC of its name (registered on first use)."""
        async with self.mutex:
            if name in self.fabric.hosts:
                return self.fabric.hosts[name]
            sdc = next(
                (h for h in self.array.hosts.values() if h.kind == "SdcHost" and h.name == name),
                None,
            )
            if sdc is None:  # a new host: its SDC registers with the array once
                sdc_id = self.array.new_id("sdc")
                sdc = Host(sdc_id, "SdcHost", name, guid=str(uuid.uuid4()).upper(), ip="127.0.0.1")
                self.array.hosts[sdc_id] = sdc
                self.save()
            return self.fabric.add_host(name, Path(by_id) if by_id else None, sdc.guid)

    async def stop(self) -> None:
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        await self.fabric.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def info(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "api_version": self.array.api_version,
            "system_id": self.array.system_id,
            "hosts": {n: self.fabric.describe(h) for n, h in self.fabric.hosts.items()},
        }
