"""Who is at the other end of an HTTPS connection, by the app-side transport of it.

Kept apart from :mod:`lxflex.api.https` so that the app, which asks on every request,
does not load the TLS stack unless HTTPS is on.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Peer", "Peers"]


@dataclass(frozen=True)
class Peer:
    """The far end of an HTTPS connection."""

    address: str
    fingerprint: str | None  # of the client certificate; None when it presented none
    certificate: str | None  # PEM


class Peers:
    """HTTPS peers by the app-side transport of their connection."""

    def __init__(self) -> None:
        self._by_transport: dict[object, Peer] = {}

    def of(self, transport: object) -> Peer | None:
        return self._by_transport.get(transport)

    def add(self, transport: object, peer: Peer) -> None:
        self._by_transport[transport] = peer

    def drop(self, transport: object) -> None:
        self._by_transport.pop(transport, None)
