"""The async PowerFlex gateway client.

Theory of operation
-------------------
:class:`PowerFlexClient` turns :mod:`.protocol` calls into HTTP exchanges through a
:class:`~.transport.Transport`. It owns three concerns:

* **Login, once.** The first call detects the gateway generation (``GET /api/version``;
  when that needs credentials, the 4.x login is tried and the 3.x login used where the
  gateway has no 4.x endpoint) and logs in. Concurrent callers wait for that single login
  instead of each logging in (single flight). A 401 on any call triggers one re-login
  (again shared: callers whose token was already replaced just retry) and one retry of
  the call; a second 401 is an :class:`AuthenticationError`. The body of a 401 is never
  trusted to be JSON.
* **Retries.** Idempotent calls (reads, and actions such as unmap and remove whose repetition
  changes nothing) are retried after transport failures and transient error answers (see
  :meth:`RetryPolicy.transient`), with the delays of the :class:`RetryPolicy` given at
  construction; an action's "already done" answer to a retry (not mapped, no such volume)
  is its success. Other calls are sent once: a create that timed out may have happened,
  and only the caller can check.
* **Errors.** Non-2xx answers become the typed errors of :mod:`.errors`; answers that do
  not parse become :class:`ProtocolError`.

The client is safe for concurrent use by many tasks of one event loop. ``close()`` logs
out and closes the connection pool; the client is also an async context manager.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import msgspec

from ..secret import Secret
from . import protocol as p
from .auth import (
    Credentials,
    Generation,
    Token,
    authorization,
    generation_of,
    login_request,
    parse_login,
)
from .errors import (
    AuthenticationError,
    GatewayError,
    ProtocolError,
    TransportError,
    error_from_response,
)
from .models import (
    Host,
    HostType,
    PoolStatistics,
    ProtectionDomain,
    RemoveMode,
    Sdt,
    SnapshotDef,
    SnapshotResult,
    StoragePool,
    System,
    Volume,
)
from .policy import RetryPolicy, Timeouts, TlsPolicy, parse_gateway
from .transport import DEFAULT_CONNECTIONS, AiohttpTransport, HttpRequest, HttpResponse, Transport

__all__ = ["PowerFlexClient"]

log = logging.getLogger("lxflex.powerflex")

T = TypeVar("T")

_JSON = "application/json"


def _decode_json(response: HttpResponse) -> Any:
    if not response.body.strip():
        return None
    return msgspec.json.decode(response.body)


class PowerFlexClient:
    """An authenticated, pooled connection to one PowerFlex gateway.

    Args:
        gateway: ``host``, ``host:port`` or an ``http(s)://`` URL.
        username: the gateway user (needs the SystemAdmin role for the driver).
        password: the password, as a :class:`Secret`.
        tls: certificate verification; on by default.
        retry: how idempotent calls are retried.
        timeouts: connection and request timeouts.
        connections: the most requests in flight at once; more wait their turn.
        transport: replaces the aiohttp transport (tests).
    """

    def __init__(
        self,
        gateway: str,
        username: str,
        password: Secret,
        *,
        tls: TlsPolicy | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        connections: int = DEFAULT_CONNECTIONS,
        transport: Transport | None = None,
    ) -> None:
        self._gateway = parse_gateway(gateway)
        self._creds = Credentials(username, password)
        self._retry = retry or RetryPolicy()
        self._transport: Transport = transport or AiohttpTransport(
            self._gateway, tls=tls, timeouts=timeouts, limit=connections
        )
        self._token: Token | None = None
        self._version: str | None = None
        self._generation: Generation | None = None
        self._logins = 0
        self._login_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PowerFlexClient({self._gateway.url!r}, user={self._creds.username!r})"

    async def __aenter__(self) -> PowerFlexClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- plumbing ---------------------------------------------------------------------

    @property
    def logins(self) -> int:
        """How many logins this client has made (for diagnostics and benchmarks)."""
        return self._logins

    async def _send(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        try:
            response = await self._transport.send(request)
        except TransportError as exc:
            log.debug("%s %s failed: %s", request.method, request.path, exc.reason)
            raise
        log.debug(
            "%s %s -> %d in %.1f ms",
            request.method,
            request.path,
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response

    def _request(self, method: str, path: str, body: Any, token: Token | None) -> HttpRequest:
        headers = {"Accept": _JSON}
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = _JSON
            data = msgspec.json.encode(body)
        elif method == "POST":
            headers["Content-Type"] = _JSON
            data = b"{}"
        if token is not None:
            headers["Authorization"] = authorization(token, self._creds.username)
        return HttpRequest(method, path, headers, data)

    async def _login_with(self, generation: Generation) -> Token:
        response = await self._send(login_request(generation, self._creds))
        self._logins += 1
        return parse_login(generation, response, self._logins)

    async def _detect_and_login(self) -> Token:
        """Learn the gateway version and log in, with as few exchanges as possible."""
        response = await self._send(self._request("GET", "/api/version", None, None))
        token: Token | None = None
        if response.status in (401, 403):
            # The version needs credentials: try the 4.x login, fall back to 3.x's.
            first = await self._send(login_request(Generation.V4, self._creds))
            if first.status in (404, 405, 501):
                token = await self._login_with(Generation.V3)
            else:
                self._logins += 1
                token = parse_login(Generation.V4, first, self._logins)
            response = await self._send(self._request("GET", "/api/version", None, token))
        if response.status != 200:
            raise self._error("GET", "/api/version", response)
        try:
            version = p.version().parse(_decode_json(response))
        except (ValueError, TypeError) as exc:
            raise ProtocolError("GET", "/api/version", str(exc)) from None
        self._version = version.strip()
        self._generation = generation_of(self._version)
        if token is None or token.generation is not self._generation:
            token = await self._login_with(self._generation)
        log.info(
            "gateway %s: API version %s (%s login)",
            self._gateway.url,
            self._version,
            self._generation.value,
        )
        return token

    async def _retrying(self, login: Callable[[], Awaitable[Token]]) -> Token:
        """Run a login, retried like an idempotent call after transient failures."""
        delays = self._retry.delays()
        while True:
            try:
                return await login()
            except (TransportError, GatewayError) as exc:
                transient = (
                    isinstance(exc, TransportError) or exc.http_status in self._retry.statuses
                )
                delay = next(delays, None) if transient else None
                if delay is None:
                    raise
                log.debug("login failed (%s), retrying", exc)
                await asyncio.sleep(delay)

    async def _ensure_token(self) -> Token:
        token = self._token
        if token is not None:
            return token
        async with self._login_lock:
            if self._token is None:
                self._token = await self._retrying(self._detect_and_login)
            return self._token

    async def _relogin(self, stale: Token) -> Token:
        """Replace ``stale`` unless another task already did; all callers share one login."""
        async with self._login_lock:
            current = self._token
            if current is not None and current.serial != stale.serial:
                return current
            log.debug("token rejected, logging in again")
            self._token = await self._retrying(lambda: self._login_with(stale.generation))
            return self._token

    def _error(self, method: str, path: str, response: HttpResponse) -> GatewayError:
        body: Any = None
        if "json" in response.content_type:
            try:
                body = _decode_json(response)
            except ValueError:
                body = None
        return error_from_response(response.status, body, method=method, path=path)

    async def call(self, call: p.Call[T]) -> T:
        """Send one gateway call and return its parsed answer.

        Raises the typed errors of :mod:`lxflex.powerflex.errors`.
        """
        token = await self._ensure_token()
        delays = self._retry.delays() if call.idempotent else iter(())
        relogged = False
        retried = False  # an earlier attempt may have done the work unseen
        while True:
            request = self._request(call.method, call.path, call.body, token)
            try:
                response = await self._send(request)
            except TransportError:
                delay = next(delays, None)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                retried = True
                continue
            if response.status == 401:
                if relogged:
                    raise AuthenticationError(401, "the gateway rejected a fresh token")
                token = await self._relogin(token)
                relogged = True
                continue
            if not 200 <= response.status < 300:
                error = self._error(call.method, call.path, response)
                if retried and error.error_code in call.settled:
                    log.debug("%s %s: done by an earlier attempt", call.method, call.path)
                    return call.parse(None)
                delay = (
                    next(delays, None)
                    if self._retry.transient(error.http_status, error.error_code)
                    else None
                )
                if delay is None:
                    raise error
                log.debug("%s %s: HTTP %d, retrying", call.method, call.path, response.status)
                await asyncio.sleep(delay)
                retried = True
                continue
            try:
                return call.parse(_decode_json(response))
            except (ValueError, TypeError, msgspec.ValidationError) as exc:
                raise ProtocolError(call.method, call.path, str(exc)) from None

    async def close(self) -> None:
        """Log out (best effort) and close the connection pool. Idempotent."""
        token, self._token = self._token, None
        try:
            if token is not None:
                await self._logout(token)
        finally:
            await self._transport.close()

    async def _logout(self, token: Token) -> None:
        if token.generation is Generation.V4:
            if token.refresh is None:
                return
            call = p.logout_v4(token.refresh.reveal())
        else:
            call = p.logout_v3()
        try:
            await self._send(self._request(call.method, call.path, call.body, token))
        except TransportError as exc:
            log.debug("logout failed: %s", exc.reason)

    # --- system -----------------------------------------------------------------------

    async def api_version(self) -> str:
        """The gateway's API version string, e.g. ``"4.5"``."""
        await self._ensure_token()
        return self._version or ""

    async def generation(self) -> Generation:
        return (await self._ensure_token()).generation

    async def system(self) -> System:
        systems = await self.call(p.systems())
        if not systems:
            raise ProtocolError("GET", "/api/types/System/instances", "no system listed")
        return systems[0]

    # --- protection domains and pools ---------------------------------------------------

    async def protection_domain(self, pd_id: str) -> ProtectionDomain:
        return await self.call(p.protection_domain(pd_id))

    async def protection_domain_by_name(self, name: str) -> ProtectionDomain:
        """Raises ProtectionDomainNotFoundError (142) for an unknown name."""
        return await self.protection_domain(await self.call(p.protection_domain_id(name)))

    async def storage_pool(self, pool_id: str) -> StoragePool:
        return await self.call(p.storage_pool(pool_id))

    async def storage_pool_by_name(self, name: str, pd_id: str) -> StoragePool:
        """Raises StoragePoolNotFoundError (171) for an unknown name in the domain."""
        return await self.storage_pool(await self.call(p.storage_pool_id(name, pd_id)))

    async def storage_pools(self, pd_id: str) -> list[StoragePool]:
        return await self.call(p.storage_pools(pd_id))

    async def pool_statistics(self, pool_id: str) -> PoolStatistics:
        return await self.call(p.pool_statistics(pool_id))

    async def sdts(self, pd_id: str) -> list[Sdt]:
        """The NVMe/TCP targets of a protection domain."""
        return await self.call(p.sdts(pd_id))

    # --- volumes ----------------------------------------------------------------------

    async def create_volume(
        self, pool_id: str, size_bytes: int, name: str | None = None, *, thin: bool = True
    ) -> str:
        """Create a volume and return its ID. Not retried (a retry could create two)."""
        return await self.call(p.create_volume(pool_id, size_bytes, name, thin=thin))

    async def volume(self, volume_id: str) -> Volume:
        return await self.call(p.volume(volume_id))

    async def volume_id(self, name: str) -> str:
        """Raises VolumeNotFoundError (79) for an unknown name."""
        return await self.call(p.volume_id(name))

    async def volumes(self, ids: Iterable[str]) -> list[Volume]:
        wanted = list(ids)
        if not wanted:
            return []
        return await self.call(p.volumes_by_ids(wanted))

    async def pool_volumes(self, pool_id: str) -> list[Volume]:
        """Every volume and snapshot of a storage pool."""
        return await self.call(p.pool_volumes(pool_id))

    async def vtree_volumes(self, vtree_id: str) -> list[Volume]:
        return await self.call(p.vtree_volumes(vtree_id))

    async def vtree_snapshot_count(self, vtree_id: str) -> int:
        """How many snapshots the VTree holds, counted against the per-VTree limit."""
        return sum(1 for v in await self.vtree_volumes(vtree_id) if v.is_snapshot)

    async def rename_volume(self, volume_id: str, new_name: str) -> None:
        await self.call(p.rename_volume(volume_id, new_name))

    async def set_volume_size(self, volume_id: str, size_bytes: int) -> None:
        """Grow a volume; ``size_bytes`` must be a whole number of GiB in the granularity."""
        await self.call(p.set_volume_size(volume_id, size_bytes))

    async def remove_volume(self, volume_id: str, mode: RemoveMode = RemoveMode.ONLY_ME) -> None:
        await self.call(p.remove_volume(volume_id, mode))

    async def snapshot_volumes(
        self, defs: Iterable[SnapshotDef], *, read_only: bool = False
    ) -> SnapshotResult:
        """Snapshot several volumes consistently; IDs come back in the order of ``defs``."""
        return await self.call(p.snapshot_volumes(defs, read_only=read_only))

    async def create_snapshot(self, system_id: str, defs: Iterable[SnapshotDef]) -> SnapshotResult:
        """PowerFlex 5's form of :meth:`snapshot_volumes` (createSnapshot)."""
        return await self.call(p.create_snapshot(system_id, defs))

    async def create_thin_clone(
        self, system_id: str, defs: Iterable[SnapshotDef]
    ) -> SnapshotResult:
        """PowerFlex 5: thin clones of volumes or snapshots, in their sources' VTrees."""
        return await self.call(p.create_thin_clone(system_id, defs))

    async def refresh_volume(self, target_id: str, source_id: str) -> None:
        """PowerFlex 5: give ``target_id`` the content of ``source_id`` (same VTree)."""
        await self.call(p.refresh_volume(target_id, source_id))

    async def overwrite_volume_content(self, target_id: str, source_id: str) -> None:
        """Replace ``target_id``'s content with ``source_id``'s (same VTree only)."""
        await self.call(p.overwrite_volume_content(target_id, source_id))

    # --- mappings ---------------------------------------------------------------------

    async def map_host(self, volume_id: str, host_id: str, *, allow_multiple: bool = False) -> None:
        """Map a volume to an NVMe host or SDC by ID (addMappedHost)."""
        await self.call(p.add_mapped_host(volume_id, host_id, allow_multiple=allow_multiple))

    async def unmap_host(self, volume_id: str, host_id: str | None = None) -> None:
        """Unmap one host, or all hosts when ``host_id`` is None (removeMappedHost)."""
        await self.call(p.remove_mapped_host(volume_id, host_id))

    async def map_sdc(
        self,
        volume_id: str,
        *,
        sdc_id: str | None = None,
        guid: str | None = None,
        allow_multiple: bool = False,
    ) -> None:
        await self.call(
            p.add_mapped_sdc(volume_id, sdc_id=sdc_id, guid=guid, allow_multiple=allow_multiple)
        )

    async def unmap_sdc(
        self, volume_id: str, *, sdc_id: str | None = None, guid: str | None = None
    ) -> None:
        await self.call(p.remove_mapped_sdc(volume_id, sdc_id=sdc_id, guid=guid))

    # --- hosts ------------------------------------------------------------------------

    async def hosts(self) -> list[Host]:
        """Every SDC and NVMe host."""
        return await self.call(p.hosts())

    async def host(self, host_id: str) -> Host:
        return await self.call(p.host(host_id))

    async def create_nvme_host(self, nqn: str, name: str | None = None) -> str:
        return await self.call(p.create_nvme_host(nqn, name))

    async def nvme_host_by_nqn(self, nqn: str) -> Host | None:
        wanted = nqn.lower()
        for entry in await self.hosts():
            if entry.host_type == HostType.NVME and (entry.nqn or "").lower() == wanted:
                return entry
        return None

    async def sdc_by_guid(self, guid: str) -> Host | None:
        wanted = guid.upper()
        for entry in await self.hosts():
            if (entry.sdc_guid or "").upper() == wanted and entry.host_type != HostType.NVME:
                return entry
        return None

    async def host_volumes(self, host_id: str) -> list[Volume]:
        """The volumes (and snapshots) mapped to a host."""
        return await self.call(p.host_volumes(host_id))

    async def remove_host(self, host_id: str) -> None:
        await self.call(p.remove_host(host_id))
