"""Members of a cluster, through the real lxc 5.0.2 and pylxd: every member lists every
member; a pool made through one member is every member's; a member killed shows
Offline, with since when, once its heartbeats stop; a removed member is gone."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pylxd
import pytest

from lxflex.state import Database, Status
from lxflex.state import cluster as sc
from lxflex.state import journal as jn
from lxflex.state import store as st
from tests.compat.daemon import BIN, Monitor

from .conftest import THRESHOLD, Cluster, Member, _delete, _get, _post

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
    cluster.make_pool(m1)
    shown = m2.query("/1.0/storage-pools/pf")
    assert sorted(shown["locations"]) == ["m1", "m2"]
    assert shown["status"] == "Created"
    m2.lxc("storage", "volume", "create", "pf", "v1", "size=8GiB", "--type", "block")
    (volume,) = [v for v in m1.query("/1.0/storage-pools/pf/volumes?recursion=1")]
    assert (volume["name"], volume["location"]) == ("v1", "")  # a remote volume: no member
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
    away = m1.lxc("query", "/1.0?target=m2", check=False)  # forwarding to a dead member
    assert away.returncode != 0
    assert "cannot reach cluster member 'm2'" in away.stderr
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


async def _journal_entry_of(db_url: str, member: str) -> int:
    """A journal entry of ``member``'s, as for an array volume it is about to make."""
    db = await Database.open(db_url)
    try:
        async with db.write() as conn:
            pool = await st.get_pool(conn, "pf")
            assert pool is not None
            owner = next(m for m in await sc.list_members(conn) if m.name == member)
            (entry,) = await jn.add_entries(
                conn, pool.id, owner.server_uuid, [jn.NewEntry("volume", name="u_other.b")]
            )
        return entry
    finally:
        await db.close()


async def _state_of(db_url: str, name: str) -> tuple[str | None, set[int]]:
    """The status of volume ``name`` (None: no row) and the pool's journal entries."""
    db = await Database.open(db_url)
    try:
        async with db.read() as conn:
            pool = await st.get_pool(conn, "pf")
            assert pool is not None
            vol = await st.get_volume(conn, pool.id, "default", "custom", name)
            entries = {e.id for e in await jn.list_entries(conn, pool.id)}
        return (vol.status if vol else None), entries
    finally:
        await db.close()


def test_a_starting_member_leaves_the_work_of_another_alone(cluster: Cluster) -> None:
    """m1 creates a volume, held at the gateway: its row is ``creating`` and m1 holds its
    lock. A restart of m2 must neither undo that create nor finish m1's journal."""
    m1, m2 = cluster.members
    cluster.make_pool(m1)
    entry = asyncio.run(_journal_entry_of(cluster.db_url, "m1"))
    _post(
        f"{cluster.sim_url}/_sim/faults",
        {"route": "POST /api/types/Volume/instances", "latency_ms": 12_000},
    )
    creating = subprocess.Popen(
        ["lxc", "storage", "volume", "create", "pf", "busy", "size=8GiB"],
        env=m1.daemon.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while asyncio.run(_state_of(cluster.db_url, "busy"))[0] != Status.CREATING:
            assert time.monotonic() < deadline, "the create never began"
            time.sleep(0.1)
        m2.stop()
        m2.start()  # its start-up repair must not undo m1's create
        status, entries = asyncio.run(_state_of(cluster.db_url, "busy"))
        assert status == Status.CREATING
        assert entry in entries
    finally:
        _, err = creating.communicate(timeout=120)
    assert creating.returncode == 0, err
    assert asyncio.run(_state_of(cluster.db_url, "busy"))[0] == Status.CREATED
    assert "with work under way now: busy" in m2.daemon.log.read_text()


def test_work_on_one_volume_from_two_members_is_serialized(cluster: Cluster) -> None:
    """A snapshot through m1 and a delete through m2 of the same volume, at once, with
    slow gateway answers to widen the window: whichever goes first, the array and the
    state agree afterwards, as each member's check says."""
    m1, m2 = cluster.members
    cluster.make_pool(m1)
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
    cluster.make_pool(m1)
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
    # lxflex's --target routes the same way.
    lxflex = [str(BIN / "lxflex"), "storage", "volume", "create", "pf", "v2", "size=8GiB"]
    env = m1.daemon.env()
    subprocess.run([*lxflex, "--target", "m2"], env=env, check=True, capture_output=True)
    assert m1.query("/1.0/storage-pools/pf/volumes/custom/v2")["name"] == "v2"
    away = subprocess.run([*lxflex, "--target", "m9"], env=env, capture_output=True, text=True)
    assert away.returncode != 0
    assert "Cluster member not found" in away.stderr


def test_the_same_snapshot_through_two_members_is_made_once(cluster: Cluster) -> None:
    """Two members asked at once for snapshot s0 of one volume: the second finds the
    name taken and makes nothing on the array."""
    m1, m2 = cluster.members
    cluster.make_pool(m1)
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
    cluster.make_pool(m1)
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


def test_events_and_operations_of_one_member_reach_the_others(cluster: Cluster) -> None:
    """lxc on m1 sees the lifecycle events of work done through m2 (with m2 as their
    location), and waits through m1 for an operation that runs on m2."""
    m1, m2 = cluster.members
    cluster.make_pool(m1)
    monitor = Monitor(m1.daemon, "lifecycle")
    try:
        deadline = time.monotonic() + 30
        n = 0
        m1.lxc("storage", "volume", "create", "pf", "probe", "--type", "block", "size=8GiB")
        while not monitor.events:  # until the monitor listens
            assert time.monotonic() < deadline, "lxc monitor received nothing"
            m1.lxc("storage", "volume", "set", "pf", "probe", f"user.n={n}")
            n += 1
            time.sleep(0.2)
        monitor.events.clear()
        m2.lxc("storage", "volume", "create", "pf", "v1", "--type", "block", "size=8GiB")
        # An operation on m2, waited for by lxc through m1 (its events come relayed).
        m1.lxc("storage", "volume", "snapshot", "pf", "v1", "s0", "--target", "m2")
    finally:
        events = monitor.stop()
    seen = [(e["metadata"]["action"], e["location"]) for e in events]
    assert ("storage-volume-created", "m2") in seen
    assert ("storage-volume-snapshot-created", "m2") in seen
    assert "s0" in m1.lxc("storage", "volume", "info", "pf", "v1").stdout


def test_lxds_two_step_pool_creation_works_too(cluster: Cluster) -> None:
    """MicroCloud- and Terraform-style tooling: `--target` on each member (no keys: a
    PowerFlex pool has no member's own), then one create with the keys."""
    m1, m2 = cluster.members
    out = m1.lxc("storage", "create", "pf", "powerflex", "--target", "m1").stdout
    assert "Storage pool pf pending on member m1" in out
    keyed = m1.lxc(
        "storage", "create", "pf", "powerflex", "powerflex.pool=sp1", "--target", "m2", check=False
    )
    assert keyed.returncode != 0
    assert 'Config key "powerflex.pool" may not be used as member-specific key' in keyed.stderr
    m2.lxc("storage", "create", "pf", "powerflex", "--target", "m2")
    again = m1.lxc("storage", "create", "pf", "powerflex", "--target", "m2", check=False)
    assert 'The storage pool already defined on member "m2"' in again.stderr
    shown = m2.query("/1.0/storage-pools/pf")
    assert (shown["status"], shown["locations"]) == ("Pending", ["m1", "m2"])
    refused = m1.lxc("storage", "set", "pf", "volume.size=8GiB", check=False)
    assert "Cannot update storage pool global config when not in created state" in refused.stderr
    early = m1.lxc("storage", "volume", "create", "pf", "v1", "--type", "block", check=False)
    assert "is pending" in early.stderr
    client = pylxd.Client(endpoint=str(m2.daemon.socket))
    wrong = {**cluster.pool_config(), "powerflex.user.password": "not-it"}
    with pytest.raises(pylxd.exceptions.LXDAPIException, match="user name or password"):
        client.storage_pools.create({"name": "pf", "driver": "powerflex", "config": wrong})
    assert m1.query("/1.0/storage-pools/pf")["status"] == "Pending"  # run it again
    config = {**cluster.pool_config(), "powerflex.user.password": cluster.sim_password}
    client.storage_pools.create({"name": "pf", "driver": "powerflex", "config": config})
    shown = m1.query("/1.0/storage-pools/pf")
    assert (shown["status"], shown["locations"]) == ("Created", ["m1", "m2"])
    assert shown["config"]["powerflex.pool"] == "sp1"
    m1.lxc("storage", "volume", "create", "pf", "v1", "--type", "block", "size=8GiB")
    done = m1.lxc("storage", "create", "pf", "powerflex", "--target", "m1", check=False)
    assert "Storage pool is not in pending state" in done.stderr


def test_an_operation_of_one_member_is_listed_found_and_cancelled_from_another(
    cluster: Cluster,
) -> None:
    """A trust token is a held operation: one issued by m2 is in m1's operation list,
    shown by m1, and cancelled through m1."""
    m1, m2 = cluster.members
    m2.lxc("config", "trust", "add", "--name", "laptop")
    (op,) = [o for o in m2.query("/1.0/operations?recursion=1")["running"]]
    assert op["location"] == "m2"
    listed = m1.query("/1.0/operations?recursion=1")["running"]
    assert [o["id"] for o in listed] == [op["id"]]
    assert m1.query(f"/1.0/operations/{op['id']}")["location"] == "m2"
    m1.lxc("operation", "delete", op["id"])
    assert m2.query(f"/1.0/operations/{op['id']}")["status"] == "Cancelled"
    missing = m1.lxc("query", "/1.0/operations/00000000-0000-0000-0000-000000000000", check=False)
    assert "Operation not found" in missing.stderr


@pytest.mark.members(3)
def test_three_members_share_one_pool_and_serve_each_others_work(cluster: Cluster) -> None:
    """The issue's walk: lxc cluster list from any member, the pool in one command,
    volume work through each member and for each other member, an operation waited for
    through a member that does not run it."""
    members = cluster.members
    names = ["m1", "m2", "m3"]
    for member in members:
        rows = _rows(member.lxc("cluster", "list", "--format", "csv").stdout)
        assert [(r[0], r[6]) for r in rows] == [(n, "ONLINE") for n in names]
    cluster.make_pool(members[2])
    assert members[0].query("/1.0/storage-pools/pf")["locations"] == names
    shown = members[0].lxc("storage", "show", "pf", "--target", "m2").stdout  # m2 answers
    assert "status: Created" in shown
    assert "powerflex.pool: sp1" in shown
    for i, member in enumerate(members):
        other = names[(i + 1) % 3]
        name = f"v-{member.name}"
        member.lxc("storage", "volume", "create", "pf", name, "size=8GiB", "--target", other)
        member.lxc("storage", "volume", "snapshot", "pf", name, "s0", "--target", other)
        member.lxc("storage", "volume", "copy", f"pf/{name}", f"pf/{name}-copy")
    listed = members[1].query("/1.0/storage-pools/pf/volumes?recursion=1")
    volumes = sorted(v["name"] for v in listed if "/" not in v["name"])  # not snapshots
    assert volumes == sorted(f"v-{n}{s}" for n in names for s in ("", "-copy"))
    assert {v["location"] for v in listed} == {""}
    for member in members:
        report = member.query("/1.0/storage-pools/pf/check")
        assert report["clean"], report["findings"]


def _lxflex(member: Member, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LXD_DIR", "LXFLEX_DIR")}
    return subprocess.run(
        [str(BIN / "lxflex"), *args],
        capture_output=True,
        text=True,
        env={**env, "LXFLEX_DIR": str(member.daemon.state), "LC_ALL": "C"},
        timeout=120,
        check=False,
    )


def test_storage_check_covers_every_members_host(cluster: Cluster) -> None:
    """Run on m1, the check looks at each member's host in turn: what work cut short
    left in m2's scratch directory is found, and repaired, from m1."""
    m1, m2 = cluster.members
    cluster.make_pool(m1)
    clean = _lxflex(m1, "storage", "check", "pf")
    assert clean.returncode == 0, clean.stderr
    assert "pool pf on member m1: clean" in clean.stdout
    assert "pool pf on member m2: clean" in clean.stdout
    old = m2.daemon.state / "scratch" / "upload-stale.tar"
    old.parent.mkdir(exist_ok=True)
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    found = _lxflex(m1, "storage", "check", "pf")
    assert found.returncode == 1
    assert f"scratch entry {old}" in found.stdout
    assert "pool pf on member m1: clean" in found.stdout
    repaired = _lxflex(m1, "storage", "check", "pf", "--repair")
    assert "[repaired]" in repaired.stdout
    assert not old.exists()
    m2.stop(signal.SIGKILL)
    deadline = time.monotonic() + THRESHOLD + 15
    while m1.query("/1.0/cluster/members/m2")["status"] != "Offline":
        assert time.monotonic() < deadline, "m2 never showed Offline"
        time.sleep(1)
    away = _lxflex(m1, "storage", "check", "pf")
    assert away.returncode == 1
    assert "member m2 is offline: its host was not checked" in away.stderr


def _mapped_to(cluster: Cluster, member: Member) -> list[str]:
    """The array volumes mapped to the member's NVMe host, as the simulator holds them."""
    server_uuid = (member.daemon.state / "server.uuid").read_text().strip()
    nqn = f"nqn.2014-08.org.nvmexpress:uuid:{server_uuid}"
    state = _get(f"{cluster.sim_url}/_sim/state")
    hosts = {h["id"] for h in state["hosts"] if h.get("nqn") == nqn}
    return [v["id"] for v in state["volumes"] if any(m["host_id"] in hosts for m in v["mappings"])]


def test_removing_a_dead_member_fences_it_first(cluster: Cluster) -> None:
    """m2 is killed in the middle of a copy, with both volumes mapped to its host. Its
    removal through m1 takes those mappings away at the array first: no volume stays
    writable from a host that may yet wake up."""
    m1, m2 = cluster.members
    cluster.make_pool(m1)
    m1.lxc("storage", "volume", "create", "pf", "v1", "--type", "block", "size=8GiB")
    hold = {"route": "POST */removeMappedHost", "latency_ms": 60_000}
    _post(f"{cluster.sim_url}/_sim/faults", hold)  # the copy's unmaps never answer
    copying = subprocess.Popen(
        ["lxc", "storage", "volume", "copy", "pf/v1", "pf/v2"],
        env=m2.daemon.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(_mapped_to(cluster, m2)) < 2:
            assert time.monotonic() < deadline, "the copy never mapped both volumes"
            time.sleep(0.2)
        time.sleep(1)  # the copy is done but for its unmaps, held at the gateway
        m2.stop(signal.SIGKILL)
    finally:
        copying.kill()
        copying.wait()
    _delete(f"{cluster.sim_url}/_sim/faults")
    assert len(_mapped_to(cluster, m2)) == 2
    refused = m1.lxc("cluster", "remove", "m2", check=False)
    assert "is online" in refused.stderr  # not yet Offline: a running member is not fenced
    deadline = time.monotonic() + THRESHOLD + 15
    while m1.query("/1.0/cluster/members/m2")["status"] != "Offline":
        assert time.monotonic() < deadline, "m2 never showed Offline"
        time.sleep(1)
    # The array failing while m2 is fenced: the removal fails, saying why, and keeps m2
    # (a member not fenced stays a member), so that removing it again retries.
    failing = {"route": "POST */removeMappedHost", "http_status": 500, "count": 50}
    _post(f"{cluster.sim_url}/_sim/faults", failing)
    refused = m1.lxc("cluster", "remove", "m2", check=False)
    _delete(f"{cluster.sim_url}/_sim/faults")
    assert "fencing the host of server" in refused.stderr, refused.stderr
    assert "m2" in [r[0] for r in _rows(m1.lxc("cluster", "list", "--format", "csv").stdout)]
    m1.lxc("cluster", "remove", "m2")
    assert _mapped_to(cluster, m2) == []
    assert "m2 fenced: 2 mapping(s) taken away" in m1.daemon.log.read_text()
    names = [r[0] for r in _rows(m1.lxc("cluster", "list", "--format", "csv").stdout)]
    assert names == ["m1"]
    # The survivor repaired the copy m2 left under way (its lock went with m2): the
    # source stays, the copy is undone, at the array too.
    assert asyncio.run(_state_of(cluster.db_url, "v2"))[0] is None
    listed = m1.lxc("storage", "volume", "list", "pf", "--format", "csv").stdout
    assert [row.split(",")[1] for row in listed.splitlines()] == ["v1"]
    report = m1.query("/1.0/storage-pools/pf/check")
    assert report["clean"], report["findings"]
    assert report["array_volumes"] == 1


def test_a_member_removed_while_it_runs_stops_serving(cluster: Cluster) -> None:
    """Removed with force (and fenced), a member that still runs stops at its next
    heartbeat, saying why: it must not go on with work the others now own."""
    m1, m2 = cluster.members
    m1.lxc("query", "-X", "DELETE", "/1.0/cluster/members/m2?force=1")
    assert m2.proc is not None
    assert m2.proc.wait(timeout=THRESHOLD + 15) != 0
    said = m2.daemon.log.read_text()
    assert "stopped: this server is no longer cluster member m2" in said
    names = [r[0] for r in _rows(m1.lxc("cluster", "list", "--format", "csv").stdout)]
    assert names == ["m1"]


def test_a_member_killed_amid_its_work_is_repaired_by_a_survivor(cluster: Cluster) -> None:
    """m2 is killed -9 with a create, a copy, a snapshot and a delete in flight (slow
    gateway answers keep them there). Once it is Offline, its removal through m1 fences
    it and repairs what it left: the array and the state agree, nothing is mapped, and
    what was done before stays. Restarted, m2 joins again and sees the same."""
    m1, m2 = cluster.members
    cluster.make_pool(m1)
    for name in ("keep", "snap-me", "drop-me"):
        m2.lxc("storage", "volume", "create", "pf", name, "size=8GiB")  # m2 logs in
    _post(f"{cluster.sim_url}/_sim/faults", {"route": "*", "latency_ms": 1500})
    work = [
        ["storage", "volume", "create", "pf", "new", "size=8GiB"],
        ["storage", "volume", "copy", "pf/keep", "pf/copied"],
        ["storage", "volume", "snapshot", "pf", "snap-me", "s0"],
        ["storage", "volume", "delete", "pf", "drop-me"],
    ]
    running = [
        subprocess.Popen(
            ["lxc", *argv],
            env=m2.daemon.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for argv in work
    ]
    try:
        time.sleep(2.5)  # each is a request or two in
        m2.stop(signal.SIGKILL)
    finally:
        for proc in running:
            proc.kill()
            proc.wait()
    _delete(f"{cluster.sim_url}/_sim/faults")
    deadline = time.monotonic() + THRESHOLD + 15
    while m1.query("/1.0/cluster/members/m2")["status"] != "Offline":
        assert time.monotonic() < deadline, "m2 never showed Offline"
        time.sleep(1)
    m1.lxc("cluster", "remove", "m2")
    said = re.search(
        r"m2 fenced: .* (\d+) volume\(s\) with work cut short", m1.daemon.log.read_text()
    )
    assert said is not None
    assert int(said[1]) >= 1  # the kill left work to repair
    report = m1.query("/1.0/storage-pools/pf/check")
    assert report["clean"], report["findings"]
    listed = m1.lxc("storage", "volume", "list", "pf", "--format", "csv").stdout
    names = {row.split(",")[1] for row in listed.splitlines()}
    assert {"keep", "snap-me"} <= names <= {"keep", "snap-me", "drop-me", "new", "copied"}
    assert report["array_volumes"] >= len(names)  # each volume's, and its snapshots'
    state = _get(f"{cluster.sim_url}/_sim/state")
    assert [v["name"] for v in state["volumes"] if v["mappings"]] == []
    m2.start()  # with its flags: it joins again
    assert [r[0] for r in _rows(m2.lxc("cluster", "list", "--format", "csv").stdout)] == [
        "m1",
        "m2",
    ]
    again = m2.query("/1.0/storage-pools/pf/check")
    assert again["clean"], again["findings"]


def _unix_get(member: Member, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("localhost", timeout=120)
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(120)
    sock.connect(str(member.daemon.socket))
    conn.sock = sock
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_a_backup_is_served_by_the_member_that_holds_its_tarball(cluster: Cluster) -> None:
    """Backups records are shared, tarballs are files of the member that made them: an
    export, a rename or a delete through another member goes to that member."""
    m1, m2 = cluster.members
    cluster.make_pool(m1)
    m1.lxc("storage", "volume", "create", "pf", "v1", "size=8GiB")
    base = "/1.0/storage-pools/pf/volumes/custom/v1/backups"
    m1.lxc("query", "-X", "POST", "--wait", f"{base}?target=m2", "--data", '{"name": "b0"}')
    assert (m2.daemon.state / "backups").exists()
    status, body = _unix_get(m1, f"{base}/b0/export")  # through m1, from m2's disk
    assert status == 200
    assert body[:2] == b"\x1f\x8b"  # a gzipped tarball
    m1.lxc("query", "-X", "DELETE", "--wait", f"{base}/b0")
    assert json.loads(m2.lxc("query", base).stdout) == []
    assert not any((m2.daemon.state / "backups").rglob("b0"))  # its tarball went too
    # While the member that holds a tarball is Offline, its export says so.
    m1.lxc("query", "-X", "POST", "--wait", f"{base}?target=m2", "--data", '{"name": "b1"}')
    m2.stop(signal.SIGKILL)
    deadline = time.monotonic() + THRESHOLD + 15
    while m1.query("/1.0/cluster/members/m2")["status"] != "Offline":
        assert time.monotonic() < deadline, "m2 never showed Offline"
        time.sleep(1)
    status, body = _unix_get(m1, f"{base}/b1/export")
    assert status == 503
    assert b"is on member m2, which is Offline" in body
