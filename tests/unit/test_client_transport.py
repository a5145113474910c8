"""The client's auth, retry and error logic against a scripted transport (the seam)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from lxflex.powerflex import (
    AuthenticationError,
    GatewayError,
    PowerFlexClient,
    ProtocolError,
    RetryPolicy,
    SnapshotDef,
    TransportError,
    VolumeNotFoundError,
)
from lxflex.powerflex.transport import HttpRequest, HttpResponse
from lxflex.secret import Secret

RETRY = RetryPolicy(attempts=3, initial_backoff=0.001, max_backoff=0.001)


def js(value: object, status: int = 200) -> HttpResponse:
    return HttpResponse(status, "application/json", json.dumps(value).encode())


class FakeGateway:
    """A 4.x gateway in miniature; ``hook`` may replace any answer."""

    def __init__(self) -> None:
        self.sent: list[HttpRequest] = []
        self.tokens = 0
        self.valid: set[str] = set()
        self.hook: Callable[[HttpRequest], HttpResponse | None] = lambda r: None
        self.closed = False
        self.delay = 0.0

    async def send(self, request: HttpRequest) -> HttpResponse:
        self.sent.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        hooked = self.hook(request)
        if hooked is not None:
            return hooked
        if request.path == "/rest/auth/login":
            self.tokens += 1
            token = f"T{self.tokens}"
            self.valid.add(token)
            return js({"access_token": token, "refresh_token": f"R{self.tokens}"})
        if request.path == "/rest/auth/logout":
            return HttpResponse(204, "", b"")
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid:
            return HttpResponse(401, "text/html", b"<html>401</html>")
        if request.path == "/api/version":
            return js("4.5")
        if request.path == "/api/instances/Volume::missing":
            return js(
                {"message": "Could not find the volume", "httpStatusCode": 500, "errorCode": 79},
                500,
            )
        return js("id-1")

    async def close(self) -> None:
        self.closed = True

    def paths(self) -> list[str]:
        return [r.path for r in self.sent]


@pytest.fixture
def gw() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def client(gw: FakeGateway) -> PowerFlexClient:
    return PowerFlexClient("gw", "admin", Secret("pw"), retry=RETRY, transport=gw)


async def test_concurrent_callers_share_one_login(gw: FakeGateway, client: PowerFlexClient) -> None:
    gw.delay = 0.01
    results = await asyncio.gather(*(client.volume_id(f"v{i}") for i in range(20)))
    assert results == ["id-1"] * 20
    assert gw.tokens == 1
    assert gw.paths().count("/rest/auth/login") == 1


async def test_detection_and_steady_state_request_count(
    gw: FakeGateway, client: PowerFlexClient
) -> None:
    await client.volume_id("a")
    assert gw.paths() == [
        "/api/version",
        "/rest/auth/login",
        "/api/version",
        "/api/types/Volume/instances/action/queryIdByKey",
    ]
    before = len(gw.sent)
    for _ in range(10):
        await client.volume_id("a")
    assert len(gw.sent) - before == 10
    assert await client.api_version() == "4.5"


@pytest.mark.parametrize("body", [b"", b"<html>expired</html>", b'{"message":"Unauthorized"}'])
async def test_expired_token_relogs_once_whatever_the_401_body(
    gw: FakeGateway, client: PowerFlexClient, body: bytes
) -> None:
    await client.volume_id("a")
    gw.valid.clear()
    gw.hook = lambda r: (
        HttpResponse(401, "text/html", body)
        if r.headers.get("Authorization") == "Bearer T1"
        else None
    )
    assert await client.volume_id("a") == "id-1"
    assert gw.tokens == 2
    assert client.logins == 2


async def test_concurrent_401s_share_one_relogin(gw: FakeGateway, client: PowerFlexClient) -> None:
    await client.volume_id("a")
    gw.valid.clear()
    gw.delay = 0.005
    await asyncio.gather(*(client.volume_id("a") for _ in range(10)))
    assert gw.tokens == 2


async def test_persistent_401_is_an_authentication_error(
    gw: FakeGateway, client: PowerFlexClient
) -> None:
    await client.volume_id("a")
    gw.hook = lambda r: HttpResponse(401, "", b"") if r.path.startswith("/api/types") else None
    with pytest.raises(AuthenticationError):
        await client.volume_id("a")


async def test_bad_credentials(gw: FakeGateway, client: PowerFlexClient) -> None:
    gw.hook = lambda r: (
        js({"error": "invalid_grant"}, 401) if r.path == "/rest/auth/login" else None
    )
    with pytest.raises(AuthenticationError) as info:
        await client.volume_id("a")
    assert "pw" not in str(info.value)


async def test_idempotent_calls_retry_on_503_and_transport_errors(
    gw: FakeGateway, client: PowerFlexClient
) -> None:
    await client.volume_id("a")
    failures = iter([HttpResponse(503, "text/html", b"busy"), "raise"])

    def hook(r: HttpRequest) -> HttpResponse | None:
        if r.path.endswith("queryIdByKey"):
            nxt = next(failures, None)
            if nxt == "raise":
                raise TransportError(r.method, r.path, "reset")
            return nxt  # type: ignore[return-value]
        return None

    gw.hook = hook
    assert await client.volume_id("a") == "id-1"
    assert gw.paths().count("/api/types/Volume/instances/action/queryIdByKey") == 4


async def test_retries_are_bounded(gw: FakeGateway, client: PowerFlexClient) -> None:
    await client.volume_id("a")
    gw.hook = lambda r: (
        HttpResponse(503, "text/html", b"") if r.path.endswith("queryIdByKey") else None
    )
    with pytest.raises(GatewayError) as info:
        await client.volume_id("a")
    assert info.value.http_status == 503
    assert gw.paths().count("/api/types/Volume/instances/action/queryIdByKey") == 1 + 3


async def test_mutations_are_not_retried(gw: FakeGateway, client: PowerFlexClient) -> None:
    await client.volume_id("a")
    gw.hook = lambda r: (
        HttpResponse(503, "text/html", b"") if r.path.endswith("instances") else None
    )
    with pytest.raises(GatewayError):
        await client.create_volume("sp", 1024**3)
    assert gw.paths().count("/api/types/Volume/instances") == 1

    def boom(r: HttpRequest) -> HttpResponse | None:
        if r.path.endswith("snapshotVolumes"):
            raise TransportError(r.method, r.path, "reset")
        return None

    gw.hook = boom
    with pytest.raises(TransportError):
        await client.snapshot_volumes([SnapshotDef("v", "s")])
    assert gw.paths().count("/api/instances/System/action/snapshotVolumes") == 1


def _mdm_error(code: int, status: int = 500) -> HttpResponse:
    body = {"message": "m", "httpStatusCode": status, "errorCode": code}
    return HttpResponse(status, "application/json", json.dumps(body).encode())


async def test_safe_actions_retry_and_a_lost_success_counts(
    gw: FakeGateway, client: PowerFlexClient
) -> None:
    """An unmap or removal whose answer was lost is retried; "not mapped" or "no such
    volume" answered to the retry means the first attempt did it."""
    await client.volume_id("a")
    for action, settled, call in (
        ("removeMappedHost", 4039, lambda: client.unmap_host("v", "h")),
        ("removeVolume", 79, lambda: client.remove_volume("v")),
        ("setVolumeSize", 133, lambda: client.set_volume_size("v", 16 * 1024**3)),
    ):
        answers = iter(["reset", _mdm_error(settled)])

        def hook(r: HttpRequest, action: str = action, answers=answers) -> HttpResponse | None:  # type: ignore[no-untyped-def]
            if not r.path.endswith(action):
                return None
            nxt = next(answers, None)
            if nxt == "reset":
                raise TransportError(r.method, r.path, "reset")
            return nxt  # type: ignore[return-value]

        gw.hook = hook
        assert await call() is None
        assert gw.paths().count(f"/api/instances/Volume::v/action/{action}") == 2, action


async def test_a_first_not_found_is_not_a_success(gw: FakeGateway, client: PowerFlexClient) -> None:
    await client.volume_id("a")
    gw.hook = lambda r: _mdm_error(79) if r.path.endswith("removeVolume") else None
    with pytest.raises(VolumeNotFoundError):
        await client.remove_volume("v")
    assert gw.paths().count("/api/instances/Volume::v/action/removeVolume") == 1


async def test_generic_500_is_transient_but_mdm_codes_are_firm(
    gw: FakeGateway, client: PowerFlexClient
) -> None:
    await client.volume_id("a")
    generic = iter([_mdm_error(0), _mdm_error(0)])
    gw.hook = lambda r: next(generic, None) if r.path.endswith("removeMappedHost") else None
    await client.unmap_host("v", "h")
    assert gw.paths().count("/api/instances/Volume::v/action/removeMappedHost") == 3
    gw.hook = lambda r: _mdm_error(104) if r.path.endswith("removeVolume") else None
    with pytest.raises(GatewayError) as info:
        await client.remove_volume("w")
    assert info.value.error_code == 104
    assert gw.paths().count("/api/instances/Volume::w/action/removeVolume") == 1


async def test_typed_errors_and_protocol_errors(gw: FakeGateway, client: PowerFlexClient) -> None:
    with pytest.raises(VolumeNotFoundError) as info:
        await client.volume("missing")
    assert info.value.error_code == 79
    assert info.value.path == "/api/instances/Volume::missing"
    gw.hook = lambda r: js({"weird": True}) if r.path == "/api/instances/Volume::x" else None
    with pytest.raises(ProtocolError):
        await client.volume("x")


async def test_close_logs_out_and_closes(gw: FakeGateway, client: PowerFlexClient) -> None:
    await client.volume_id("a")
    await client.close()
    logout = gw.sent[-1]
    assert logout.path == "/rest/auth/logout"
    assert json.loads(logout.body or b"") == {"refresh_token": "R1"}
    assert gw.closed
    await client.close()  # idempotent


async def test_legacy_gateway_detected_by_missing_rest_login(gw: FakeGateway) -> None:
    def v3(r: HttpRequest) -> HttpResponse | None:
        if r.path == "/rest/auth/login":
            return HttpResponse(404, "text/html", b"")
        if r.path == "/api/login":
            return js("LEGACY")
        if r.path == "/api/version":
            ok = r.headers.get("Authorization", "").startswith("Basic ")
            return js("3.6") if ok else HttpResponse(401, "application/json", b"{}")
        if r.path == "/api/logout":
            return HttpResponse(200, "", b"")
        return js("id-3")

    gw.hook = v3
    c = PowerFlexClient("gw", "admin", Secret("pw"), retry=RETRY, transport=gw)
    assert await c.volume_id("x") == "id-3"
    assert (await c.generation()).value == "3.x"
    assert c.logins == 1
    await c.close()
    assert gw.sent[-1].path == "/api/logout"


async def test_login_is_retried_after_transient_failures(
    gw: FakeGateway, client: PowerFlexClient
) -> None:
    failures = iter([HttpResponse(503, "text/html", b""), "raise"])

    def hook(r: HttpRequest) -> HttpResponse | None:
        if r.path == "/rest/auth/login":
            nxt = next(failures, None)
            if nxt == "raise":
                raise TransportError(r.method, r.path, "reset")
            return nxt  # type: ignore[return-value]
        return None

    gw.hook = hook
    assert await client.volume_id("a") == "id-1"
    assert gw.paths().count("/rest/auth/login") == 3
