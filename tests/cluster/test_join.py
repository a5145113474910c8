"""Joining a cluster with a token: ``lxc cluster add NAME`` on a member, then the new
server started with the token and no database URL of its own."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import ssl
import stat
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import Cluster, Member

pytestmark = pytest.mark.root


def _without(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag`` and its value."""
    at = argv.index(flag)
    return argv[:at] + argv[at + 2 :]


def _fingerprint(pem: str) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def _served(member: Member) -> str:
    """The fingerprint of the certificate the member serves over HTTPS."""
    host, port = member.address.rsplit(":", 1)
    return _fingerprint(ssl.get_server_certificate((host, int(port)), timeout=30))


def _token(member: Member, name: str) -> str:
    out = member.lxc("cluster", "add", name).stdout.splitlines()
    assert out[0] == f"Member {name} join token:"
    return out[-1]


def _joiner(cluster: Cluster, name: str, token: str, tmp_path: Path) -> Member:
    path = tmp_path / f"{name}.token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    member = cluster.new_member(name, db=False)
    # The token names the member: no --cluster-name needed.
    member.argv = [*_without(member.argv, "--cluster-name"), "--join-token-file", str(path)]
    return member


def _refused(member: Member) -> str:
    """Run the member's lxflexd, which must exit with an error: its standard error."""
    done = subprocess.run(member.argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0, done.stdout + done.stderr
    assert not (member.daemon.state / "database").exists()
    return done.stderr


def _first_member(cluster: Cluster, password: str) -> Member:
    """m1, given the database (with a password) in LXFLEX_DB, not on its command line."""
    m1 = cluster.new_member("m1", db=False)
    scheme, rest = cluster.db_url.split("://", 1)
    user, at_rest = rest.split("@", 1)
    m1.env = {"LXFLEX_DB": f"{scheme}://{user}:{password}@{at_rest}"}
    m1.start()
    cluster.members.append(m1)
    return m1


@pytest.mark.members(0)
def test_a_server_joins_with_the_token_lxc_cluster_add_prints(
    cluster: Cluster, tmp_path: Path
) -> None:
    password = "dbpw-" + secrets.token_urlsafe(12)
    m1 = _first_member(cluster, password)
    cluster.make_pool(m1)
    token = _token(m1, "m2")
    secret = json.loads(base64.b64decode(token))["secret"]
    listed = m1.lxc("cluster", "list-tokens", "--format", "csv").stdout
    assert listed.startswith("m2,"), listed

    m2 = _joiner(cluster, "m2", token, tmp_path)
    m2.start()
    cluster.members.append(m2)
    for member in (m1, m2):
        table = member.lxc("cluster", "list", "--format", "csv").stdout.splitlines()
        assert [row.split(",")[0] for row in table] == ["m1", "m2"]
        assert all(",ONLINE," in row for row in table), table
    # Every member serves the cluster certificate (what a client pins), its own stays
    # for calling the others.
    served = {_served(member) for member in (m1, m2)}
    assert len(served) == 1
    for member in (m1, m2):
        pem = member.query("/1.0")["environment"]["certificate"]
        assert _fingerprint(pem) in served
        own = (member.daemon.state / "server.crt").read_text()
        assert _fingerprint(own) not in served
        key = member.daemon.state / "cluster.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # The new member serves the cluster's pools; what it makes, the others see.
    m2.lxc("storage", "volume", "create", "pf", "v1", "size=1GiB")
    assert "v1" in m1.lxc("storage", "volume", "list", "pf", "--format", "csv").stdout
    # The database (and its password) is kept for later starts, for root only.
    kept = m2.daemon.state / "database"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert password in kept.read_text()
    # Used up: no longer listed, and good for nobody else.
    assert m1.lxc("cluster", "list-tokens", "--format", "csv").stdout.strip() == ""
    again = _refused(_joiner(cluster, "m3", token, tmp_path))
    assert "no valid join token for cluster member 'm2'" in again
    # Neither the token's secret nor the database password is in a log or an argument.
    for member in (m1, m2):
        log = member.daemon.log.read_text()
        assert secret not in log
        assert password not in log
        assert member.proc is not None
        argv = Path(f"/proc/{member.proc.pid}/cmdline").read_bytes().decode()
        assert secret not in argv
        assert password not in argv

    # A restart needs neither the token nor the member flags: the kept URL serves, and
    # the shared state knows the member.
    m2.stop()
    m2.argv = _without(_without(m2.argv, "--join-token-file"), "--cluster-address")
    m2.start()
    assert "v1" in m2.lxc("storage", "volume", "list", "pf", "--format", "csv").stdout
    assert ",ONLINE," in m1.lxc("cluster", "list", "--format", "csv").stdout.splitlines()[1]


@pytest.mark.members(1)
def test_a_join_token_that_is_not_good_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    m1 = cluster.members[0]
    taken = m1.lxc("cluster", "add", "m1", check=False)
    assert taken.returncode != 0
    assert "The cluster already has a member with name: m1" in taken.stderr

    # Revoked.
    token = _token(m1, "m2")
    m1.lxc("cluster", "revoke-token", "m2")
    assert "no valid join token" in _refused(_joiner(cluster, "m2", token, tmp_path))

    # Not from the member it names: the secret is never sent.
    doc = json.loads(base64.b64decode(_token(m1, "m3")))
    doc["fingerprint"] = "0" * 64
    forged = base64.b64encode(json.dumps(doc).encode()).decode()
    said = _refused(_joiner(cluster, "m3", forged, tmp_path))
    assert "not the member that made the token" in said
    assert "m3" not in m1.daemon.log.read_text().split("join token issued for cluster member m3")[1]

    # Expired.
    m1.lxc("config", "set", "cluster.join_token_expiry", "1s")
    token = _token(m1, "m4")
    time.sleep(1.5)
    assert "no valid join token" in _refused(_joiner(cluster, "m4", token, tmp_path))
    m1.lxc("config", "unset", "cluster.join_token_expiry")

    # Not a token at all.
    assert "not a cluster join token" in _refused(_joiner(cluster, "m5", "nonsense", tmp_path))


@pytest.mark.members(1)
def test_a_server_that_is_no_member_does_not_serve_a_clusters_database(
    cluster: Cluster,
) -> None:
    stray = cluster.new_member("stray")
    stray.argv = _without(_without(stray.argv, "--cluster-name"), "--cluster-address")
    said = _refused(stray)
    assert "this database is a cluster's (members m1) and this server is none" in said, said
    assert os.path.exists(cluster.members[0].daemon.socket)
