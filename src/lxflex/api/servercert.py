"""This server's certificate (``server``), and in a cluster the cluster's (``cluster``,
which every member serves): made once, by a child process.

Making it needs the ``cryptography`` package, some 17 MB once loaded; a daemon that never
serves HTTPS need not carry it, so ``ensure`` runs the generation in a short-lived child
(``python -m lxflex.api.servercert STATE_DIR``) and the daemon only reads the PEM file.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

__all__ = ["ensure", "install", "read"]


def paths(state_dir: Path, name: str = "server") -> tuple[Path, Path]:
    return state_dir / f"{name}.crt", state_dir / f"{name}.key"


def ensure(state_dir: Path, name: str = "server") -> tuple[Path, Path]:
    """``NAME.crt`` and ``NAME.key`` in ``state_dir``, made if missing."""
    cert, key = paths(state_dir, name)
    if not (cert.exists() and key.exists()):
        subprocess.run(
            [sys.executable, "-m", "lxflex.api.servercert", str(state_dir), name],
            check=True,
            timeout=120,
        )
    return cert, key


def read(state_dir: Path, name: str = "server") -> tuple[str, str]:
    """The certificate as ``(PEM, SHA-256 fingerprint of its DER form)``."""
    cert, _ = ensure(state_dir, name)
    pem = cert.read_text()
    return pem, hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def install(state_dir: Path, name: str, cert: str, key: str) -> None:
    """Make ``cert`` and ``key`` (PEM) ``NAME.crt`` and ``NAME.key``, the key readable
    by its owner only."""
    cert_path, key_path = paths(state_dir, name)
    if cert_path.exists() and key_path.exists() and cert_path.read_text() == cert:
        return
    _write_key(key_path, key.encode())
    cert_path.write_text(cert)


def _write_key(path: Path, key: bytes) -> None:
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    os.replace(partial, path)


def generate(state_dir: Path, name: str = "server") -> tuple[Path, Path]:
    """``NAME.crt`` and ``NAME.key`` in ``state_dir``, made on first use.

    Like LXD's: ECDSA P-384, self-signed, ten years, with the DNS name ``unspecified``
    (lxc sends the certificate's first DNS name as the TLS server name). The key is
    readable by its owner only.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = paths(state_dir, name)
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lxflex"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"root@{socket.gethostname()}"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("unspecified")]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA384())
    )
    _write_key(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


if __name__ == "__main__":
    generate(Path(sys.argv[1]), *sys.argv[2:3])
