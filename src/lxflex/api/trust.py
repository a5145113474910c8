"""Trust over HTTPS: the HTTPS listener, who may call what, the certificates API, tokens.

* Requests on the unix socket are trusted (file permissions guard it, as LXD's).
* Requests from a cluster member (its server certificate, as the shared state records
  it) are trusted; the member acts for the caller its X-LXD-forwarded-* headers name.
* Requests over HTTPS are trusted when the client certificate of their connection is in
  the trust store. Untrusted ones may only read ``/`` and ``/1.0`` (the short untrusted
  form), ``POST /1.0/certificates`` with a trust token and ``POST
  /internal/cluster/accept`` with a join token (:mod:`.join`); everything else is 403.
* ``lxc config trust add`` asks for a token: a held operation of class ``token`` whose
  metadata carries a random secret, this server's certificate fingerprint and its HTTPS
  addresses, from which lxc builds the token it prints. ``lxc remote add NAME TOKEN``
  then posts the token (as ``password``, or ``trust_token`` in newer clients) over a
  connection that presents the new client certificate: the token is used up and that
  certificate trusted. Tokens live in memory, as operations do; a restart revokes them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import hmac
import json
import logging
import pwd
import secrets
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..driver import InvalidRequest
from ..service.trust import Certificate, check_entry, parse_address, parse_expiry
from . import servercert
from .common import OPS, STORAGE
from .envelope import ApiError, async_response, check_etag, created, empty, etag, json_body, sync
from .events import REQUESTOR
from .forward import FORWARDED
from .operations import Operation, Operations
from .peers import Peers

__all__ = ["HTTPS", "TRUSTED", "Https", "add_routes", "find_token", "trust_middleware"]

log = logging.getLogger("lxflex.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ProtocolFactory = Callable[[], Any]

TRUSTED: web.RequestKey[bool] = web.RequestKey("trusted")  # whether the caller is
_UNTRUSTED_ALLOWED = {
    ("GET", "/"),
    ("GET", "/1.0"),
    ("POST", "/1.0/certificates"),  # with a trust token
    ("POST", "/internal/cluster/accept"),  # with a join token (see .join)
}


@dataclass
class Https:
    """The HTTPS side of the daemon: its certificate, listener and peers."""

    state_dir: Path | None
    peers: Peers = field(default_factory=Peers)
    fixed_address: str | None = None  # from lxflexd's flag: the config key does not move it
    served: str = "server"  # the certificate served: this server's, or the cluster's
    _factory: ProtocolFactory | None = None
    _server: Any = None  # an https.HttpsServer, once HTTPS is on
    _cert: tuple[str, str] | None = None  # (PEM, fingerprint)

    def certificate(self) -> tuple[str, str]:
        """The certificate served (what clients pin) as ``(PEM, fingerprint)``."""
        if self._cert is None:
            if self.state_dir is None:
                return "", ""
            self._cert = servercert.read(self.state_dir, self.served)
        return self._cert

    def addresses(self) -> list[str]:
        if self._server is None or self._server.address is None:
            return []
        host, port = self._server.address
        return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]

    async def attach(self, factory: ProtocolFactory, configured: str) -> None:
        """Serve HTTPS through ``factory`` (the aiohttp server) on the flag's address, or
        else on ``configured`` (the ``core.https_address`` key), if either is set."""
        self._factory = factory
        await self.apply(self.fixed_address if self.fixed_address is not None else configured)

    async def apply(self, address: str) -> None:
        """Listen on ``address`` (none when empty), replacing any earlier listener."""
        if self._factory is None or self.state_dir is None:
            return  # not serving (an app built without a daemon, as in some tests)
        if self._server is not None:
            await self._server.close()
            self._server = None
        if not address:
            return
        from .https import HttpsServer  # the TLS stack loads only when HTTPS is on

        host, port = parse_address(address)
        cert, key = servercert.ensure(self.state_dir, self.served)
        server = HttpsServer(self._factory, self.peers, cert, key)
        try:
            await server.start(host, port)
        except OSError as exc:
            raise InvalidRequest(f"cannot listen on {address}: {exc.strerror}") from None
        self._server = server

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None


HTTPS: web.AppKey[Https] = web.AppKey("https")


@web.middleware
async def trust_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.transport is None:  # the connection is gone: act for nobody
        raise ApiError(403, "not authorized")
    peer = request.app[HTTPS].peers.of(request.transport)
    if peer is None:
        request[TRUSTED] = True  # the unix socket
        REQUESTOR.set(
            {"username": _unix_user(request.transport), "protocol": "unix", "address": "@"}
        )
        return await handler(request)
    storage = request.app[STORAGE]
    trusted = peer.fingerprint is not None and await storage.trust.trusted(peer.fingerprint)
    if not trusted and peer.fingerprint is not None:
        member = await storage.cluster.member_with_certificate(peer.fingerprint)
        if member is not None:  # a peer, forwarding for its caller
            request[TRUSTED] = True
            REQUESTOR.set(_forwarded_for(request, member.name))
            return await handler(request)
    request[TRUSTED] = trusted
    if trusted and peer.fingerprint is not None:
        REQUESTOR.set(
            {"username": peer.fingerprint, "protocol": "tls", "address": _address(request)}
        )
    if trusted or (request.method, request.path.rstrip("/") or "/") in _UNTRUSTED_ALLOWED:
        return await handler(request)
    raise ApiError(403, "not authorized")


def _forwarded_for(request: web.Request, member: str) -> dict[str, str]:
    """Whom a member forwards for, from its X-LXD-forwarded-* headers (as LXD's)."""
    fields = dict(zip(("username", "protocol", "address"), FORWARDED, strict=True))
    found = {field: request.headers.get(header, "") for field, header in fields.items()}
    if not found["username"]:
        return {"username": member, "protocol": "cluster", "address": _address(request)}
    return found


def _unix_user(transport: asyncio.BaseTransport) -> str:
    """The user at the other end of the unix socket (SO_PEERCRED), as LXD names it."""
    sock = transport.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        uid = struct.unpack("3i", creds)[1]
        return pwd.getpwuid(uid).pw_name
    except (OSError, KeyError, AttributeError, struct.error):
        return ""


def _address(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not peer:
        return ""
    host, port = str(peer[0]), peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- certificates --------------------------------------------------------------------


def _render(cert: Certificate) -> dict[str, Any]:
    return {
        "name": cert.name,
        "type": cert.type,
        "restricted": cert.restricted,
        "projects": list(cert.projects),
        "certificate": cert.certificate,
        "fingerprint": cert.fingerprint,
    }


def _pem(value: object) -> str:
    """A certificate sent as PEM (pylxd) or as base64 of its DER form (lxc)."""
    if not isinstance(value, str):
        raise ApiError(400, "certificate must be PEM or base64 DER, as a string")
    if "BEGIN CERTIFICATE" in value:
        return value
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        der = base64.b64decode(value, validate=False)
        cert = x509.load_der_x509_certificate(der)
    except (ValueError, binascii.Error):
        raise ApiError(400, "certificate must be PEM or base64 DER") from None
    return cert.public_bytes(Encoding.PEM).decode()


def _secret_of(value: str) -> str:
    """The secret of a token as lxc prints it (base64 JSON), or the bare secret."""
    try:
        doc = json.loads(base64.b64decode(value + "=" * (-len(value) % 4)))
    except (ValueError, binascii.Error):
        return value
    secret = doc.get("secret") if isinstance(doc, dict) else None
    return secret if isinstance(secret, str) else value


def _projects(doc: dict[str, Any]) -> list[str]:
    value = doc.get("projects") or []
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ApiError(400, "projects must be a list of project names")
    return value


def find_token(ops: Operations, secret: str, server_name: str | None = None) -> Operation | None:
    """The held token operation with this secret: a trust token, or with ``server_name``
    the join token for that cluster member (neither stands for the other). An expired
    one is cancelled and not found."""
    now = datetime.datetime.now(datetime.UTC)
    for op in ops.all():
        if op.cls != "token" or op.final or not op.metadata:
            continue
        if op.metadata.get("serverName") != server_name:
            continue
        if not hmac.compare_digest(str(op.metadata.get("secret", "")), secret):
            continue
        expires = op.metadata.get("expiresAt")
        if expires and datetime.datetime.fromisoformat(expires.replace("Z", "+00:00")) < now:
            ops.cancel(op)
            return None
        return op
    return None


async def certificates_get(request: web.Request) -> web.Response:
    certs = await request.app[STORAGE].trust.certificates()
    if request.query.get("recursion", "0") != "0":
        return sync([_render(c) for c in certs])
    return sync([f"/1.0/certificates/{c.fingerprint}" for c in certs])


async def certificates_post(request: web.Request) -> web.Response:
    doc = await json_body(request)
    trust = request.app[STORAGE].trust
    https = request.app[HTTPS]
    peer = https.peers.of(request.transport)
    name = doc.get("name") or ""
    cert_type = doc.get("type") or "client"
    if not isinstance(name, str) or not isinstance(cert_type, str):
        raise ApiError(400, "name and type must be strings")
    if not request[TRUSTED]:
        # Enrolment: a valid token makes the connection's certificate trusted.
        given = doc.get("trust_token") or doc.get("password") or ""
        op = find_token(request.app[OPS], _secret_of(given)) if isinstance(given, str) else None
        if op is None or peer is None:
            raise ApiError(403, "not authorized")
        sent = doc.get("certificate")  # pylxd sends it; lxc lets the connection's count
        pem = _pem(sent) if isinstance(sent, str) and sent else peer.certificate
        if pem is None:
            raise ApiError(400, "no certificate: present one on the connection or send it")
        request.app[OPS].cancel(op)  # a token is good once
        asked = (op.metadata or {}).get("request", {})
        cert = await trust.add(
            pem,
            asked.get("name") or name,
            asked.get("type") or "client",
            restricted=bool(asked.get("restricted")),
            projects=asked.get("projects") or [],
        )
        log.info("trusted certificate %s (%s) by token", cert.fingerprint[:12], cert.name)
        return created(f"/1.0/certificates/{cert.fingerprint}")
    if doc.get("token"):
        if not https.addresses():
            raise ApiError(
                400, "cannot issue a token while HTTPS is off: set core.https_address first"
            )
        if not name:
            raise ApiError(400, "a token needs the name of the client it is for")
        check_entry(cert_type, bool(doc.get("restricted")))
        op = await _issue_token(request, doc, name, cert_type)
        return async_response(op.render())
    pem = doc.get("certificate") or (peer.certificate if peer else None)
    if not isinstance(pem, str) or not pem:
        raise ApiError(400, "certificate is required")
    cert = await trust.add(
        _pem(pem),
        name,
        cert_type,
        restricted=bool(doc.get("restricted")),
        projects=_projects(doc),
    )
    return created(f"/1.0/certificates/{cert.fingerprint}")


async def _issue_token(
    request: web.Request, doc: dict[str, Any], name: str, cert_type: str
) -> Operation:
    https = request.app[HTTPS]
    _, server_fingerprint = https.certificate()
    metadata: dict[str, Any] = {
        "request": {
            "name": name,
            "type": cert_type,
            "restricted": bool(doc.get("restricted")),
            "projects": _projects(doc),
            "token": True,
        },
        "secret": secrets.token_hex(32),
        "fingerprint": server_fingerprint,
        "addresses": https.addresses(),
    }
    config = await request.app[STORAGE].trust.config()
    expiry = parse_expiry(config.get("core.remote_token_expiry", ""))
    if expiry is not None:
        expires = datetime.datetime.now(datetime.UTC) + expiry
        metadata["expiresAt"] = expires.isoformat().replace("+00:00", "Z")
    return request.app[OPS].hold(f"Trust token for {name}", metadata)


async def certificate_get(request: web.Request) -> web.Response:
    cert = await request.app[STORAGE].trust.certificate(request.match_info["fp"])
    rendered = _render(cert)
    return sync(rendered, etag_value=etag(rendered))


async def certificate_update(request: web.Request) -> web.Response:
    trust = request.app[STORAGE].trust
    cert = await trust.certificate(request.match_info["fp"])
    check_etag(request, etag(_render(cert)))
    doc = await json_body(request)
    patch = request.method == "PATCH"
    if "certificate" in doc and doc["certificate"] and _pem(doc["certificate"]) != cert.certificate:
        raise ApiError(400, "the certificate itself cannot change; add a new one")
    name = doc.get("name", cert.name if patch else "")
    cert_type = doc.get("type", cert.type if patch else "client")
    if not isinstance(name, str) or not isinstance(cert_type, str):
        raise ApiError(400, "name and type must be strings")
    await trust.update(
        cert.fingerprint,
        name=name,
        cert_type=cert_type,
        restricted=bool(doc.get("restricted", cert.restricted if patch else False)),
        projects=_projects(doc) if "projects" in doc or not patch else list(cert.projects),
    )
    return empty()


async def certificate_delete(request: web.Request) -> web.Response:
    await request.app[STORAGE].trust.delete(request.match_info["fp"])
    return empty()


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/1.0/certificates", certificates_get)
    r.add_post("/1.0/certificates", certificates_post)
    r.add_get("/1.0/certificates/{fp}", certificate_get)
    r.add_put("/1.0/certificates/{fp}", certificate_update)
    r.add_patch("/1.0/certificates/{fp}", certificate_update)
    r.add_delete("/1.0/certificates/{fp}", certificate_delete)
