"""Who may use the HTTPS API, and the server's own config keys.

The trust store holds client certificates (type ``client``, or ``metrics`` for a metrics
scraper) by SHA-256 fingerprint of their DER form, the fingerprint LXD and ``lxc`` show.
A certificate is checked here once (it must parse, be X.509, and not have expired) and
kept as PEM. Server keys follow LXD's names; only those lxflex acts on are accepted.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..driver import ConfigError, Conflict, InvalidRequest, NotFound
from ..state import Database, NameTaken
from ..state import trust as tr

__all__ = [
    "SERVER_KEYS",
    "Certificate",
    "TrustService",
    "check_entry",
    "check_server_config",
    "fingerprint",
    "parse_certificate",
]

Certificate = tr.Certificate

TYPES = ("client", "metrics")
DEFAULT_HTTPS_PORT = 8443

# Server keys: name -> what it means (the README's table of server keys is pinned to it).
SERVER_KEYS = {
    "core.https_address": "Address (host:port, [v6]:port or :port) to serve HTTPS on; "
    f"empty for none. The port defaults to {DEFAULT_HTTPS_PORT}; port 0 takes a free one.",
    "core.remote_token_expiry": "How long a trust token stays valid (e.g. 30m, 24h, 7d); "
    "empty for no expiry.",
    "cluster.join_token_expiry": "How long a cluster join token (`lxc cluster add`) stays "
    "valid (e.g. 30m, 1d); 3h when empty.",
}
DEFAULT_JOIN_TOKEN_EXPIRY = datetime.timedelta(hours=3)  # as LXD's


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def parse_certificate(pem: str) -> tuple[str, str]:
    """``(fingerprint, normalized PEM)`` of a PEM certificate, or InvalidRequest."""
    from cryptography import x509  # loaded when a certificate is added, not at start
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise InvalidRequest("the certificate is not a valid PEM X.509 certificate") from None
    if cert.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        raise InvalidRequest("the certificate has expired")
    return fingerprint(cert.public_bytes(Encoding.DER)), cert.public_bytes(Encoding.PEM).decode()


def parse_address(value: str) -> tuple[str, int]:
    """``(host, port)`` of ``core.https_address``; an empty host means every address."""
    host, sep, port_text = value.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        host, port_text = value, str(DEFAULT_HTTPS_PORT)
    host = host.strip("[]")
    try:
        port = int(port_text)
        if host:
            ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            "core.https_address", f"{value!r} is not host:port with an IP address"
        ) from None
    if not 0 <= port < 65536:  # 0: any free port (the bound one is in /1.0's addresses)
        raise ConfigError("core.https_address", f"port {port} is out of range")
    return host, port


def parse_expiry(value: str, key: str = "core.remote_token_expiry") -> datetime.timedelta | None:
    """A token expiry key's value as a duration (s, m, h, d, w suffixes)."""
    if not value:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    number, unit = value[:-1], value[-1:]
    if unit not in units or not number.isdigit() or int(number) == 0:
        raise ConfigError(key, f"{value!r} is not a duration like 24h")
    return datetime.timedelta(seconds=int(number) * units[unit])


def check_server_config(config: Mapping[str, str]) -> dict[str, str]:
    """The server keys without the empty (unset) ones, each checked; or ConfigError."""
    new = {k: v for k, v in config.items() if v != ""}
    for key, value in new.items():
        if key not in SERVER_KEYS:
            raise ConfigError(key, "is not a server key lxflex knows")
        if key == "core.https_address":
            parse_address(value)
        elif key.endswith("_token_expiry"):
            parse_expiry(value, key)
    return new


def check_entry(cert_type: str, restricted: bool) -> None:
    """What a trust store entry may be. Restricted (per-project) certificates are
    refused: lxflex has no projects to confine a client to, and an entry that looked
    restricted but was not would be a hole."""
    if cert_type not in TYPES:
        raise InvalidRequest(f"certificate type must be one of {', '.join(TYPES)}")
    if restricted:
        raise InvalidRequest(
            "restricted certificates are not supported: lxflex cannot confine a client "
            "to projects; trust it unrestricted or not at all"
        )


@dataclass
class TrustService:
    db: Database
    server_uuid: str

    async def certificates(self) -> list[Certificate]:
        async with self.db.read() as conn:
            return await tr.list_certificates(conn)

    async def certificate(self, prefix: str) -> Certificate:
        try:
            async with self.db.read() as conn:
                found = await tr.find_certificate(conn, prefix.lower())
        except tr.AmbiguousPrefix:
            raise InvalidRequest(f"more than one certificate starts with {prefix!r}") from None
        if found is None:
            raise NotFound("certificate not found")
        return found

    async def trusted(self, fp: str, *, metrics: bool = False) -> bool:
        """Whether the certificate of fingerprint ``fp`` may use the API (``metrics``: the
        metrics endpoint, which ``metrics`` certificates may use too)."""
        async with self.db.read() as conn:
            found = await tr.find_certificate(conn, fp)
        if found is None or found.fingerprint != fp:
            return False
        return found.type == "client" or (metrics and found.type == "metrics")

    async def add(
        self,
        pem: str,
        name: str,
        cert_type: str = "client",
        *,
        restricted: bool = False,
        projects: Sequence[str] = (),
    ) -> Certificate:
        check_entry(cert_type, restricted)
        fp, normalized = parse_certificate(pem)
        try:
            async with self.db.write() as conn:
                return await tr.add_certificate(
                    conn, fp, cert_type, name, normalized, restricted=restricted, projects=projects
                )
        except NameTaken:
            raise Conflict("the certificate is already trusted") from None

    async def update(
        self,
        prefix: str,
        *,
        name: str,
        cert_type: str,
        restricted: bool,
        projects: Sequence[str],
    ) -> Certificate:
        check_entry(cert_type, restricted)
        cert = await self.certificate(prefix)
        async with self.db.write() as conn:
            await tr.update_certificate(
                conn,
                cert.fingerprint,
                name=name,
                cert_type=cert_type,
                restricted=restricted,
                projects=projects,
            )
        return await self.certificate(cert.fingerprint)

    async def delete(self, prefix: str) -> None:
        cert = await self.certificate(prefix)
        async with self.db.write() as conn:
            await tr.delete_certificate(conn, cert.fingerprint)

    # --- server config ----------------------------------------------------------------

    async def config(self) -> dict[str, str]:
        async with self.db.read() as conn:
            return await tr.get_server_config(conn, self.server_uuid)

    async def set_config(self, config: Mapping[str, str]) -> dict[str, str]:
        """Replace this server's keys (empty values unset them); return the new config."""
        new = check_server_config(config)
        async with self.db.write() as conn:
            await tr.set_server_config(conn, self.server_uuid, new)
        return await self.config()
