"""Joining a cluster with a token, as ``lxc cluster add NAME`` hands one out.

The member asked (``POST /1.0/cluster/members {"server_name": NAME}``) holds an
operation of class ``token`` whose metadata carry the name, a random secret, the
fingerprint of the certificate it serves and its cluster address; lxc prints them as one
base64 JSON token (LXD's format, so ``lxc cluster list-tokens`` and ``revoke-token``
read it). Asking again for the same name revokes the older token. A token lives in the
member that made it, as operations do: a restart of that member revokes it.

The new server (``lxflexd --join-token-file``) first fetches the certificate at the
token's address and checks its fingerprint, so the secret goes only to the member that
made the token; then it posts the name and the secret to
``/internal/cluster/accept`` over TLS, pinning that certificate and presenting its own.
The member uses the token up and answers with what makes a member: the shared
database's URL, with the password its own connections use (access to the database is
the cluster's trust). The new server keeps the URL in ``STATE_DIR/database`` (0600),
where later starts find it, and joins as any member does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import json
import logging
import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ..driver import DriverError
from ..service.trust import DEFAULT_JOIN_TOKEN_EXPIRY, fingerprint, parse_address, parse_expiry
from . import servercert
from .common import OPS, storage_of
from .envelope import ApiError, async_response, json_body, sync
from .trust import HTTPS, find_token

__all__ = ["ACCEPT", "DATABASE_FILE", "JoinError", "JoinToken", "accept_token", "add_routes"]

log = logging.getLogger("lxflex.api")

ACCEPT = "/internal/cluster/accept"
DATABASE_FILE = "database"  # in the state directory: the URL a joined member uses
_TIMEOUT = 30.0


class JoinError(Exception):
    """Joining with a token failed; the text says why (never the secret)."""


@dataclass(frozen=True)
class JoinToken:
    server_name: str
    fingerprint: str
    addresses: list[str]
    secret: str
    expires_at: str

    @staticmethod
    def decode(text: str) -> JoinToken:
        """The token as ``lxc cluster add`` prints it (base64 of JSON)."""
        text = text.strip()
        try:
            doc = json.loads(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
        except (ValueError, binascii.Error):
            raise JoinError(
                "this is not a cluster join token (lxc cluster add prints one)"
            ) from None
        fields = ("server_name", "fingerprint", "secret")
        if not isinstance(doc, dict) or not all(isinstance(doc.get(f), str) for f in fields):
            raise JoinError("the join token lacks its member name, fingerprint or secret")
        addresses = doc.get("addresses")
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise JoinError("the join token has no member addresses")
        return JoinToken(
            doc["server_name"],
            doc["fingerprint"],
            addresses,
            doc["secret"],
            str(doc.get("expires_at", "")),
        )


# --- the member that made the token ---------------------------------------------------


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def members_post(request: web.Request) -> web.Response:
    """``lxc cluster add NAME``: a join token for a server that is to be member NAME."""
    storage = storage_of(request)
    cluster = storage.cluster
    doc = await json_body(request)
    name = doc.get("server_name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "server_name is required: the name of the member to add")
    await cluster.check_new_member(name)
    assert cluster.settings is not None  # noqa: S101 - check_new_member refused otherwise
    ops = request.app[OPS]
    for op in ops.all():  # a newer token for a name revokes the older
        if op.cls == "token" and not op.final and (op.metadata or {}).get("serverName") == name:
            ops.cancel(op)
    config = await storage.trust.config()
    key = "cluster.join_token_expiry"
    expiry = parse_expiry(config.get(key, ""), key) or DEFAULT_JOIN_TOKEN_EXPIRY
    _, served = request.app[HTTPS].certificate()
    metadata: dict[str, Any] = {
        "serverName": name,
        "secret": secrets.token_hex(32),
        "fingerprint": served,
        "addresses": [cluster.settings.address],
        "expiresAt": _rfc3339(datetime.datetime.now(datetime.UTC) + expiry),
    }
    op = ops.hold(f"Join token for cluster member {name}", metadata)
    log.info("join token issued for cluster member %s", name)
    return async_response(op.render())


async def accept(request: web.Request) -> web.Response:
    """A server presenting a join token: the token used up, the database's URL given."""
    storage = storage_of(request)
    peer = request.app[HTTPS].peers.of(request.transport)
    if peer is None or peer.certificate is None:
        raise ApiError(400, "join over HTTPS, presenting this server's certificate")
    doc = await json_body(request)
    name, secret = doc.get("server_name"), doc.get("secret")
    if not isinstance(name, str) or not isinstance(secret, str):
        raise ApiError(400, "server_name and secret are required")
    op = find_token(request.app[OPS], secret, server_name=name)
    if op is None:
        log.warning("join as %s from %s refused: no valid token", name, peer.address)
        raise ApiError(403, f"no valid join token for cluster member {name!r}")
    await storage.cluster.check_new_member(name)
    request.app[OPS].cancel(op)  # a token is good once
    log.info("join token for cluster member %s used from %s", name, peer.address)
    return sync({"database": await storage.cluster.database_url()})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/1.0/cluster/members", members_post)
    app.router.add_post(ACCEPT, accept)


# --- the server that joins ------------------------------------------------------------


def _pinned(address: str, expected: str) -> ssl.SSLContext:
    """The certificate at ``address`` if its fingerprint is ``expected`` (checked before
    the secret is sent), as the one certificate a context accepts there."""
    host, port = parse_address(address)
    pem = ssl.get_server_certificate((host, port), timeout=_TIMEOUT)
    found = fingerprint(ssl.PEM_cert_to_DER_cert(pem))
    if found != expected:
        raise JoinError(
            f"{address} serves a certificate with fingerprint {found[:12]}..., not the "
            f"token's {expected[:12]}...: not the member that made the token"
        )
    context = ssl.create_default_context(cadata=pem)
    context.check_hostname = False  # pinned: that certificate and no other
    return context


async def accept_token(token: JoinToken, state_dir: Path) -> str:
    """Join with ``token`` as the server of ``state_dir``: the shared database's URL,
    also kept in ``STATE_DIR/database``. JoinError if no member of the token accepts it."""
    cert, key = await asyncio.to_thread(servercert.ensure, state_dir)
    tried: list[str] = []
    for member in token.addresses:
        try:
            context = await asyncio.to_thread(_pinned, member, token.fingerprint)
        except (OSError, ValueError, DriverError) as exc:
            tried.append(f"{member}: {exc}")
            continue
        context.load_cert_chain(cert, key)
        body = {"server_name": token.server_name, "secret": token.secret}
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_TIMEOUT)) as session,
                session.post(f"https://{member}{ACCEPT}", json=body, ssl=context) as answer,
            ):
                doc = await answer.json(content_type=None)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            tried.append(f"{member}: {exc}")
            continue
        if answer.status != 200:
            reason = doc.get("error") if isinstance(doc, dict) else None
            raise JoinError(f"{member} refused the join: {reason or answer.status}")
        url = (doc.get("metadata") or {}).get("database") if isinstance(doc, dict) else None
        if not isinstance(url, str) or not url:
            raise JoinError(f"{member} accepted the token but gave no database")
        _keep(state_dir / DATABASE_FILE, url)
        return url
    raise JoinError("no member of the join token could be reached: " + "; ".join(tried))


def _keep(path: Path, url: str) -> None:
    """Write the URL (it may hold the password) readable by its owner only."""
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(url + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
