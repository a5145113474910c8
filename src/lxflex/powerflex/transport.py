"""The transport seam: one HTTP exchange, nothing else.

The client builds an :class:`HttpRequest` and a :class:`Transport` turns it into an
:class:`HttpResponse`, or raises :class:`~lxflex.powerflex.errors.TransportError` when no
answer came. Tests can supply any object with the same two methods instead of a network.

:class:`AiohttpTransport` keeps a pool of keep-alive connections to one gateway. It never
logs headers or bodies; exception texts name the method and path only.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from .errors import GatewayTimeoutError, TransportError
from .policy import Gateway, Timeouts, TlsPolicy

__all__ = ["DEFAULT_CONNECTIONS", "AiohttpTransport", "HttpRequest", "HttpResponse", "Transport"]

# Requests in flight to one gateway at once; more wait for a free connection. A burst of
# 100 volume creates (a host bringing up its instances) fits in one round trip.
DEFAULT_CONNECTIONS = 128


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes | None = None

    def __repr__(self) -> str:  # headers carry credentials: never show them
        return f"HttpRequest({self.method} {self.path})"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    content_type: str
    body: bytes


class Transport(Protocol):
    async def send(self, request: HttpRequest) -> HttpResponse: ...

    async def close(self) -> None: ...


class AiohttpTransport:
    """Send requests to one gateway over a shared keep-alive connection pool.

    The session is created on first use, inside the running event loop, and closed by
    :meth:`close`. ``limit`` caps the number of simultaneous connections, hence of
    requests in flight.
    """

    def __init__(
        self,
        gateway: Gateway,
        *,
        tls: TlsPolicy | None = None,
        timeouts: Timeouts | None = None,
        limit: int = DEFAULT_CONNECTIONS,
    ) -> None:
        self._gateway = gateway
        self._tls = tls or TlsPolicy()
        self._timeouts = timeouts or Timeouts()
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        if self._gateway.scheme != "https":
            return False
        return self._tls.context()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit, ssl=self._ssl(), keepalive_timeout=30
            )
            timeout = aiohttp.ClientTimeout(
                total=self._timeouts.request, sock_connect=self._timeouts.connect
            )
            self._session = aiohttp.ClientSession(
                base_url=self._gateway.url,
                connector=connector,
                timeout=timeout,
                # The gateway sets no cookies we need; a jar would only keep state around.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )
        return self._session

    async def send(self, request: HttpRequest) -> HttpResponse:
        session = self._get_session()
        try:
            async with session.request(
                request.method,
                request.path,
                headers=dict(request.headers),
                data=request.body,
                allow_redirects=False,
            ) as response:
                body = await response.read()
                return HttpResponse(response.status, response.content_type, body)
        except TimeoutError:
            raise GatewayTimeoutError(
                request.method, request.path, f"no answer within {self._timeouts.request:g} s"
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise TransportError(
                request.method, request.path, f"TLS failure: {type(exc).__name__}: {exc}"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(
                request.method, request.path, f"{type(exc).__name__}: {exc}"
            ) from None

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            # Let the connector finish closing its TLS transports before the loop moves on.
            await asyncio.sleep(0)
        self._session = None
