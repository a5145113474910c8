"""Gateway authentication, without I/O.

Two generations of login exist:

* 3.x: ``GET /api/login`` with HTTP Basic ``user:password`` answers a JSON string, the
  token; later requests send Basic ``user:token``. Logout is ``GET /api/logout``.
* 4.x and 5.x: ``POST /rest/auth/login`` with ``{"username", "password"}`` answers
  ``{"access_token", "refresh_token"}``; later requests send ``Bearer access_token``.
  Logout is ``POST /rest/auth/logout`` with the refresh token (204).

The generation follows from ``GET /api/version`` (major 4 and up is the 4.x scheme). The
functions here build those requests and read their answers into a :class:`Token`; the
client decides when to call them. Credentials and tokens are :class:`~lxflex.secret.Secret`
values and appear only in the headers and body built here.
"""

from __future__ import annotations

import base64
import enum
import json
import re
from dataclasses import dataclass

from ..secret import Secret
from .errors import AuthenticationError, ProtocolError, error_from_response
from .transport import HttpRequest, HttpResponse

__all__ = [
    "Credentials",
    "Generation",
    "Token",
    "generation_of",
    "login_request",
    "parse_login",
]

_JSON = "application/json"


class Generation(enum.Enum):
    V3 = "3.x"
    V4 = "4.x+"


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: Secret


@dataclass(frozen=True, slots=True)
class Token:
    """A login's result. ``serial`` increases with every login of one client."""

    generation: Generation
    access: Secret
    refresh: Secret | None
    serial: int


_VERSION = re.compile(r"^\s*(\d+)(?:\.(\d+))?")


def version_tuple(version: str) -> tuple[int, int]:
    """``"4.5"`` → ``(4, 5)``; raise ValueError for anything without a numeric major."""
    match = _VERSION.match(version)
    if match is None:
        raise ValueError(f"not a gateway version: {version!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def generation_of(version: str) -> Generation:
    return Generation.V4 if version_tuple(version)[0] >= 4 else Generation.V3


def _basic(user: str, secret: str) -> str:
    raw = f"{user}:{secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def login_request(generation: Generation, creds: Credentials) -> HttpRequest:
    if generation is Generation.V4:
        body = json.dumps(
            {"username": creds.username, "password": creds.password.reveal()}
        ).encode()
        return HttpRequest(
            "POST",
            "/rest/auth/login",
            {"Content-Type": _JSON, "Accept": _JSON},
            body,
        )
    return HttpRequest(
        "GET",
        "/api/login",
        {"Authorization": _basic(creds.username, creds.password.reveal()), "Accept": _JSON},
    )


def parse_login(generation: Generation, response: HttpResponse, serial: int) -> Token:
    """Read a login answer.

    Raises AuthenticationError for 401/403, the typed GatewayError of any other error
    status (so 502/503/504 can be retried), and ProtocolError for a 200 without a token.
    """
    path = "/rest/auth/login" if generation is Generation.V4 else "/api/login"
    method = "POST" if generation is Generation.V4 else "GET"
    if response.status in (401, 403):
        raise AuthenticationError(response.status)
    try:
        doc = json.loads(response.body) if response.body.strip() else None
    except ValueError:
        doc = None
        if response.status == 200:
            raise ProtocolError(method, path, "login answer is not JSON") from None
    if response.status != 200:
        raise error_from_response(response.status, doc, method=method, path=path)
    if generation is Generation.V4:
        access = doc.get("access_token") if isinstance(doc, dict) else None
        refresh = doc.get("refresh_token") if isinstance(doc, dict) else None
        if not isinstance(access, str) or not access:
            raise ProtocolError(method, path, "login answer has no access_token")
        return Token(
            generation,
            Secret(access),
            Secret(refresh) if isinstance(refresh, str) and refresh else None,
            serial,
        )
    if not isinstance(doc, str) or not doc:
        raise ProtocolError(method, path, "login answer is not a token string")
    return Token(generation, Secret(doc), None, serial)


def authorization(token: Token, username: str) -> str:
    """The ``Authorization`` header value for a request made with ``token``."""
    if token.generation is Generation.V4:
        return f"Bearer {token.access.reveal()}"
    return _basic(username, token.access.reveal())
