"""HTTPS for lxflexd: TLS that takes any client certificate, in front of the same app.

Theory of operation. LXD clients present a self-signed certificate, and the trust-token
flow (``lxc remote add NAME TOKEN``) presents one the server has never seen: the server
must accept it at the handshake and decide afterwards. CPython's ``ssl`` aborts such a
handshake (it offers no verify callback), so TLS is terminated here with pyOpenSSL, whose
verify callback accepts every certificate: trust is decided per request by the app,
from the fingerprint of the certificate the connection presented.

Each accepted TCP connection gets a pyOpenSSL connection over memory BIOs; once the
handshake is done, its plaintext is handed to the aiohttp server through a socket pair,
so the app serves HTTPS exactly as it serves the unix socket. :class:`Peers` maps the
app-side transport of each pair to the TLS peer it stands for; a request on a transport
it does not know came over the unix socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from ..service.trust import fingerprint
from .peers import Peer, Peers

__all__ = ["HttpsServer"]

log = logging.getLogger("lxflex.api")

_CHUNK = 256 * 1024
_HANDSHAKE_TIMEOUT = 30.0


def _accept_any(_conn: SSL.Connection, _cert: object, _errno: int, _depth: int, _ok: int) -> bool:
    return True  # trust is the app's decision, per request, from the fingerprint


def _context(cert: Path, key: Path) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.use_certificate_chain_file(str(cert))
    ctx.use_privatekey_file(str(key))
    ctx.check_privatekey()
    ctx.set_verify(SSL.VERIFY_PEER, _accept_any)  # ask for a certificate, take any
    ctx.set_session_id(b"lxflexd")
    return ctx


class HttpsServer:
    """Serve ``protocol_factory`` (the aiohttp server) over TLS on one address."""

    def __init__(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        peers: Peers,
        cert: Path,
        key: Path,
    ) -> None:
        self._factory = protocol_factory
        self._peers = peers
        self._ctx = _context(cert, key)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; an empty host means every address. Returns the bound address."""
        self._server = await asyncio.start_server(
            self._accepted, host or None, port, reuse_address=True
        )
        bound = self._server.sockets[0].getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        log.info("serving HTTPS on %s:%d", *self.address)
        return self.address

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - a stream callback runs in a task
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, SSL.Error, TimeoutError) as exc:
            log.debug("HTTPS connection from %s ended: %r", _address(writer), exc)
        except asyncio.CancelledError:
            # Closing: ended here, since asyncio's stream callback (3.11) logs a
            # cancelled connection task as an error.
            log.debug("HTTPS connection from %s closed with the server", _address(writer))
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = SSL.Connection(self._ctx, None)
        tls.set_accept_state()
        await asyncio.wait_for(_handshake(tls, reader, writer), _HANDSHAKE_TIMEOUT)
        cert = tls.get_peer_certificate(as_cryptography=True)
        peer = Peer(
            _address(writer),
            fingerprint(cert.public_bytes(serialization.Encoding.DER)) if cert else None,
            cert.public_bytes(serialization.Encoding.PEM).decode() if cert else None,
        )
        app_side, our_side = socket.socketpair()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_accepted_socket(self._factory, app_side)
        self._peers.add(transport, peer)
        try:
            plain_reader, plain_writer = await asyncio.open_connection(sock=our_side)
            inbound = asyncio.create_task(_inbound(tls, reader, writer, plain_writer))
            outbound = asyncio.create_task(_outbound(tls, plain_reader, writer))
            try:
                done, _ = await asyncio.wait(
                    {inbound, outbound}, return_when=asyncio.FIRST_COMPLETED
                )
                if inbound in done:
                    # The client is done sending: let the app finish its answer.
                    with contextlib.suppress(OSError):
                        plain_writer.write_eof()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(outbound), 30)
            finally:
                for task in (inbound, outbound):
                    task.cancel()
                await asyncio.gather(inbound, outbound, return_exceptions=True)
                plain_writer.close()
            with contextlib.suppress(SSL.Error):
                tls.shutdown()
            _flush(tls, writer)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            self._peers.drop(transport)
            transport.close()


def _address(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def _flush(tls: SSL.Connection, writer: asyncio.StreamWriter) -> None:
    """Send what the TLS engine has produced."""
    while True:
        try:
            out = tls.bio_read(_CHUNK)
        except SSL.WantReadError:
            return
        if not out:
            return
        writer.write(out)


async def _handshake(
    tls: SSL.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while True:
        try:
            tls.do_handshake()
            break
        except SSL.WantReadError:
            _flush(tls, writer)
            await writer.drain()
            data = await reader.read(_CHUNK)
            if not data:
                raise ConnectionError("closed during the TLS handshake") from None
            tls.bio_write(data)
    _flush(tls, writer)
    await writer.drain()


async def _inbound(
    tls: SSL.Connection,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    plain: asyncio.StreamWriter,
) -> None:
    """Client to app: decrypt until the client closes or says close_notify.

    Decrypting comes first: a client may send its first request in the same segment as
    the end of its handshake, and that request is already in the TLS engine.
    """
    while True:
        while True:
            try:
                chunk = tls.recv(_CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                return
            plain.write(chunk)
        _flush(tls, writer)  # TLS 1.3 may answer (key updates)
        await plain.drain()
        await writer.drain()
        data = await reader.read(_CHUNK)
        if not data:
            return
        tls.bio_write(data)


async def _outbound(
    tls: SSL.Connection, plain: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """App to client: encrypt until the app closes the connection."""
    while True:
        data = await plain.read(_CHUNK)
        if not data:
            return
        view = memoryview(data)
        while view:
            sent = tls.send(view)
            view = view[sent:]
            _flush(tls, writer)
        await writer.drain()
