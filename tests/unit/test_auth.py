import base64
import json

import pytest

from lxflex.powerflex.auth import (
    Credentials,
    Generation,
    authorization,
    generation_of,
    login_request,
    parse_login,
    version_tuple,
)
from lxflex.powerflex.errors import AuthenticationError, GatewayError, ProtocolError
from lxflex.powerflex.transport import HttpResponse
from lxflex.secret import Secret

CREDS = Credentials("admin", Secret("s3cret-pw"))


@pytest.mark.parametrize(
    ("version", "gen"),
    [
        ("3.6", Generation.V3),
        ("4.5", Generation.V4),
        ("5.1", Generation.V4),
        ("10.0", Generation.V4),
        ("3", Generation.V3),
    ],
)
def test_generation(version: str, gen: Generation) -> None:
    assert generation_of(version) is gen


def test_version_tuple_rejects_garbage() -> None:
    assert version_tuple("4.5.2") == (4, 5)
    with pytest.raises(ValueError, match="version"):
        version_tuple("abc")


def test_login_requests() -> None:
    v4 = login_request(Generation.V4, CREDS)
    assert (v4.method, v4.path) == ("POST", "/rest/auth/login")
    assert json.loads(v4.body or b"") == {"username": "admin", "password": "s3cret-pw"}
    assert "s3cret" not in repr(v4)
    v3 = login_request(Generation.V3, CREDS)
    assert (v3.method, v3.path) == ("GET", "/api/login")
    raw = base64.b64decode(v3.headers["Authorization"].removeprefix("Basic "))
    assert raw == b"admin:s3cret-pw"


def test_parse_login_v4_and_v3() -> None:
    body = json.dumps({"access_token": "AT", "refresh_token": "RT"}).encode()
    tok = parse_login(Generation.V4, HttpResponse(200, "application/json", body), 1)
    assert tok.access.reveal() == "AT"
    assert tok.refresh is not None
    assert authorization(tok, "admin") == "Bearer AT"
    tok3 = parse_login(Generation.V3, HttpResponse(200, "application/json", b'"TOK"'), 2)
    assert tok3.access.reveal() == "TOK"
    assert authorization(tok3, "admin") == "Basic " + base64.b64encode(b"admin:TOK").decode()


@pytest.mark.parametrize("status", [401, 403])
def test_parse_login_refused(status: int) -> None:
    with pytest.raises(AuthenticationError) as info:
        parse_login(Generation.V4, HttpResponse(status, "text/html", b"<html/>"), 1)
    assert info.value.http_status == status


def test_parse_login_gateway_errors_are_typed() -> None:
    with pytest.raises(GatewayError) as info:
        parse_login(Generation.V4, HttpResponse(503, "text/html", b"<html>busy</html>"), 1)
    assert info.value.http_status == 503


@pytest.mark.parametrize(("status", "body"), [(200, b"not json"), (200, b"{}"), (200, b'""')])
def test_parse_login_garbage(status: int, body: bytes) -> None:
    gen = Generation.V3 if body == b'""' else Generation.V4
    with pytest.raises(ProtocolError):
        parse_login(gen, HttpResponse(status, "application/json", body), 1)
