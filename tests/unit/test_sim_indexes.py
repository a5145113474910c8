"""The simulator's name and thin-capacity indexes agree with a full scan of its volumes,
through every operation that adds, renames, resizes or removes one, and a reload."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from lxflex.sim import ManualClock, topology
from lxflex.sim.data import DataStore
from lxflex.sim.errors import SimError
from lxflex.sim.model import Array

OPS = hs.lists(
    hs.tuples(
        hs.sampled_from(["create", "thick", "rename", "grow", "snapshot", "remove", "tree"]),
        hs.integers(0, 7),
    ),
    max_size=30,
)


def _scan(array: Array) -> tuple[dict[str, str], dict[str, int]]:
    names = {v.name: v.id for v in array.volumes.values() if v.name is not None}
    thin = {p.id: array.pool_usage(p, written=False)["thin"] for p in array.pools.values()}
    return names, thin


def _indexed(array: Array) -> tuple[dict[str, str], dict[str, int]]:
    return array._names, {p: array._thin_kb.get(p, 0) for p in array.pools}


def _apply(array: Array, pool_id: str, op: str, n: int) -> None:
    ids = sorted(array.volumes)
    pick = ids[n % len(ids)] if ids else None
    try:
        if op in ("create", "thick"):
            kind = "ThinProvisioned" if op == "create" else "ThickProvisioned"
            params = {"storagePoolId": pool_id, "volumeSizeInKb": 8 << 20, "volumeType": kind}
            array.create_volume({**params, "name": f"v{n}"})
        elif pick is None:
            return
        elif op == "rename":
            array.rename_volume(pick, f"v{n}")
        elif op == "grow":
            array.set_volume_size(pick, array.volumes[pick].size_kb // (1 << 20) + 8)
        elif op == "snapshot":
            array.snapshot_volumes([{"volumeId": pick, "snapshotName": f"s{n}"}], None)
        elif op == "remove":
            array.remove_volume(pick, "ONLY_ME")
        else:
            array.remove_volume(pick, "INCLUDING_DESCENDANTS")
    except SimError:
        pass  # a refused operation changes nothing, which the comparison checks too


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_indexes_match_a_scan(tmp_path: Path, ops: list[tuple[str, int]]) -> None:
    store = tmp_path / "data"
    for f in store.glob("*"):
        f.unlink()
    array = Array("4.5", DataStore(store), ManualClock())
    array.load_topology(topology.load(None))
    pool_id = next(iter(array.pools))
    for op, n in ops:
        _apply(array, pool_id, op, n)
        assert _indexed(array) == _scan(array)
    again = Array("4.5", DataStore(store), ManualClock())
    again.load_dict(array.to_dict())
    assert _indexed(again) == _scan(array)


def test_names_are_one_namespace(tmp_path: Path) -> None:
    array = Array("4.5", DataStore(tmp_path), ManualClock())
    array.load_topology(topology.load(None))
    pool_id = next(iter(array.pools))
    vol = array.create_volume({"storagePoolId": pool_id, "volumeSizeInGb": 8, "name": "a"})
    array.snapshot_volumes([{"volumeId": vol, "snapshotName": "b"}], None)
    for name in ("a", "b"):
        with pytest.raises(SimError):
            array.create_volume({"storagePoolId": pool_id, "volumeSizeInGb": 8, "name": name})
    array.rename_volume(vol, "c")
    array.create_volume({"storagePoolId": pool_id, "volumeSizeInGb": 8, "name": "a"})
