"""HTTPS with client certificates: the real lxc 5.0.2 and pylxd enrol by trust token and
work over the network; untrusted clients see only the public parts."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from .daemon import Daemon, make_client_cert, running_daemon

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("lxc") is None, reason="lxc (Debian lxd-client) not installed"),
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("lxflexd-https")) as d:
        d.lxc("config", "set", "core.https_address", "127.0.0.1:0")
        yield d


def _address(d: Daemon) -> str:
    info = json.loads(d.lxc("query", "/1.0").stdout)
    addresses = info["environment"]["addresses"]
    assert len(addresses) == 1
    return str(addresses[0])


def _token(d: Daemon, name: str) -> str:
    out = d.lxc("config", "trust", "add", "--name", name).stdout
    return out.strip().splitlines()[-1]


def _client(tmp: Path, d: Daemon) -> Daemon:
    """An lxc with its own config (and so its own client certificate), no local daemon."""
    conf = tmp / "client-conf"
    conf.mkdir()
    return Daemon(tmp / "no-daemon", conf, d.log)


def _https(
    address: str, path: str, cert: tuple[Path, Path] | None, body: Any = None
) -> tuple[int, dict[str, Any]]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the tests check who the client is, not the server
    if cert is not None:
        ctx.load_cert_chain(*cert)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"https://{address}{path}",
        data=data,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_https_address_follows_the_config_key(daemon: Daemon) -> None:
    address = _address(daemon)
    host, port = address.rsplit(":", 1)
    socket.create_connection((host, int(port)), timeout=5).close()
    daemon.lxc("config", "unset", "core.https_address")
    assert json.loads(daemon.lxc("query", "/1.0").stdout)["environment"]["addresses"] == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=5)
    bad = daemon.lxc("config", "set", "core.https_address", "nowhere:x", check=False)
    assert bad.returncode != 0
    assert "core.https_address" in bad.stderr
    daemon.lxc("config", "set", "core.https_address", "127.0.0.1:0")
    assert _address(daemon)


def test_lxc_enrols_with_a_token_and_works_remotely(daemon: Daemon, tmp_path: Path) -> None:
    token = _token(daemon, "ci-client")
    tokens = daemon.lxc("config", "trust", "list-tokens", "-f", "csv").stdout
    assert tokens.startswith("ci-client,")
    remote = _client(tmp_path, daemon)
    remote.lxc("remote", "add", "pf", token)
    assert "ci-client" not in daemon.lxc("config", "trust", "list-tokens", "-f", "csv").stdout
    trusted = daemon.lxc("config", "trust", "list", "-f", "csv").stdout
    assert "ci-client" in trusted
    pools = remote.lxc("storage", "list", "pf:", "-f", "csv").stdout
    assert pools.startswith("powerflex,powerflex,")
    remote.lxc("storage", "volume", "create", "pf:powerflex", "over-tls", "--type=block")
    remote.lxc("storage", "volume", "snapshot", "pf:powerflex", "over-tls", "s1")  # an operation
    shown = yaml.safe_load(
        remote.lxc("storage", "volume", "show", "pf:powerflex", "over-tls").stdout
    )
    assert shown["content_type"] == "block"
    info = remote.lxc("storage", "volume", "info", "pf:powerflex", "over-tls").stdout
    assert "s1" in info
    remote.lxc("storage", "volume", "delete", "pf:powerflex", "over-tls/s1")
    remote.lxc("storage", "volume", "delete", "pf:powerflex", "over-tls")
    # A token is good once.
    (tmp_path / "again").mkdir()
    again = _client(tmp_path / "again", daemon)
    used = again.lxc("remote", "add", "pf", token, check=False)
    assert used.returncode != 0
    assert "not authorized" in used.stderr
    # Removing the certificate ends the client's access.
    fingerprint = next(
        c["fingerprint"]
        for c in json.loads(daemon.lxc("query", "/1.0/certificates?recursion=1").stdout)
        if c["name"] == "ci-client"
    )
    daemon.lxc("config", "trust", "remove", fingerprint[:12])
    refused = remote.lxc("storage", "list", "pf:", check=False)
    assert refused.returncode != 0


def test_untrusted_clients_see_only_the_public_parts(daemon: Daemon, tmp_path: Path) -> None:
    address = _address(daemon)
    cert = make_client_cert(tmp_path)
    for who in (cert, None):  # an unknown certificate, and none at all
        status, doc = _https(address, "/1.0", who)
        assert status == 200
        assert doc["metadata"]["auth"] == "untrusted"
        assert "environment" not in doc["metadata"]
        assert "config" not in doc["metadata"]
        status, doc = _https(address, "/1.0/storage-pools", who)
        assert (status, doc["error"]) == (403, "not authorized")
        status, doc = _https(address, "/1.0/certificates", who, {"password": "guess"})
        assert status == 403
    assert "test-client" not in daemon.lxc("config", "trust", "list", "-f", "csv").stdout


def test_revoked_and_expired_tokens_are_refused(daemon: Daemon, tmp_path: Path) -> None:
    address = _address(daemon)
    cert = make_client_cert(tmp_path)
    revoked = _token(daemon, "revoked")
    daemon.lxc("config", "trust", "revoke-token", "revoked")
    assert _https(address, "/1.0/certificates", cert, {"password": revoked})[0] == 403
    daemon.lxc("config", "set", "core.remote_token_expiry", "1s")
    try:
        expired = _token(daemon, "expired")
        time.sleep(1.5)
        assert _https(address, "/1.0/certificates", cert, {"password": expired})[0] == 403
    finally:
        daemon.lxc("config", "unset", "core.remote_token_expiry")
    assert _https(address, "/1.0/storage-pools", cert)[0] == 403


def test_pylxd_authenticates_with_a_token(
    daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pylxd = pytest.importorskip("pylxd")
    # requests puts a CA bundle from these over the pinned certificate pylxd asks for.
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    address = _address(daemon)
    cert = make_client_cert(tmp_path)
    client = pylxd.Client(  # pinned to the server's certificate, as lxc pins it
        endpoint=f"https://{address}",
        cert=(str(cert[0]), str(cert[1])),
        verify=str(daemon.state / "server.crt"),
    )
    assert not client.trusted
    client.authenticate(_token(daemon, "pylxd-client"))
    assert client.trusted
    assert [p.name for p in client.storage_pools.all()] == ["powerflex"]
    listed = json.loads(daemon.lxc("query", "/1.0/certificates?recursion=1").stdout)
    mine = next(c for c in listed if c["name"] == "pylxd-client")
    assert mine["type"] == "client"
    assert x509.load_pem_x509_certificate(mine["certificate"].encode()) == (
        x509.load_pem_x509_certificate(cert[0].read_bytes())
    )
    daemon.lxc("config", "trust", "remove", mine["fingerprint"])
    assert _https(address, "/1.0/storage-pools", cert)[0] == 403


def test_restricted_trust_is_refused(daemon: Daemon) -> None:
    refused = daemon.lxc(
        "config",
        "trust",
        "add",
        "--name",
        "narrow",
        "--restricted",
        "--projects",
        "default",
        check=False,
    )
    assert refused.returncode != 0
    assert "restricted certificates are not supported" in refused.stderr


def test_certificate_edits_check_what_they_are_sent(daemon: Daemon, tmp_path: Path) -> None:
    crt, _ = make_client_cert(tmp_path)
    body = {"type": "client", "name": "edit-me", "certificate": crt.read_text()}
    daemon.lxc("query", "-X", "POST", "-d", json.dumps(body), "/1.0/certificates")
    listed = json.loads(daemon.lxc("query", "/1.0/certificates?recursion=1").stdout)
    fingerprint = next(c["fingerprint"] for c in listed if c["name"] == "edit-me")
    url = f"/1.0/certificates/{fingerprint}"
    try:
        for method in ("PUT", "PATCH"):
            sent = {"name": "renamed", "type": "client", "certificate": [None, None]}
            res = daemon.lxc("query", "-X", method, "-d", json.dumps(sent), url, check=False)
            assert res.returncode != 0
            assert "certificate must be PEM or base64 DER" in res.stderr
        daemon.lxc("query", "-X", "PATCH", "-d", json.dumps({"name": "renamed"}), url)
        assert json.loads(daemon.lxc("query", url).stdout)["name"] == "renamed"
    finally:
        daemon.lxc("query", "-X", "DELETE", url)
