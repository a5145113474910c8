"""No volume is ever mapped to two hosts unless it is shared: work that maps volumes
(copies, refreshes, exports, resizes, attachments, which move a volume another member
has) runs at once through three members, on a few volumes, in a random order (seeded;
a failure names the seed). Watched all along, no volume but the one with
``security.shared`` is ever mapped to two hosts, and the array never has to refuse a
second host's mapping; once what is left attached is detached, nothing stays mapped,
and every member's check stays clean."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lxflex.driver.naming import Content, VolumeType, volume_name
from tests.compat.daemon import BIN, lxflex

from .conftest import Cluster, Member, _get

pytestmark = pytest.mark.root

VOLUMES = "/1.0/storage-pools/pf/volumes/custom"
SHARED = "sh"  # a block volume with security.shared: the one that may have several hosts

# Sources, each with the copies it may make: filesystems' and a block volume's.
COPIES = {"v0": ("c0", "c1"), "v1": ("c0", "c1"), "b0": ("d0", "d1")}
# What an operation may fairly meet when others run on the same volumes at once.
REFUSALS = (
    "already exists",
    "not found",
    "smaller",
    "shrink",
    "being deleted",
    "in use",
    "the same block.filesystem",  # a refresh of an XFS copy from ext4
    "can only grow",  # a resize below what another made it
    "detach it before you",  # a delete, restore or refresh of a volume in use
    "is not attached to this host",  # a detach through a member that does not have it
)


def _plan(rng: random.Random, tmp: Path, count: int) -> list[list[str]]:
    steps = []
    for i in range(count):
        src = rng.choice(list(COPIES))
        dst = rng.choice(COPIES[src])
        kind = rng.choice(
            [
                "copy",
                "copy",
                "refresh",
                "export",
                "resize",
                "delete",
                "snapshot",
                "attach",
                "detach",
            ]
        )
        if kind == "copy":
            steps.append(["storage", "volume", "copy", f"pf/{src}", f"pf/{dst}"])
        elif kind == "refresh":
            steps.append(["storage", "volume", "copy", f"pf/{src}", f"pf/{dst}", "--refresh"])
        elif kind == "export":
            target = rng.choice([src, dst])
            steps.append(["storage", "volume", "export", "pf", target, str(tmp / f"e{i}.tar")])
        elif kind == "resize":
            size = f"size={rng.choice([8, 9, 10])}GiB"
            steps.append(["storage", "volume", "set", "pf", rng.choice([src, dst]), size])
        elif kind == "delete":
            steps.append(["storage", "volume", "delete", "pf", dst])
        elif kind == "attach":  # through any member: a move when another has it
            steps.append(["storage", "volume", "attach", "pf", rng.choice([src, dst, SHARED])])
        elif kind == "detach":
            steps.append(["storage", "volume", "detach", "pf", rng.choice([src, dst, SHARED])])
        else:
            steps.append(["storage", "volume", "snapshot", "pf", rng.choice([src, dst])])
    return steps


def _run(member: Member, step: list[str]) -> subprocess.CompletedProcess[str]:
    """A step through ``member``: lxflex's own commands by lxflex, the rest by lxc."""
    if step[2] in ("attach", "detach"):
        return subprocess.run(
            [str(BIN / "lxflex"), *step],
            env=member.daemon.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    return member.lxc(*step, check=False)


@pytest.mark.members(3)
def test_no_volume_is_ever_mapped_to_two_hosts(cluster: Cluster, tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    m1 = cluster.members[0]
    cluster.make_pool(m1)
    m1.lxc("storage", "volume", "create", "pf", "v0", "size=8GiB")
    m1.lxc("storage", "volume", "create", "pf", "v1", "size=8GiB", "block.filesystem=xfs")
    m1.lxc("storage", "volume", "create", "pf", "b0", "--type", "block", "size=8GiB")
    m1.lxc("storage", "volume", "create", "pf", SHARED, "--type", "block", "size=8GiB")
    m1.lxc("storage", "volume", "set", "pf", SHARED, "security.shared=true")
    shared_uuid = json.loads(m1.lxc("query", f"{VOLUMES}/{SHARED}").stdout)["config"][
        "volatile.uuid"
    ]
    shared = volume_name(VolumeType.CUSTOM, Content.BLOCK, uuid.UUID(shared_uuid))
    steps = [(rng.choice(cluster.members), step) for step in _plan(rng, tmp_path, 24)]
    started = time.monotonic()
    most: dict[str, int] = {}  # the most hosts each array volume was seen mapped to
    watching = threading.Event()

    def watch() -> None:
        while not watching.wait(0.05):
            for vol in _get(f"{cluster.sim_url}/_sim/state")["volumes"]:
                most[vol["name"]] = max(most.get(vol["name"], 0), len(vol["mappings"]))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(3) as pool:
            done = list(pool.map(lambda ms: (ms[1], _run(*ms)), steps))
    finally:
        watching.set()
        watcher.join()
    assert [name for name, n in most.items() if n > 1 and name != shared] == [], (seed, most)
    for step, result in done:
        if result.returncode != 0:
            assert any(r in result.stderr for r in REFUSALS), (seed, step, result.stderr)
    for member in cluster.members:  # what is left attached, detached where it is
        for name in [*COPIES, "c0", "c1", "d0", "d1", SHARED]:
            uses = member.lxc("query", f"{VOLUMES}/{name}/attachments", check=False)
            for use in json.loads(uses.stdout) if uses.returncode == 0 else []:
                where = ["--target", use["location"]]
                lxflex(member.daemon, "storage", "volume", "detach", "pf", name, *where)
    refusals = _get(f"{cluster.sim_url}/_sim/stats")["refusals"]
    assert not [m for m in refusals if "mapped" in m], (seed, refusals)
    state = _get(f"{cluster.sim_url}/_sim/state")
    assert [v["name"] for v in state["volumes"] if v["mappings"]] == [], seed
    for member in cluster.members:
        report = member.query("/1.0/storage-pools/pf/check")
        assert report["clean"], (seed, report["findings"])
    assert time.monotonic() - started < 300
