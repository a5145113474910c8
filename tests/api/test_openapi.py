"""The OpenAPI description of lxflexd: it lists exactly what is served, and schemathesis,
driving a real daemon (on its embedded simulator) from it, finds no 5xx, no answer
outside LXD's envelopes, and no secret in any answer."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, settings

import lxflex.api
from lxflex.api.server import build_app

from ..compat.daemon import make_client_cert, running_daemon

SPEC = Path(lxflex.api.__file__).parent / "openapi.yaml"
SECRETS = ("Sim-Passw0rd!", "BEGIN PRIVATE KEY", "BEGIN EC PRIVATE KEY")

schema = schemathesis.openapi.from_path(SPEC)


def test_the_description_is_what_is_served() -> None:
    doc = yaml.safe_load(SPEC.read_text())
    described = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "put", "patch", "post", "delete")
    }
    app = build_app(mock.MagicMock(), server_name="x")
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert described == served


@dataclass
class Served:
    url: str
    session: requests.Session


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """lxflexd over HTTPS (fixed on loopback: a generated core.https_address cannot move
    it), with a client certificate it trusts."""
    tmp = tmp_path_factory.mktemp("lxflexd-openapi")
    with running_daemon(tmp, "--https-address", "127.0.0.1:0") as d:
        crt, key = make_client_cert(tmp)
        body = json.dumps({"type": "client", "name": "fuzz", "certificate": crt.read_text()})
        d.lxc("query", "-X", "POST", "-d", body, "/1.0/certificates")
        address = json.loads(d.lxc("query", "/1.0").stdout)["environment"]["addresses"][0]
        session = requests.Session()
        session.trust_env = False  # no CA bundle from the environment over verify=False
        session.cert = (str(crt), str(key))
        session.verify = False
        classes: Counter[str] = Counter()

        def count(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            code = response.status_code
            classes["501 (method not taken)" if code == 501 else f"{code // 100}xx"] += 1

        session.hooks["response"].append(count)
        yield Served(f"https://{address}", session)
        print(f"openapi fuzz: {sum(classes.values())} requests, {dict(sorted(classes.items()))}")


def _no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, but LXD's 501 "not implemented" for a method a path does not take (what
    schemathesis tries with TRACE and the like): that is LXD's answer, not a fault."""
    if response.status_code == 501 and b"not implemented" in response.content:
        return None
    assert response.status_code < 500, f"{response.status_code} to {case.method} {case.path}"
    return None


def _envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every answer but the export and the websocket is an LXD envelope; none holds a
    secret."""
    text = response.content.decode(errors="replace")
    for secret in SECRETS:
        assert secret not in text, f"a secret in the answer to {case.method} {case.path}"
    if case.path.endswith("/export") and response.status_code == 200:
        return None
    if response.request.method == "OPTIONS" and response.status_code == 200:
        assert response.content == b""  # LXD's empty answer
        return None
    doc = json.loads(text)
    assert doc["type"] in ("sync", "async", "error"), doc
    if doc["type"] == "error":
        assert doc["error_code"] == response.status_code
        assert doc["error"]
    return None


@pytest.mark.root
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@schema.exclude(path="/1.0/events").parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Any, served: Served) -> None:
    response = case.call(base_url=served.url, session=served.session, timeout=120, verify=False)
    case.validate_response(response, checks=[_no_server_error, _envelope])
