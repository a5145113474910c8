"""The simulator's array rules and wire shapes, asserted on raw HTTP answers."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from lxflex.sim import ManualClock, Simulator

from ..conftest import GIB, SimFactory

KIB_PER_GIB = 1024 * 1024


class Raw:
    """A logged-in raw HTTP session to the simulator."""

    def __init__(self, session: aiohttp.ClientSession, auth: str, sim: Simulator) -> None:
        self.session = session
        self.auth = auth
        # Snapshots: snapshotVolumes up to 4.x, createSnapshot of the System on 5.x.
        self.snapshots = (
            f"/api/instances/System::{sim.array.system_id}/action/createSnapshot"
            if sim.array.major >= 5
            else "/api/instances/System/action/snapshotVolumes"
        )

    async def call(
        self, method: str, path: str, body: Any = None, **headers: str
    ) -> tuple[int, Any]:
        hdrs = {"Authorization": self.auth, **headers}
        data = None if body is None else body if isinstance(body, (str, bytes)) else None
        async with self.session.request(
            method, path, headers=hdrs, json=None if data is not None else body, data=data
        ) as r:
            text = await r.text()
            try:
                return r.status, await r.json(content_type=None)
            except ValueError:
                return r.status, text

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, doc = await self.call(method, path, body)
        assert status == 200, doc
        return doc

    async def error(
        self, method: str, path: str, body: Any, code: int, message: str
    ) -> dict[str, Any]:
        status, doc = await self.call(method, path, body)
        assert status == 500, doc
        if code in (182,):
            assert doc["errorCode"] == 0
            assert doc["details"][0]["rc"] == code
            assert doc["details"][0]["errorMessage"] == message
        else:
            assert doc["errorCode"] == code, doc
            assert doc["message"] == message
            assert doc["httpStatusCode"] == 500
        return dict(doc)

    async def create(
        self, pool: str, size_gb: int = 8, name: str | None = None, **extra: Any
    ) -> str:
        body: dict[str, Any] = {"storagePoolId": pool, "volumeSizeInGb": str(size_gb), **extra}
        if name:
            body["name"] = name
        doc = await self.ok("POST", "/api/types/Volume/instances", body)
        return str(doc["id"])

    async def volume(self, vol_id: str) -> dict[str, Any]:
        return dict(await self.ok("GET", f"/api/instances/Volume::{vol_id}"))

    async def action(self, vol_id: str, action: str, body: Any) -> tuple[int, Any]:
        return await self.call("POST", f"/api/instances/Volume::{vol_id}/action/{action}", body)


async def _login(session: aiohttp.ClientSession, sim: Simulator, password: str) -> str:
    if sim.array.legacy:
        basic = base64.b64encode(f"admin:{password}".encode()).decode()
        async with session.get("/api/login", headers={"Authorization": f"Basic {basic}"}) as r:
            assert r.status == 200
            token = await r.json()
        return "Basic " + base64.b64encode(f"admin:{token}".encode()).decode()
    async with session.post(
        "/rest/auth/login", json={"username": "admin", "password": password}
    ) as r:
        assert r.status == 200
        return "Bearer " + (await r.json())["access_token"]


@pytest.fixture
async def raw(sim: Simulator, password: str) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession(base_url=sim.url) as session:
        yield Raw(session, await _login(session, sim, password), sim)


@pytest.fixture
def pool(sim: Simulator) -> str:
    return next(p.id for p in sim.array.pools.values() if p.name == "sp1")


def _gran(sim: Simulator) -> int:
    return 1 if sim.array.major >= 5 else 8


async def test_create_rounds_up_to_granularity(raw: Raw, pool: str, sim: Simulator) -> None:
    gran = _gran(sim)
    small = await raw.ok(
        "POST",
        "/api/types/Volume/instances",
        {"storagePoolId": pool, "volumeSizeInKb": "8192", "name": "r1"},
    )
    assert (await raw.volume(small["id"]))["sizeInKb"] == gran * KIB_PER_GIB
    odd = await raw.create(pool, 9, "r2")
    expect = 16 if gran == 8 else 9
    assert (await raw.volume(odd))["sizeInKb"] == expect * KIB_PER_GIB
    assert not sim.data.path(odd).exists()  # no backing file until its data is needed
    assert sim.data.allocated(odd) == 0
    status, doc = await raw.call(
        "POST", "/api/types/Volume/instances", {"storagePoolId": pool, "volumeSizeInKb": "0"}
    )
    assert status == 400
    assert doc["message"] == "Illegal volume size"


async def test_resize_rules(raw: Raw, pool: str, sim: Simulator) -> None:
    gran = _gran(sim)
    vol = await raw.create(pool, 16, "rs1")
    if gran == 8:
        status, doc = await raw.action(vol, "setVolumeSize", {"sizeInGB": "20"})
        assert (status, doc["errorCode"]) == (500, 225)
        assert doc["message"] == (
            "The specified volume size is illegal. Volume size must be in 8 GB blocks"
        )
    status, doc = await raw.action(vol, "setVolumeSize", {"sizeInGB": "8"})
    assert (status, doc["errorCode"], doc["message"]) == (
        500,
        133,
        "Volume capacity can only be increased",
    )
    status, doc = await raw.action(vol, "setVolumeSize", {"sizeInGB": "16"})
    assert doc["errorCode"] == 133
    status, _ = await raw.action(vol, "setVolumeSize", {"sizeInGB": 24})  # numbers work too
    assert status == 200
    assert (await raw.volume(vol))["sizeInKb"] == 24 * KIB_PER_GIB


async def test_name_rules(raw: Raw, pool: str) -> None:
    base = {"storagePoolId": pool, "volumeSizeInGb": "8"}
    await raw.error(
        "POST",
        "/api/types/Volume/instances",
        {**base, "name": "x" * 32},
        226,
        "The given name exceeds the allowed length of 31 characters.",
    )
    await raw.error(
        "POST",
        "/api/types/Volume/instances",
        {**base, "name": "has space"},
        227,
        "The given name contains invalid characters. Use alphanumeric and "
        "punctuation characters only. Spaces are not allowed.",
    )
    ok = await raw.create(pool, 8, "u_WiUEsGpsSEmO592wtnT9FA==.b/+x")  # base64 + punctuation, 31
    assert (await raw.volume(ok))["name"] == "u_WiUEsGpsSEmO592wtnT9FA==.b/+x"
    await raw.error(
        "POST",
        "/api/types/Volume/instances",
        {**base, "name": "u_WiUEsGpsSEmO592wtnT9FA==.b/+x"},
        99,
        "Volume name already in use. Please use a different name.",
    )
    other = await raw.create(pool, 8, "other")
    await raw.error(
        "POST",
        f"/api/instances/Volume::{other}/action/setVolumeName",
        {"newName": "u_WiUEsGpsSEmO592wtnT9FA==.b/+x"},
        99,
        "Volume name already in use. Please use a different name.",
    )
    # Snapshots share the namespace with volumes.
    await raw.error(
        "POST",
        raw.snapshots,
        {"snapshotDefs": [{"volumeId": other, "snapshotName": "other"}]},
        99,
        "Volume name already in use. Please use a different name.",
    )
    unnamed = await raw.create(pool, 8)
    assert (await raw.volume(unnamed))["name"] is None


async def test_snapshot_limit_per_vtree(raw: Raw, pool: str, sim: Simulator) -> None:
    vol = await raw.create(pool, 8, "lim")
    limit = sim.array.snapshot_limit
    assert limit == (1022 if sim.array.major >= 5 else 126)
    batch = 100
    made = 0
    while made < limit:
        n = min(batch, limit - made)
        defs = [{"volumeId": vol, "snapshotName": f"lim-{made + i}"} for i in range(n)]
        doc = await raw.ok("POST", raw.snapshots, {"snapshotDefs": defs})
        assert len(doc["volumeIdList"]) == n
        made += n
    # A snapshot of a snapshot counts against the same VTree.
    first_snap = await raw.ok(
        "POST", "/api/types/Volume/instances/action/queryIdByKey", {"name": "lim-0"}
    )
    for source in (vol, first_snap):
        await raw.error(
            "POST",
            raw.snapshots,
            {"snapshotDefs": [{"volumeId": source, "snapshotName": "one-more"}]},
            182,
            "There are too many snapshots in the VTree",
        )
    # The refused call created nothing.
    vtree = (await raw.volume(vol))["vtreeId"]
    stats = await raw.ok("GET", f"/api/instances/VTree::{vtree}/relationships/Statistics")
    assert stats["numOfVolumes"] == limit + 1


async def test_remove_modes(raw: Raw, pool: str) -> None:
    async def tree() -> tuple[str, str, str, str]:
        base = await raw.create(pool, 8)
        doc = await raw.ok(
            "POST",
            raw.snapshots,
            {"snapshotDefs": [{"volumeId": base}]},
        )
        s1 = doc["volumeIdList"][0]
        s2 = (
            await raw.ok(
                "POST",
                raw.snapshots,
                {"snapshotDefs": [{"volumeId": s1}]},
            )
        )["volumeIdList"][0]
        s3 = (
            await raw.ok(
                "POST",
                raw.snapshots,
                {"snapshotDefs": [{"volumeId": base}]},
            )
        )["volumeIdList"][0]
        return base, s1, s2, s3

    async def exists(vol: str) -> bool:
        status, _ = await raw.call("GET", f"/api/instances/Volume::{vol}")
        return status == 200

    base, s1, s2, s3 = await tree()
    assert (await raw.action(s1, "removeVolume", {"removeMode": "ONLY_ME"}))[0] == 200
    assert [await exists(v) for v in (base, s1, s2, s3)] == [True, False, True, True]
    assert (await raw.volume(s2))["ancestorVolumeId"] == base  # re-parented

    base, s1, s2, s3 = await tree()
    await raw.action(s1, "removeVolume", {"removeMode": "INCLUDING_DESCENDANTS"})
    assert [await exists(v) for v in (base, s1, s2, s3)] == [True, False, False, True]

    base, s1, s2, s3 = await tree()
    await raw.action(base, "removeVolume", {"removeMode": "DESCENDANTS_ONLY"})
    assert [await exists(v) for v in (base, s1, s2, s3)] == [True, False, False, False]
    await raw.error(
        "POST",
        f"/api/instances/Volume::{base}/action/removeVolume",
        {"removeMode": "DESCENDANTS_ONLY"},
        183,
        "There are no volumes to delete",
    )

    base, s1, s2, s3 = await tree()
    await raw.action(s2, "removeVolume", {"removeMode": "WHOLE_VTREE"})
    assert [await exists(v) for v in (base, s1, s2, s3)] == [False] * 4

    base, s1, _, _ = await tree()
    await raw.action(base, "removeVolume", {"removeMode": "ONLY_ME"})
    assert (await raw.volume(s1))["ancestorVolumeId"] is None  # the snapshot survives its parent

    await raw.error(
        "POST",
        "/api/instances/Volume::00000000deadbeef/action/removeVolume",
        {"removeMode": "ONLY_ME"},
        79,
        "Could not find the volume",
    )


async def test_mapped_volume_cannot_be_removed(raw: Raw, pool: str, sim: Simulator) -> None:
    vol = await raw.create(pool, 8, "mapped")
    sdc = next(h.id for h in sim.array.hosts.values() if h.kind == "SdcHost")
    assert (await raw.action(vol, "addMappedSdc", {"sdcId": sdc}))[0] == 200
    await raw.error(
        "POST",
        f"/api/instances/Volume::{vol}/action/removeVolume",
        {"removeMode": "ONLY_ME"},
        104,
        "Volume is mapped",
    )
    await raw.error(
        "POST", f"/api/instances/Sdc::{sdc}/action/removeSdc", {}, 180, "SDC has mapped volume(s)"
    )
    # A snapshot of the mapped volume blocks INCLUDING_DESCENDANTS on an unmapped parent too.
    assert sim.array.volumes[vol].mappings


async def test_multiple_mappings_need_the_flag(raw: Raw, pool: str, sim: Simulator) -> None:
    vol = await raw.create(pool, 8, "multi")
    if sim.array.legacy:  # 3.x maps SDCs only
        action, key, kind = "addMappedSdc", "sdcId", "SdcHost"
        local = next(h for h in sim.array.hosts.values() if h.kind == "SdcHost")
        await sim.add_fabric_host("node2", None)
        ids = [local.id, next(h.id for h in sim.array.hosts.values() if h.name == "node2")]
    else:
        action, key, kind = "addMappedHost", "hostId", "NVMeHost"
        ids = [
            (await raw.ok("POST", "/api/types/Host/instances", {"nqn": f"nqn.2014-08.org.x:{n}"}))[
                "id"
            ]
            for n in "ab"
        ]
    assert (await raw.action(vol, action, {key: ids[0]}))[0] == 200
    await raw.error(
        "POST",
        f"/api/instances/Volume::{vol}/action/{action}",
        {key: ids[1], "allowMultipleMappings": "FALSE"},
        297,
        "This volume is already mapped and may not be mapped to additional SDCs.",
    )
    status, _ = await raw.action(vol, action, {key: ids[1], "allowMultipleMappings": "true"})
    assert status == 200
    info = (await raw.volume(vol))["mappedSdcInfo"]
    assert {m["sdcId"] for m in info} == set(ids)
    assert {m["hostType"] for m in info} == {kind}
    code = 81 if sim.array.legacy else 4037
    status, doc = await raw.action(vol, action, {key: ids[0]})
    assert (status, doc["errorCode"]) == (500, code)


async def test_snapshots_copy_sparsely(raw: Raw, pool: str, sim: Simulator) -> None:
    vol = await raw.create(pool, 16, "sparse")
    with open(sim.data.materialize(vol, 16 * GIB), "r+b") as f:
        f.seek(3 * GIB)
        f.write(b"z" * 65536)
    snap = (
        await raw.ok(
            "POST",
            raw.snapshots,
            {"snapshotDefs": [{"volumeId": vol}]},
        )
    )["volumeIdList"][0]
    assert sim.data.path(snap).stat().st_size == 16 * GIB
    assert sim.data.allocated(snap) <= 2 * sim.data.allocated(vol) + 65536
    with open(sim.data.path(snap), "rb") as f:
        f.seek(3 * GIB)
        assert f.read(65536) == b"z" * 65536


async def test_overwrite_only_within_a_vtree(raw: Raw, pool: str, sim: Simulator) -> None:
    a = await raw.create(pool, 8, "ow-a")
    b = await raw.create(pool, 8, "ow-b")
    await raw.error(
        "POST",
        f"/api/instances/Volume::{a}/action/overwriteVolumeContent",
        {"srcVolumeId": b},
        198,
        "To overwrite the content of a volume, the source and target volumes must "
        "be from the same V-Tree.",
    )
    await raw.error(
        "POST",
        f"/api/instances/Volume::{a}/action/overwriteVolumeContent",
        {"srcVolumeId": a},
        330,
        "You cannot overwrite a volume with itself.",
    )
    with open(sim.data.materialize(a, 8 * GIB), "r+b") as f:
        f.write(b"before")
    snap = (
        await raw.ok(
            "POST",
            raw.snapshots,
            {"snapshotDefs": [{"volumeId": a, "snapshotName": "ow-s"}]},
        )
    )["volumeIdList"][0]
    inode = sim.data.path(a).stat().st_ino
    with open(sim.data.path(a), "r+b") as f:
        f.seek(GIB)
        f.write(b"after")
    assert (await raw.action(a, "overwriteVolumeContent", {"srcVolumeId": snap}))[0] == 200
    assert sim.data.path(a).stat().st_ino == inode  # same file: attached devices see it
    with open(sim.data.path(a), "rb") as f:
        assert f.read(6) == b"before"
        f.seek(GIB)
        assert f.read(5) == b"\0" * 5


async def test_thin_and_thick_capacity_accounting(raw: Raw, pool: str, sim: Simulator) -> None:
    gran = _gran(sim)
    stats_path = f"/api/instances/StoragePool::{pool}/relationships/Statistics"
    before = await raw.ok("GET", stats_path)
    thick = await raw.create(pool, 16, "cap-thick", volumeType="ThickProvisioned")
    thin = await raw.create(pool, 16, "cap-thin", volumeType="ThinProvisioned")
    after = await raw.ok("GET", stats_path)
    size_kb = 16 * KIB_PER_GIB
    assert after["thickCapacityInUseInKb"] - before["thickCapacityInUseInKb"] == size_kb
    assert after["thinCapacityAllocatedInKb"] - before["thinCapacityAllocatedInKb"] == size_kb
    assert after["netCapacityInUseInKb"] - before["netCapacityInUseInKb"] == size_kb  # thick only
    assert after["numOfVolumes"] == before["numOfVolumes"] + 2
    assert after["capacityAvailableForVolumeAllocationInKb"] % (gran * KIB_PER_GIB) == 0
    with open(sim.data.materialize(thin, 16 * GIB), "r+b") as f:
        f.write(b"x" * 1024 * 1024)
    written = await raw.ok("GET", stats_path)
    assert written["netCapacityInUseInKb"] - after["netCapacityInUseInKb"] >= 1024
    assert written["capacityInUseInKb"] == 2 * written["netCapacityInUseInKb"]  # mirrored
    # Thick volumes cannot exceed the usable capacity; thin ones may, up to the limit.
    sp = sim.array.pools[pool]
    status, doc = await raw.call(
        "POST",
        "/api/types/Volume/instances",
        {
            "storagePoolId": pool,
            "volumeSizeInGb": str(sp.capacity_gb),
            "volumeType": "ThickProvisioned",
        },
    )
    assert (status, doc["errorCode"]) == (500, 191)
    big = await raw.create(pool, sp.capacity_gb, "cap-over", volumeType="ThinProvisioned")
    assert big
    del thick


async def test_wire_shapes(raw: Raw, pool: str, sim: Simulator) -> None:
    vol = await raw.create(pool, 8, "shape")
    doc = await raw.volume(vol)
    assert doc["mappedSdcInfo"] is None
    links = {link["rel"]: link["href"] for link in doc["links"]}
    assert links["self"] == f"/api/instances/Volume::{vol}"
    assert links["/api/parent/relationship/vtreeId"] == f"/api/instances/VTree::{doc['vtreeId']}"
    assert links["/api/Volume/relationship/Statistics"].endswith("/relationships/Statistics")
    assert ("nsid" in doc) is not sim.array.legacy
    # Media-type parameters and string booleans are accepted; actions answer {}.
    status, body = await raw.call(
        "POST",
        f"/api/instances/Volume::{vol}/action/setVolumeName",
        '{"newName": "shape-2"}',
        **{"Content-Type": "application/json;version=4.0"},
    )
    assert (status, body) == (200, {})
    system = (await raw.ok("GET", "/api/types/System/instances"))[0]
    assert ("systemNqn" in system) is not sim.array.legacy
    assert await raw.ok("GET", "/api/version") == sim.array.api_version
    status, body = await raw.call("POST", "/api/types/Volume/instances", "not json")
    assert status == 400
    assert body["errorCode"] == 0
    legacy = await raw.ok("GET", "/api/types/Volume/instances/getByName::shape-2")
    assert legacy == vol


async def test_401_shapes(sim: Simulator) -> None:
    async with (
        aiohttp.ClientSession(base_url=sim.url) as s,
        s.get("/api/types/Volume/instances", headers={"Authorization": "Bearer nope"}) as r,
    ):
        assert r.status == 401
        if sim.array.legacy:
            assert await r.json() == {
                "message": "Unauthorized",
                "httpStatusCode": 401,
                "errorCode": 0,
            }
        else:
            assert r.content_type == "text/html"


async def test_credentials_and_logout(sim: Simulator, password: str) -> None:
    async with aiohttp.ClientSession(base_url=sim.url) as s:
        bad = base64.b64encode(b"admin:wrong").decode()
        async with s.get("/api/login", headers={"Authorization": f"Basic {bad}"}) as r:
            assert r.status == 401
        if not sim.array.legacy:
            async with s.post(
                "/rest/auth/login", json={"username": "admin", "password": "wrong"}
            ) as r:
                assert r.status == 401
            async with s.post(
                "/rest/auth/login", json={"username": "admin", "password": password}
            ) as r:
                tokens = await r.json()
            hdr = {"Authorization": f"Bearer {tokens['access_token']}"}
            async with s.post(
                "/rest/auth/logout", headers=hdr, json={"refresh_token": tokens["refresh_token"]}
            ) as r:
                assert r.status == 204
            async with s.get("/api/version", headers=hdr) as r:
                assert r.status == 401
        else:
            async with s.post("/rest/auth/login", json={}) as r:
                assert r.status == 404


async def test_token_expiry(make_sim: SimFactory, password: str) -> None:
    clock = ManualClock()
    sim = await make_sim(api_version="4.5", token_lifetime=300, token_idle=600, clock=clock)
    async with aiohttp.ClientSession(base_url=sim.url) as s:
        raw = Raw(s, await _login(s, sim, password), sim)
        await raw.ok("GET", "/api/version")
        clock.advance(299)
        await raw.ok("GET", "/api/version")
        clock.advance(2)  # past its lifetime, though in use
        status, _ = await raw.call("GET", "/api/version")
        assert status == 401
    clock = ManualClock()
    idle = await make_sim(api_version="3.6", token_lifetime=3600, token_idle=600, clock=clock)
    async with aiohttp.ClientSession(base_url=idle.url) as s:
        raw = Raw(s, await _login(s, idle, password), idle)
        for _ in range(3):
            clock.advance(500)
            await raw.ok("GET", "/api/version")  # use keeps it alive
        clock.advance(601)
        status, _ = await raw.call("GET", "/api/version")
        assert status == 401


async def test_state_survives_restart(make_sim: SimFactory, password: str, tmp_path: Any) -> None:
    state = tmp_path / "persist"
    sim = await make_sim(api_version="4.5", state_dir=state)
    async with aiohttp.ClientSession(base_url=sim.url) as s:
        raw = Raw(s, await _login(s, sim, password), sim)
        pool_id = next(p.id for p in sim.array.pools.values() if p.name == "sp1")
        vol = await raw.create(pool_id, 8, "keep-me")
        host = await raw.ok(
            "POST", "/api/types/Host/instances", {"nqn": "nqn.2014-08.org.nvmexpress:uuid:k"}
        )
        await raw.action(vol, "addMappedHost", {"hostId": host["id"]})
    system_id = sim.array.system_id
    await sim.stop()
    again = await make_sim(api_version="4.5", state_dir=state)
    assert again.array.system_id == system_id
    async with aiohttp.ClientSession(base_url=again.url) as s:
        raw = Raw(s, await _login(s, again, password), again)
        doc = await raw.volume(vol)
        assert doc["name"] == "keep-me"
        assert doc["mappedSdcInfo"][0]["sdcId"] == host["id"]
        new = await raw.create(pool_id, 8, "after-restart")
        assert new != vol


async def test_generation_two_snapshots_thin_clones_and_refresh(
    raw: Raw, pool: str, sim: Simulator
) -> None:
    """5.x snapshots with createSnapshot (no access mode), copies with thin clones in the
    source's VTree, and refresh within a VTree; each generation serves only its own."""
    vol = await raw.create(pool, 8, "g2")
    system = f"/api/instances/System::{sim.array.system_id}/action"
    defs = {"snapshotDefs": [{"volumeId": vol, "snapshotName": "g2-s"}]}
    if sim.array.major < 5:
        for action in ("createSnapshot", "createThinClone"):
            assert (await raw.call("POST", f"{system}/{action}", defs))[0] == 404
        assert (await raw.action(vol, "refresh", {"srcVolumeId": vol}))[0] == 404
        return
    assert (await raw.call("POST", "/api/instances/System/action/snapshotVolumes", defs))[0] == 404
    status, doc = await raw.call(
        "POST", f"{system}/createSnapshot", {**defs, "accessModeLimit": "ReadWrite"}
    )
    assert (status, doc["errorCode"]) == (400, 0)
    snap = (await raw.ok("POST", f"{system}/createSnapshot", defs))["volumeIdList"][0]
    with open(sim.data.materialize(vol, 8 * GIB), "r+b") as f:
        f.write(b"current")
    clone_defs = {"snapshotDefs": [{"volumeId": snap, "snapshotName": "g2-clone"}]}
    clone = (await raw.ok("POST", f"{system}/createThinClone", clone_defs))["volumeIdList"][0]
    doc = await raw.volume(clone)
    source = await raw.volume(vol)
    assert (doc["volumeType"], doc["ancestorVolumeId"]) == ("ThinClone", snap)
    assert doc["vtreeId"] == source["vtreeId"]
    assert not sim.data.path(clone).exists()  # the snapshot's content: all zeros
    assert (await raw.action(clone, "refresh", {"srcVolumeId": vol}))[0] == 200
    with open(sim.data.path(clone), "rb") as f:
        assert f.read(7) == b"current"
    other = await raw.create(pool, 8, "g2-other")
    await raw.error(
        "POST",
        f"/api/instances/Volume::{other}/action/refresh",
        {"srcVolumeId": vol},
        198,
        "To overwrite the content of a volume, the source and target volumes must "
        "be from the same V-Tree.",
    )
