"""Volumes in use on this host: attached (mounted, or a block device), kept across
restarts and crashes, released on detach; what rename, delete and restore do meanwhile."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import web

from lxflex.driver import Conflict, InvalidRequest, NotFound, Unavailable
from lxflex.embedded import host_settings
from lxflex.host.fs import is_mounted
from lxflex.service import Storage
from lxflex.sim.control import Fault
from lxflex.state.schema import attachments

from .conftest import StorageFactory

SNAPSHOT = "POST /api/instances/System/action/snapshotVolumes"


def _mapped(storage: Storage) -> list[str]:
    sim = storage.sim  # type: ignore[attr-defined]
    return sorted(v.id for v in sim.array.volumes.values() if v.mappings)


async def _crash(storage: Storage) -> None:
    """What a kill -9 leaves: the kernel's mounts and mappings, none of the process."""
    await storage.runtimes.close()
    await storage.db.close()


async def test_a_filesystem_volume_attached_is_mounted_until_detached(
    make_storage: StorageFactory, tmp_path: Path
) -> None:
    storage = await make_storage()
    await storage.volumes.create("pf", "data")
    path = tmp_path / "srv" / "data"
    view = await storage.attachments.attach("pf", "data", path=path)
    assert view.path == str(path)
    assert view.instance == ""
    stable = storage.volumes.mount_path("pf", "default", "data")
    assert is_mounted(stable)
    assert is_mounted(path)
    (path / "hello.txt").write_text("written through the attachment\n")
    assert (stable / "hello.txt").read_text() == "written through the attachment\n"
    again = await storage.attachments.attach("pf", "data", path=path)  # no change
    assert again.created_at == view.created_at
    with pytest.raises(Conflict, match=r"attached to this host at .* already"):
        await storage.attachments.attach("pf", "data", path=tmp_path / "elsewhere")
    assert [a.path for a in await storage.attachments.of_volume("pf", "data")] == [str(path)]

    await storage.attachments.detach("pf", "data")
    assert not is_mounted(path)
    assert not is_mounted(stable)
    assert _mapped(storage) == []
    assert await storage.attachments.of_volume("pf", "data") == []
    with pytest.raises(NotFound, match="not attached to this host"):
        await storage.attachments.detach("pf", "data")
    # What was written is the volume's: it is in its export.
    backup = await storage.backups.create("pf", "data", volume_only=True)
    with tarfile.open(await storage.backups.tarball("pf", "data", backup.name)) as tar:
        member = tar.extractfile("backup/volume/hello.txt")
        assert member is not None
        assert member.read() == b"written through the attachment\n"


async def test_a_block_volume_attached_is_its_device(make_storage: StorageFactory) -> None:
    storage = await make_storage()
    await storage.volumes.create("pf", "raw", content_type="block")
    with pytest.raises(InvalidRequest, match="block volume: its device"):
        await storage.attachments.attach("pf", "raw", path=Path("/mnt/raw"))
    view = await storage.attachments.attach("pf", "raw")
    device = Path(view.path)
    assert device.is_symlink()  # the stable by-id link
    fd = os.open(device, os.O_RDWR)
    try:
        os.pwrite(fd, b"block data", 4096)
    finally:
        os.close(fd)
    await storage.attachments.detach("pf", "raw")
    assert not device.exists()
    assert _mapped(storage) == []


async def test_an_attached_volume_refuses_what_would_pull_it_away(
    make_storage: StorageFactory,
) -> None:
    storage = await make_storage()
    await storage.volumes.create("pf", "busy")
    await storage.volumes.snapshot("pf", "busy", "s0")
    await storage.volumes.create("pf", "other")
    await storage.attachments.attach("pf", "busy")
    for action, doing in (
        (storage.volumes.delete("pf", "busy"), "delete it"),
        (storage.volumes.rename("pf", "busy", "moved"), "rename it"),
        (storage.volumes.restore("pf", "busy", "s0"), "restore it"),
    ):
        with pytest.raises(
            Conflict, match=f"attached for the host at .*: detach it before you {doing}"
        ):
            await action
    # What leaves it in place goes on: a snapshot (frozen), a grow, a copy.
    await storage.volumes.snapshot("pf", "busy", "s1")
    await storage.volumes.update("pf", "busy", {"size": "16GiB"})
    await storage.volumes.copy("pf", "busy", "pf", "copied")
    await storage.attachments.detach("pf", "busy")
    await storage.volumes.rename("pf", "busy", "moved")
    await storage.volumes.delete("pf", "moved")


async def test_attachments_outlive_a_crash_and_a_lost_mount(
    make_storage: StorageFactory, tmp_path: Path
) -> None:
    """lxflexd killed: at its next start the mount it left is kept, the block volume
    stays mapped (start-up repair does not sweep it), and a mount lost meanwhile is made
    again; all of them detach as before."""
    storage = await make_storage()
    sim = storage.sim  # type: ignore[attr-defined]
    await storage.volumes.create("pf", "kept")
    await storage.volumes.create("pf", "lost")
    await storage.volumes.create("pf", "raw", content_type="block")
    kept = await storage.attachments.attach("pf", "kept", path=tmp_path / "kept")
    lost = await storage.attachments.attach("pf", "lost")
    raw = await storage.attachments.attach("pf", "raw")
    (Path(kept.path) / "f").write_text("still here")
    await _crash(storage)
    os.system(f"umount {lost.path}")  # noqa: S605 - lost behind lxflex's back
    assert not is_mounted(Path(lost.path))

    restarted = await Storage.open(host_settings(sim, tmp_path / "lxflex0"))
    try:
        await restarted.recover()
        assert (Path(kept.path) / "f").read_text() == "still here"
        assert is_mounted(Path(lost.path))
        assert Path(raw.path).exists()
        assert len(_mapped(storage)) == 3
        for name in ("kept", "lost", "raw"):
            await restarted.attachments.detach("pf", name)
        assert not is_mounted(Path(kept.path))
        assert _mapped(storage) == []
    finally:
        await restarted.close()


async def test_a_failed_attach_leaves_nothing(make_storage: StorageFactory) -> None:
    storage = await make_storage()
    sim = storage.sim  # type: ignore[attr-defined]
    await storage.volumes.create("pf", "data")
    sim.faults.append(Fault(route="POST */addMappedHost", http_status=500, count=1))
    with pytest.raises(Exception, match="attach"):
        await storage.attachments.attach("pf", "data")
    assert await storage.attachments.of_volume("pf", "data") == []
    assert _mapped(storage) == []
    assert not is_mounted(storage.volumes.mount_path("pf", "default", "data"))
    await storage.attachments.attach("pf", "data")  # and it works once the array does
    await storage.attachments.detach("pf", "data")


async def test_storage_check_finds_a_lost_attachment_and_attaches_it_again(
    make_storage: StorageFactory, tmp_path: Path
) -> None:
    storage = await make_storage()
    await storage.volumes.create("pf", "data")
    await storage.volumes.create("pf", "raw", content_type="block")
    data = await storage.attachments.attach("pf", "data", path=tmp_path / "data")
    await storage.attachments.attach("pf", "raw")
    assert (await storage.check("pf")).findings == []  # in use: no leftover mapping
    os.system(f"umount {data.path}")  # noqa: S605 - lost behind lxflex's back
    report = await storage.check("pf")
    assert [(f.kind, f.subject) for f in report.findings] == [
        ("attachment", f"attachment of storage volume default/data at {data.path}")
    ]
    assert "it is not mounted at" in report.findings[0].meaning
    repaired = await storage.check("pf", repair=True)
    assert all(f.repaired for f in repaired.findings)
    assert is_mounted(Path(data.path))
    assert (await storage.check("pf")).findings == []
    for name in ("data", "raw"):
        await storage.attachments.detach("pf", name)
    assert _mapped(storage) == []
    assert (await storage.check("pf")).findings == []


async def test_a_copy_of_an_attached_volume_reads_one_instant_of_it(
    make_storage: StorageFactory,
) -> None:
    """The volume is mounted and in use: its blocks change under a copy. The copy reads
    a snapshot taken with the filesystem frozen, removed after; a failure to remove it
    leaves it to the journal, which start-up repair or storage check finishes."""
    storage = await make_storage()
    sim = storage.sim  # type: ignore[attr-defined]
    await storage.volumes.create("pf", "live")
    view = await storage.attachments.attach("pf", "live")
    (Path(view.path) / "before.txt").write_text("in the copy\n")
    sim.counters.clear()
    await storage.volumes.copy("pf", "live", "pf", "copied")
    counters = dict(sim.counters)
    assert counters.get(SNAPSHOT) == 1
    assert len(sim.array.volumes) == 2  # the still view is gone
    assert await storage.pools.journal.entries() == []
    copied = await storage.volumes.mount("pf", "copied")
    try:
        assert (copied / "before.txt").read_text() == "in the copy\n"
    finally:
        await storage.volumes.unmount("pf", "copied")
    # Its removal refused: the journal keeps it, and the check removes it.
    sim.faults.append(Fault(route="POST */removeVolume", http_status=500, error_code=65, count=8))
    await storage.volumes.copy("pf", "live", "pf", "copied2")
    sim.faults.clear()
    assert len(sim.array.volumes) == 4
    assert len(await storage.pools.journal.entries()) == 1
    report = await storage.check("pf", repair=True)
    assert report.findings, "the leftover view is a finding"
    assert all(f.repaired for f in report.findings)
    assert len(sim.array.volumes) == 3
    await storage.attachments.detach("pf", "live")


async def test_storage_check_unmounts_a_volume_another_host_has_now(
    make_storage: StorageFactory,
) -> None:
    """This host was fenced while Offline and the volume attached elsewhere: its mount
    here is a stray (nothing here may write the volume); the check says so and the
    repair unmounts it."""
    storage = await make_storage()
    await storage.volumes.create("pf", "data")
    view = await storage.attachments.attach("pf", "data")
    async with storage.db.write() as conn:  # the volume is another server's now
        await conn.execute(
            sa.update(attachments).values(server_uuid="00000000-0000-0000-0000-0000000000ff")
        )
    (finding,) = (await storage.check("pf")).findings
    assert finding.kind == "attachment"
    assert finding.subject == f"mount of storage volume default/data at {view.path}"
    assert "another host has it" in finding.meaning
    repaired = await storage.check("pf", repair=True)
    assert all(f.repaired for f in repaired.findings)
    assert not is_mounted(Path(view.path))
    assert (await storage.check("pf")).findings == []
    assert _mapped(storage) == []


class FakeLxd:
    """An LXD API on a unix socket with one unprivileged container, ``c1``, whose devices
    it keeps as LXD does; the next ``cut`` changes of it have their connection cut (the
    host's LXD going away in the middle of a request)."""

    IDMAP = (
        '[{"Isuid":true,"Isgid":false,"Hostid":1000000,"Nsid":0,"Maprange":65536},'
        '{"Isuid":false,"Isgid":true,"Hostid":1000000,"Nsid":0,"Maprange":65536}]'
    )

    def __init__(self, socket: Path, *, status: str = "Stopped", cut: int = 0) -> None:
        self.socket, self.status, self.cut = socket, status, cut
        self.devices: dict[str, dict[str, str]] = {}
        self.changes = 0
        self.app = web.Application()
        self.app.router.add_get("/1.0/instances/c1", self._instance)
        self.app.router.add_patch("/1.0/instances/c1", self._change)
        self.app.router.add_put("/1.0/instances/c1", self._change)
        self.runner = web.AppRunner(self.app)

    async def _instance(self, _request: web.Request) -> web.Response:
        doc = {
            "name": "c1",
            "type": "container",
            "status": self.status,
            "config": {"volatile.idmap.current": self.IDMAP},
            "devices": dict(self.devices),
        }
        body = {"type": "sync", "status_code": 200, "metadata": doc}
        return web.json_response(body, headers={"ETag": '"1"'})

    async def _change(self, request: web.Request) -> web.Response:
        self.changes += 1
        if self.cut:
            self.cut -= 1
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError
        devices = (await request.json()).get("devices") or {}
        if request.method == "PUT":  # the whole instance: its devices as given
            self.devices = dict(devices)
        else:  # a PATCH replaces the devices it names
            self.devices.update(devices)
        return web.json_response({"type": "sync", "status_code": 200, "metadata": {}})

    async def __aenter__(self) -> FakeLxd:
        await self.runner.setup()
        await web.UnixSite(self.runner, str(self.socket)).start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.runner.cleanup()


async def test_an_lxd_that_goes_away_mid_attach_leaves_the_volume_as_it_was(
    make_storage: StorageFactory, tmp_path: Path
) -> None:
    storage = await make_storage()
    await storage.volumes.create("pf", "data")
    before = (await storage.volumes.get("pf", "data")).config
    async with FakeLxd(tmp_path / "lxd.socket", status="Running", cut=1) as lxd:
        with pytest.raises(Unavailable, match="did not answer PATCH"):
            await storage.attachments.instances.attach(
                "pf", "data", instance="c1", path="/data", socket=lxd.socket
            )
        assert lxd.changes == 1  # it was asked: the mount and the shift had been made
    assert await storage.attachments.of_volume("pf", "data") == []
    assert _mapped(storage) == []
    stable = storage.volumes.mount_path("pf", "default", "data")
    assert not is_mounted(stable)
    assert (await storage.volumes.get("pf", "data")).config == before  # no map recorded
    # The files are the host's again: not shifted to the container's map.
    mounted = await storage.attachments.attach("pf", "data")
    assert os.stat(mounted.path).st_uid == 0
    await storage.attachments.detach("pf", "data")


async def test_a_volume_moves_to_another_pool_under_a_stopped_instance(
    make_storage: StorageFactory, tmp_path: Path
) -> None:
    """As LXD moves a custom volume whose instances are stopped: its uses go to the copy
    in the other pool (mounted there, the device pointed at it) before the source is
    deleted; refused while the instance runs; a move that fails midway puts them back."""
    storage = await make_storage()
    stored = await storage.pools.record("pf")
    config = {k: v for k, v in stored.config.items() if not k.startswith("volatile.")}
    await storage.pools.create("pf2", "powerflex", config, password=stored.password)
    await storage.volumes.create("pf", "data")
    async with FakeLxd(tmp_path / "lxd.socket") as lxd:
        given = await storage.attachments.instances.attach(
            "pf", "data", instance="c1", path="/data", socket=lxd.socket
        )
        (Path(given.path) / "f").write_text("kept\n")
        lxd.cut = 1  # LXD goes away as the device is pointed at the copy
        with pytest.raises(Unavailable, match="cannot point 'c1'"):
            await storage.volumes.move("pf", "data", "pf2", "data")
        assert lxd.devices["data"]["source"] == given.path
        assert is_mounted(Path(given.path))
        assert [u.instance for u in await storage.attachments.of_volume("pf", "data")] == ["c1"]
        with pytest.raises(NotFound):
            await storage.volumes.get("pf2", "data")  # the copy is gone again

        await storage.volumes.move("pf", "data", "pf2", "data")
        moved = lxd.devices["data"]["source"]
        assert moved == str(storage.volumes.mount_path("pf2", "default", "data"))
        assert (Path(moved) / "f").read_text() == "kept\n"
        assert not Path(given.path).exists()
        (use,) = await storage.attachments.of_volume("pf2", "data")
        assert (use.instance, use.path) == ("c1", moved)
        with pytest.raises(NotFound):
            await storage.volumes.get("pf", "data")
        lxd.status = "Running"
        with pytest.raises(Conflict, match="Volume is still in use by running instances"):
            await storage.volumes.move("pf2", "data", "pf", "data")
        lxd.status = "Stopped"
        await storage.attachments.instances.detach("pf2", "data", instance="c1")
    assert _mapped(storage) == []
