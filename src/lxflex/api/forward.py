"""Requests for another cluster member (``?target=<member>``), forwarded as LXD does.

The receiving member re-issues the same method and URI (the query, ``target``
included) with the same body and headers to the member's address, over mutual TLS: it
presents its own server certificate (which the shared state records as the member's),
and it pins the cluster certificate, which every member serves. It adds
``X-LXD-forwarded-{username,protocol,address}`` so the member acts for the original
caller, then copies the status, headers and body back, streaming both ways (an export
or an import may be large). The member sees ``target`` naming itself and serves the
request.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from ..service import MemberView
from . import servercert
from .envelope import ApiError
from .events import REQUESTOR

__all__ = ["FORWARDED", "Forwarder"]

log = logging.getLogger("lxflex.api")

FORWARDED = ("X-LXD-forwarded-username", "X-LXD-forwarded-protocol", "X-LXD-forwarded-address")
# Hop by hop, or re-made by the client library for the new connection.
_DROP = {
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    *(h.lower() for h in FORWARDED),
}
_CHUNK = 256 * 1024


class Forwarder:
    """A client to the other members, with this server's certificate."""

    def __init__(self, state_dir: Path | None) -> None:
        self.state_dir = state_dir
        self._session: aiohttp.ClientSession | None = None
        self._context: ssl.SSLContext | None = None

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            if self.state_dir is None:
                raise ApiError(500, "this server has no certificate to call its peers with")
            cert, key = servercert.ensure(self.state_dir)
            cluster, _ = servercert.read(self.state_dir, "cluster")
            # Pinned: the cluster certificate is the only one accepted.
            context = ssl.create_default_context(cadata=cluster)
            context.check_hostname = False
            context.load_cert_chain(cert, key)
            self._context = context
        return self._context

    async def forward(self, request: web.Request, member: MemberView) -> web.StreamResponse:
        session = self._client()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
        requestor = REQUESTOR.get() or {}
        for header, field in zip(FORWARDED, ("username", "protocol", "address"), strict=True):
            headers[header] = requestor.get(field, "")
        url = f"https://{member.address}{request.path_qs}"
        body = request.content if request.body_exists else None
        response: web.StreamResponse | None = None
        try:
            async with session.request(
                request.method,
                url,
                headers=headers,
                data=body,
                ssl=self._tls(),
                allow_redirects=False,
            ) as answer:
                response = web.StreamResponse(status=answer.status, reason=answer.reason)
                for key, value in answer.headers.items():
                    if key.lower() not in _DROP:
                        response.headers.add(key, value)
                if answer.content_length is not None:
                    response.content_length = answer.content_length
                await response.prepare(request)
                async for chunk in answer.content.iter_chunked(_CHUNK):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
            log.warning("forwarding to member %s failed: %s", member.name, exc)
            if response is not None and response.prepared:
                raise  # the answer was under way: only cutting the connection says so
            raise ApiError(
                503, f"cannot reach cluster member {member.name!r} at {member.address}: {exc}"
            ) from None

    async def fetch(self, member: MemberView, path: str) -> tuple[int, Any]:
        """``GET path`` on the member, for this member's own use (to find or list its
        operations): the status and the decoded body; a member out of reach answers
        503 and None."""
        return await self.call(member, "GET", path)

    async def call(self, member: MemberView, method: str, path: str) -> tuple[int, Any]:
        """``method path`` on the member, for this member's own use: the status and
        the decoded body; a member out of reach answers 503 and None."""
        session = self._client()
        try:
            async with session.request(
                method,
                f"https://{member.address}{path}",
                ssl=self._tls(),
                headers={"Accept-Encoding": "identity"},
            ) as answer:
                return answer.status, await answer.json(content_type=None)
        except (aiohttp.ClientError, OSError, ssl.SSLError, ValueError) as exc:
            log.info("member %s did not answer %s %s: %s", member.name, method, path, exc)
            return 503, None

    async def run(self, member: MemberView, method: str, path: str) -> None:
        """``method path`` on the member, and its operation waited for there; raises
        ApiError with the member's error when it fails."""
        status, doc = await self.call(member, method, path)
        if status >= 400 or not isinstance(doc, dict):
            error = doc.get("error") if isinstance(doc, dict) else None
            raise ApiError(status, f"member {member.name}: {error or 'no answer'}")
        operation, _, query = str(doc.get("operation") or "").partition("?")
        while operation:
            wait = f"{operation}/wait?timeout=30&target={quote(member.name, safe='')}"
            wait += f"&{query}" if query else ""
            status, doc = await self.call(member, "GET", wait)
            op = (doc or {}).get("metadata") if status == 200 else None
            if not isinstance(op, dict):
                raise ApiError(503, f"member {member.name}: its operation went unanswered")
            if op.get("status_code", 103) >= 200:
                if op["status_code"] != 200:
                    raise ApiError(500, f"member {member.name}: {op.get('err') or 'failed'}")
                return

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
