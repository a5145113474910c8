"""The trust store and server config, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from lxflex.state import Database, NameTaken
from lxflex.state import trust as t

PEM = "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"


async def test_certificates(db: Database) -> None:
    async with db.write() as conn:
        a = await t.add_certificate(conn, "ab12" + "0" * 60, "client", "a", PEM)
        await t.add_certificate(
            conn, "ab34" + "0" * 60, "metrics", "b", PEM, restricted=True, projects=["p1", "p2"]
        )
    assert (a.name, a.restricted, a.projects) == ("a", False, ())
    assert a.created_at.tzinfo is not None
    async with db.read() as conn:
        assert [c.name for c in await t.list_certificates(conn)] == ["a", "b"]
        found = await t.find_certificate(conn, "ab34")
        assert found is not None
        assert (found.projects, found.restricted) == (("p1", "p2"), True)
        assert await t.find_certificate(conn, "ffff") is None
        assert await t.find_certificate(conn, "AB12") is None  # fingerprints are lower case
        assert await t.find_certificate(conn, "") is None
        with pytest.raises(t.AmbiguousPrefix):
            await t.find_certificate(conn, "ab")
    with pytest.raises(NameTaken):
        async with db.write() as conn:
            await t.add_certificate(conn, a.fingerprint, "client", "again", PEM)
    async with db.write() as conn:
        await t.update_certificate(
            conn, a.fingerprint, name="renamed", cert_type="client", restricted=True, projects=["x"]
        )
        await t.delete_certificate(conn, "ab34" + "0" * 60)
    async with db.read() as conn:
        (only,) = await t.list_certificates(conn)
    assert (only.name, only.restricted, only.projects) == ("renamed", True, ("x",))


async def test_server_config_own_over_shared(db: Database) -> None:
    me, other = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    async with db.write() as conn:
        await t.set_server_config(conn, "", {"core.remote_token_expiry": "1h", "k": "shared"})
        await t.set_server_config(conn, me, {"k": "mine"})
        await t.set_server_config(conn, other, {"core.https_address": ":8443"})
    async with db.read() as conn:
        assert await t.get_server_config(conn, me) == {
            "core.remote_token_expiry": "1h",
            "k": "mine",
        }
    async with db.write() as conn:
        await t.set_server_config(conn, me, {})
    async with db.read() as conn:
        assert await t.get_server_config(conn, me) == {
            "core.remote_token_expiry": "1h",
            "k": "shared",
        }
