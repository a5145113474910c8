"""The rules of the trust service that need no daemon: addresses, durations, certificates."""

from __future__ import annotations

import datetime

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lxflex.driver.config import ConfigError
from lxflex.driver.errors import InvalidRequest
from lxflex.service.trust import (
    check_entry,
    check_server_config,
    parse_address,
    parse_certificate,
    parse_expiry,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8443", ("127.0.0.1", 8443)),
        (":9443", ("", 9443)),
        ("[::1]:8443", ("::1", 8443)),
        ("192.0.2.1", ("192.0.2.1", 8443)),
        ("::1", ("::1", 8443)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_https_addresses(value: str, expected: tuple[str, int]) -> None:
    assert parse_address(value) == expected


@pytest.mark.parametrize("value", ["example.com:8443", "1.2.3.4:x", "1.2.3.4:70000", "[::1]:-1"])
def test_bad_https_addresses_name_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"core\.https_address"):
        parse_address(value)


def test_token_expiry() -> None:
    assert parse_expiry("") is None
    assert parse_expiry("90s") == datetime.timedelta(seconds=90)
    assert parse_expiry("2d") == datetime.timedelta(days=2)
    for bad in ("0h", "1y", "h", "-1h", "1.5h"):
        with pytest.raises(ConfigError, match=r"core\.remote_token_expiry"):
            parse_expiry(bad)


def test_server_config_refuses_unknown_keys_and_drops_empty_ones() -> None:
    assert check_server_config({"core.https_address": ":8443", "core.remote_token_expiry": ""}) == {
        "core.https_address": ":8443"
    }
    with pytest.raises(ConfigError, match=r"core\.trust_password"):
        check_server_config({"core.trust_password": "x"})


def test_certificates_are_checked() -> None:
    ca = trustme.CA()
    pem = ca.cert_pem.bytes().decode()
    fingerprint, normalized = parse_certificate(pem)
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert fingerprint == cert.fingerprint(hashes.SHA256()).hex()
    assert normalized.startswith("-----BEGIN CERTIFICATE-----")
    with pytest.raises(InvalidRequest, match="not a valid PEM"):
        parse_certificate("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    long_ago = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    expired = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(long_ago)
        .not_valid_after(long_ago + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(InvalidRequest, match="expired"):
        parse_certificate(expired.public_bytes(serialization.Encoding.PEM).decode())


def test_restricted_and_unknown_entries_are_refused() -> None:
    check_entry("client", False)
    check_entry("metrics", False)
    with pytest.raises(InvalidRequest, match="restricted certificates are not supported"):
        check_entry("client", True)
    with pytest.raises(InvalidRequest, match="one of client, metrics"):
        check_entry("server", False)
