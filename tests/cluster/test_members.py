"""Members of a cluster, through the real lxc 5.0.2 and pylxd: every member lists every
member; a pool made through one member is every member's; a member killed shows
Offline, with since when, once its heartbeats stop; a removed member is gone."""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pylxd
import pytest

from lxflex.state import Database, Status
from lxflex.state import cluster as sc
from lxflex.state import journal as jn
from lxflex.state import store as st

from .conftest import THRESHOLD, Cluster, _get, _post

pytestmark = pytest.mark.root


def _rows(member_csv: str) -> list[list[str]]:
    # NAME, URL, ROLES, ARCHITECTURE, FAILURE DOMAIN, DESCRIPTION, STATE, MESSAGE
    return [line.split(",") for line in member_csv.strip().splitlines()]


def test_every_member_lists_every_member(cluster: Cluster) -> None:
    m1, m2 = cluster.members
    for member in (m1, m2):
        rows = _rows(member.lxc("cluster", "list", "--format", "csv").stdout)
        assert [(r[0], r[1], r[4], r[6], r[7]) for r in rows] == [
            ("m1", f"https://{m1.address}", "default", "ONLINE", "Fully operational"),
            ("m2", f"https://{m2.address}", "default", "ONLINE", "Fully operational"),
        ]
        env = member.query("/1.0")["environment"]
        assert (env["server_clustered"], env["server_name"]) == (True, member.name)
    shown = m2.lxc("cluster", "show", "m1").stdout
    assert "server_name: m1" in shown
    assert "status: Online" in shown
    missing = m1.lxc("cluster", "show", "m3", check=False)
    assert missing.returncode != 0
    assert "Cluster member not found" in missing.stderr
    client = pylxd.Client(endpoint=str(m2.daemon.socket))
    assert client.server_clustered
    assert sorted(m.server_name for m in client.cluster.members.all()) == ["m1", "m2"]


def test_a_pool_made_through_one_member_is_every_members(cluster: Cluster) -> None:
    m1, m2 = cluster.members
    client = pylxd.Client(endpoint=str(m1.daemon.socket))  # the password stays off argv
    config = {**cluster.pool_config(), "powerflex.user.password": cluster.sim_password}
    client.storage_pools.create({"name": "pf", "driver": "powerflex", "config": config})
    shown = m2.query("/1.0/storage-pools/pf")
    assert sorted(shown["locations"]) == ["m1", "m2"]
    assert shown["status"] == "Created"
    m2.lxc("storage", "volume", "create", "pf", "v1", "size=8GiB", "--type", "block")
    (volume,) = [v for v in m1.query("/1.0/storage-pools/pf/volumes?recursion=1")]
    assert (volume["name"], volume["location"]) == ("v1", "")  # a remote volume: no member
    refused = m1.lxc("storage", "create", "pf2", "powerflex", "--target", "m2", check=False)
    assert refused.returncode != 0
    assert "create it once, without --target" in refused.stderr
    m1.lxc("storage", "volume", "delete", "pf", "v1")


def test_a_killed_member_goes_offline_and_a_removed_one_is_gone(cluster: Cluster) -> None:
    m1, m2 = cluster.members
    refused = m1.lxc("cluster", "remove", "m2", check=False)
    assert refused.returncode != 0
    assert "is online" in refused.stderr
    m2.stop(signal.SIGKILL)
    deadline = time.monotonic() + THRESHOLD + 15
    while True:
        rows = {r[0]: r for r in _rows(m1.lxc("cluster", "list", "--format", "csv").stdout)}
        if rows["m2"][6] == "OFFLINE" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert rows["m2"][6] == "OFFLINE"
    assert rows["m2"][7].startswith("No heartbeat for ")
    assert rows["m1"][6] == "ONLINE"
    m1.lxc("cluster", "remove", "m2")
    assert list(_rows(m1.lxc("cluster", "list", "--format", "csv").stdout)) == [
        [
            "m1",
            f"https://{m1.address}",
            "",
            rows["m1"][3],
            "default",
            "",
            "ONLINE",
            "Fully operational",
        ]
    ]
    m2.start()  # restarted, it joins again
    names = [r[0] for r in _rows(m1.lxc("cluster", "list", "--format", "csv").stdout)]
    assert names == ["m1", "m2"]


async def _work_of_m1_under_way(db_url: str) -> tuple[int, int]:
    """A create m1 runs now, as the shared state shows it: a row ``creating`` and a
    journal entry of m1's for the array volume it is about to make."""
    db = await Database.open(db_url)
    try:
        async with db.write() as conn:
            pool = await st.get_pool(conn, "pf")
            assert pool is not None
            m1 = next(m for m in await sc.list_members(conn) if m.name == "m1")
            vol = await st.create_volume(
                conn,
                pool.id,
                "default",
                "busy",
                "custom",
                "block",
                {"size": "8GiB"},
                status=Status.CREATING,
            )
            (entry,) = await jn.add_entries(
                conn, pool.id, m1.server_uuid, [jn.NewEntry("volume", name="u_busy.b")]
            )
        return vol.id, entry
    finally:
        await db.close()


async def _still_there(db_url: str, vol_id: int, entry: int) -> tuple[bool, bool]:
    db = await Database.open(db_url)
    try:
        async with db.read() as conn:
            pool = await st.get_pool(conn, "pf")
            assert pool is not None
            vols = {v.id for v in await st.list_volumes(conn, pool.id)}
            entries = {e.id for e in await jn.list_entries(conn, pool.id)}
        return vol_id in vols, entry in entries
    finally:
        await db.close()


def test_a_starting_member_leaves_the_work_of_another_alone(cluster: Cluster) -> None:
    m1, m2 = cluster.members
    client = pylxd.Client(endpoint=str(m1.daemon.socket))
    config = {**cluster.pool_config(), "powerflex.user.password": cluster.sim_password}
    client.storage_pools.create({"name": "pf", "driver": "powerflex", "config": config})
    vol_id, entry = asyncio.run(_work_of_m1_under_way(cluster.db_url))
    m2.stop()
    m2.start()  # its start-up repair must not undo m1's create
    assert asyncio.run(_still_there(cluster.db_url, vol_id, entry)) == (True, True)
    assert "another member may be doing it" in m2.daemon.log.read_text()


def test_work_on_one_volume_from_two_members_is_serialized(cluster: Cluster) -> None:
    """A snapshot through m1 and a delete through m2 of the same volume, at once, with
    slow gateway answers to widen the window: whichever goes first, the array and the
    state agree afterwards, as each member's check says."""
    m1, m2 = cluster.members
    client = pylxd.Client(endpoint=str(m1.daemon.socket))
    config = {**cluster.pool_config(), "powerflex.user.password": cluster.sim_password}
    client.storage_pools.create({"name": "pf", "driver": "powerflex", "config": config})
    _post(f"{cluster.sim_url}/_sim/faults", {"route": "*", "latency_ms": 60})
    for i in range(3):
        name = f"v{i}"
        m1.lxc("storage", "volume", "create", "pf", name, "size=8GiB")
        with ThreadPoolExecutor(2) as both:
            snap = both.submit(
                m1.lxc, "storage", "volume", "snapshot", "pf", name, "s0", check=False
            )
            gone = both.submit(m2.lxc, "storage", "volume", "delete", "pf", name, check=False)
            snapped, deleted = snap.result(), gone.result()
        assert deleted.returncode == 0, deleted.stderr
        # Before the delete, or refused: during it ("being deleted"), or after it.
        refusals = ("not found", "is being deleted")
        assert snapped.returncode == 0 or any(r in snapped.stderr for r in refusals), snapped.stderr
        for member in (m1, m2):
            report = member.query("/1.0/storage-pools/pf/check")
            assert report["clean"], report["findings"]
            assert report["array_volumes"] == 0


def test_a_request_for_another_member_is_served_there(cluster: Cluster) -> None:
    m1, m2 = cluster.members
    client = pylxd.Client(endpoint=str(m1.daemon.socket))
    config = {**cluster.pool_config(), "powerflex.user.password": cluster.sim_password}
    client.storage_pools.create({"name": "pf", "driver": "powerflex", "config": config})
    info = m1.lxc("info", "--target", "m2").stdout  # GET /1.0?target=m2, forwarded
    assert "server_name: m2" in info
    assert m1.query("/1.0?target=m2")["environment"]["server_name"] == "m2"
    assert m1.query("/1.0?target=m1")["environment"]["server_name"] == "m1"
    unknown = m1.lxc("query", "/1.0?target=m9", check=False)
    assert unknown.returncode != 0
    assert "Cluster member not found" in unknown.stderr
    # A filesystem volume: m2's host makes the filesystem.
    m1.lxc("storage", "volume", "create", "pf", "v1", "size=8GiB", "--target", "m2")
    shown = m1.lxc("storage", "volume", "show", "pf", "v1", "--target", "m2").stdout
    assert "name: v1" in shown
    # m2's host attached the volume to make its filesystem; m1's never did.
    assert "created NVMe host" in m2.daemon.log.read_text()
    assert "created NVMe host" not in m1.daemon.log.read_text()
    m1.lxc("storage", "volume", "delete", "pf", "v1", "--target", "m2")
    assert m2.query("/1.0/storage-pools/pf/volumes") == []


def test_the_same_snapshot_through_two_members_is_made_once(cluster: Cluster) -> None:
    """Two members asked at once for snapshot s0 of one volume: the second finds the
    name taken and makes nothing on the array."""
    m1, m2 = cluster.members
    client = pylxd.Client(endpoint=str(m1.daemon.socket))
    config = {**cluster.pool_config(), "powerflex.user.password": cluster.sim_password}
    client.storage_pools.create({"name": "pf", "driver": "powerflex", "config": config})
    _post(f"{cluster.sim_url}/_sim/faults", {"route": "*", "latency_ms": 60})
    for i in range(3):
        name = f"v{i}"
        m1.lxc("storage", "volume", "create", "pf", name, "size=8GiB", "--type", "block")
        _post(f"{cluster.sim_url}/_sim/stats/reset", {})
        with ThreadPoolExecutor(2) as both:
            runs = [
                both.submit(m.lxc, "storage", "volume", "snapshot", "pf", name, "s0", check=False)
                for m in (m1, m2)
            ]
            codes = sorted(r.result().returncode for r in runs)
        assert codes[0] == 0
        assert codes[1] != 0
        stats = _get(f"{cluster.sim_url}/_sim/stats")
        made = sum(n for route, n in stats["requests"].items() if "snapshotVolumes" in route)
        assert made == 1, stats["requests"]
        report = m2.query("/1.0/storage-pools/pf/check")
        assert report["clean"], report["findings"]


def test_work_on_a_volume_waits_for_work_on_it_through_another_member(cluster: Cluster) -> None:
    """A resize through m1 is held up at the gateway; a rename of the same volume
    through m2 (state only) ends after it, not while it runs: the volume's lock is the
    cluster's. A rename of another volume does not wait."""
    m1, m2 = cluster.members
    client = pylxd.Client(endpoint=str(m1.daemon.socket))
    config = {**cluster.pool_config(), "powerflex.user.password": cluster.sim_password}
    client.storage_pools.create({"name": "pf", "driver": "powerflex", "config": config})
    for name in ("v", "other"):
        m1.lxc("storage", "volume", "create", "pf", name, "size=8GiB", "--type", "block")
    _post(f"{cluster.sim_url}/_sim/faults", {"route": "POST */setVolumeSize", "latency_ms": 4000})
    _post(f"{cluster.sim_url}/_sim/stats/reset", {})
    with ThreadPoolExecutor(1) as one:
        resize = one.submit(m1.lxc, "storage", "volume", "set", "pf", "v", "size=16GiB")
        deadline = time.monotonic() + 30
        while not any(
            "setVolumeSize" in k for k in _get(f"{cluster.sim_url}/_sim/stats")["requests"]
        ):
            assert time.monotonic() < deadline, "the resize never reached the gateway"
            time.sleep(0.05)
        m2.lxc("storage", "volume", "rename", "pf", "other", "other2")
        assert not resize.done()  # another volume: no wait
        m2.lxc("storage", "volume", "rename", "pf", "v", "w")
        assert resize.done()  # the same volume: after the resize, not during it
        resize.result()
    assert "size: 16GiB" in m1.lxc("storage", "volume", "show", "pf", "w").stdout
