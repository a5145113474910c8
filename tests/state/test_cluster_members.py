"""Cluster members in the state: join, heartbeat by the database's clock, leave."""

from __future__ import annotations

import pytest

from lxflex.state import Database
from lxflex.state import cluster as sc
from lxflex.state import store as st

A, B = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"


async def test_members_join_beat_and_leave(db: Database) -> None:
    async with db.write() as conn:
        for uuid in (A, B):
            await st.ensure_server(conn, uuid, "host")
        await sc.join(conn, B, "m2", "127.0.0.1:8444", "PEM-B", "x86_64")
        await sc.join(conn, A, "m1", "127.0.0.1:8443", "PEM-A", "x86_64")
    async with db.read() as conn:
        members = await sc.list_members(conn)
    assert [(m.name, m.server_uuid, m.address, m.certificate) for m in members] == [
        ("m1", A, "127.0.0.1:8443", "PEM-A"),
        ("m2", B, "127.0.0.1:8444", "PEM-B"),
    ]
    assert all(m.silent_for is not None and -5 < m.silent_for < 5 for m in members)
    async with db.write() as conn:
        with pytest.raises(sc.MemberTaken, match="another server"):
            await sc.join(conn, B, "m1", "127.0.0.1:9", "PEM", "x86_64")
    async with db.write() as conn:
        await sc.join(conn, A, "m1", "127.0.0.1:9443", "PEM-A2", "x86_64")  # a restart
        assert await sc.heartbeat(conn, A)
        assert await sc.leave(conn, "m2")
        assert not await sc.leave(conn, "m2")
        assert not await sc.heartbeat(conn, B)  # removed: no longer beats
    async with db.read() as conn:
        (only,) = await sc.list_members(conn)
    assert (only.name, only.address, only.certificate) == ("m1", "127.0.0.1:9443", "PEM-A2")
