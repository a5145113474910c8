"""Frozen policies the client is configured with: gateway address, TLS, timeouts, retries."""

from __future__ import annotations

import random
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["Gateway", "RetryPolicy", "Timeouts", "TlsPolicy", "parse_gateway"]


@dataclass(frozen=True, slots=True)
class Gateway:
    """Where the gateway listens. ``url`` has no trailing slash and no path."""

    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_gateway(address: str) -> Gateway:
    """Read a gateway given as ``host``, ``host:port``, ``[v6]:port`` or a URL.

    Without a scheme the gateway is HTTPS on port 443. ``http://`` is accepted (the
    simulator serves plain HTTP); paths, queries and credentials in the URL are refused.
    """
    text = address.strip()
    if not text:
        raise ValueError("gateway address is empty")
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"gateway scheme must be http or https, not {parts.scheme!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("gateway address must not carry credentials")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("gateway address must not have a path, query or fragment")
    if not parts.hostname:
        raise ValueError(f"gateway address {address!r} has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"gateway address {address!r} has an invalid port") from exc
    default = 443 if parts.scheme == "https" else 80
    return Gateway(parts.scheme, parts.hostname, port or default)


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """TLS verification: on unless ``verify`` is False; ``ca_file`` adds a CA bundle."""

    verify: bool = True
    ca_file: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: ``connect`` to open a connection, ``request`` for a whole exchange."""

    connect: float = 10.0
    request: float = 120.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How idempotent calls are retried after transient failures.

    ``attempts`` counts the first try. The delay before retry *n* (1-based) is
    ``min(max_backoff, initial_backoff * multiplier**(n-1))``, scaled by a random factor in
    ``[1 - jitter, 1]`` so that many clients do not retry in step. Transient answers are
    the ``statuses`` and, with ``generic_500``, an HTTP 500 whose ``errorCode`` is 0: the
    gateway failed itself, where an MDM error code is a firm answer about the objects.
    """

    attempts: int = 4
    initial_backoff: float = 0.2
    multiplier: float = 2.0
    max_backoff: float = 3.0
    jitter: float = 0.25
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({502, 503, 504}))
    generic_500: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")

    def transient(self, http_status: int, error_code: int) -> bool:
        """Whether an error answer to an idempotent call is worth a retry."""
        if http_status in self.statuses:
            return True
        return self.generic_500 and http_status == 500 and error_code == 0

    def delays(self) -> Iterator[float]:
        """The sleeps between attempts: ``attempts - 1`` values."""
        delay = self.initial_backoff
        for _ in range(self.attempts - 1):
            capped = min(self.max_backoff, delay)
            yield capped * (1 - self.jitter * random.random())  # noqa: S311 - not crypto
            delay *= self.multiplier
