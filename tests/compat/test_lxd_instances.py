"""PowerFlex volumes inside real LXD 5.0.2 instances: a container made from a locally
built busybox image is given a volume by ``lxflex storage volume attach --instance``,
writes into it, and lets go of it when LXD takes the device away or deletes it.

CI installs ``lxd`` and ``busybox-static``; without them (outside CI) this is skipped.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .daemon import Daemon, busybox_image, lxflex, real_lxd, running_daemon

pytestmark = pytest.mark.root

POOL = "powerflex"


@dataclass
class Stack:
    lxflex: Daemon
    lxd: Daemon

    def lxflex_cli(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        return lxflex(self.lxflex, *args, code=code)

    def give(
        self, volume: str, path: str, instance: str, *extra: str, code: int = 0
    ) -> subprocess.CompletedProcess[str]:
        """``lxflex storage volume attach POOL VOLUME PATH --instance INSTANCE``."""
        socket = ["--socket", str(self.lxd.socket)]
        attach = ["storage", "volume", "attach", POOL, volume, path, "--instance", instance]
        return self.lxflex_cli(*attach, *socket, *extra, code=code)

    def volume(self, name: str) -> dict[str, object]:
        doc = json.loads(
            self.lxflex.lxc("query", f"/1.0/storage-pools/{POOL}/volumes/custom/{name}").stdout
        )
        assert isinstance(doc, dict)
        return doc

    def devices(self, instance: str) -> dict[str, dict[str, str]]:
        doc = json.loads(self.lxd.lxc("query", f"/1.0/instances/{instance}").stdout)
        return dict(doc["devices"])

    def released(self, name: str, timeout: float = 30) -> None:
        """Wait until lxflex no longer counts the volume as used."""
        deadline = time.monotonic() + timeout
        while self.volume(name)["used_by"]:
            assert time.monotonic() < deadline, f"{name} was never released"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("lxd-instances")
    with real_lxd(tmp, "dir") as lxd, running_daemon(tmp / "lxflex") as lxflex:
        busybox_image(lxd, tmp)
        lxd.lxc("init", "busybox", "c1")
        lxd.lxc("start", "c1")
        yield Stack(lxflex, lxd)


def test_a_container_writes_into_a_powerflex_volume(stack: Stack) -> None:
    stack.lxflex_cli("storage", "volume", "create", POOL, "data", "size=8GiB")
    where = stack.give("data", "/data", "c1").stdout.strip()
    device = stack.devices("c1")["data"]
    assert device == {"type": "disk", "source": where, "path": "/data"}
    # Inside the unprivileged container the volume is its root's (shifted on disk).
    stack.lxd.lxc("exec", "c1", "--", "sh", "-c", "echo 'from the container' > /data/hello; sync")
    listed = stack.lxd.lxc("exec", "c1", "--", "ls", "-ln", "/data/hello").stdout.split()
    assert listed[2:4] == ["0", "0"], listed
    assert stack.volume("data")["used_by"] == ["/1.0/instances/c1"]
    refused = stack.lxflex.lxc("storage", "volume", "delete", POOL, "data", check=False)
    assert "attached for instance 'c1'" in refused.stderr
    not_host = stack.lxflex_cli("storage", "volume", "detach", POOL, "data", code=1)
    assert "given to instance 'c1': detach it with --instance" in not_host.stderr

    # Written inside, it is the volume's: in its export.
    export = Path(stack.lxflex.state.parent / "data.tar.gz")
    stack.lxflex.lxc("storage", "volume", "export", POOL, "data", str(export))
    with tarfile.open(export) as tar:
        member = tar.extractfile("backup/volume/hello")
        assert member is not None
        assert member.read() == b"from the container\n"

    # LXD takes the device away: lxflex lets go of the volume.
    stack.lxd.lxc("config", "device", "remove", "c1", "data")
    stack.released("data")
    assert not Path(where).exists()  # no empty directory to take for it
    stack.lxflex.lxc("storage", "volume", "delete", POOL, "data")


def test_a_deleted_instance_releases_its_volumes(stack: Stack) -> None:
    stack.lxd.lxc("init", "busybox", "c2")
    stack.lxflex_cli("storage", "volume", "create", POOL, "raw", "--type", "block", "size=8GiB")
    device = stack.give("raw", "/dev/raw", "c2", "--device", "disk1").stdout.strip()
    given = stack.devices("c2")["disk1"]
    assert given == {"type": "unix-block", "source": device, "path": "/dev/raw"}
    assert stack.volume("raw")["used_by"] == ["/1.0/instances/c2"]
    stack.lxd.lxc("delete", "c2")
    stack.released("raw")
    report = json.loads(stack.lxflex.lxc("query", f"/1.0/storage-pools/{POOL}/check").stdout)
    assert report["mapped"] == 0  # unmapped from this host
    assert report["clean"], report["findings"]
    stack.lxflex.lxc("storage", "volume", "delete", POOL, "raw")


def test_what_an_instance_cannot_be_given_is_refused(stack: Stack) -> None:
    stack.lxflex_cli("storage", "volume", "create", POOL, "v", "size=8GiB")
    gone = stack.give("v", "/v", "nosuch", code=1)
    assert "instance 'nosuch' not found" in gone.stderr
    relative = stack.give("v", "v", "c1", code=1)
    assert "absolute path" in relative.stderr
    stack.lxd.lxc("config", "device", "add", "c1", "v", "disk", "source=/tmp", "path=/busy")
    taken = stack.give("v", "/v", "c1", code=1)
    assert "already has a device named 'v'" in taken.stderr
    stack.lxd.lxc("config", "device", "remove", "c1", "v")
    # Nothing of the refused attachments is left: not used, not mounted, deletable.
    assert stack.volume("v")["used_by"] == []
    mounts = subprocess.run(
        ["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=False
    )
    assert not [m for m in mounts.stdout.split() if m.endswith("/default_v")]
    stack.lxflex.lxc("storage", "volume", "delete", POOL, "v")


def test_a_renamed_instance_keeps_its_volume(stack: Stack) -> None:
    stack.lxd.lxc("init", "busybox", "r1")
    stack.lxflex_cli("storage", "volume", "create", POOL, "kept", "size=8GiB")
    stack.give("kept", "/kept", "r1")
    stack.lxd.lxc("move", "r1", "r2")
    deadline = time.monotonic() + 30
    while stack.volume("kept")["used_by"] != ["/1.0/instances/r2"]:
        assert time.monotonic() < deadline, stack.volume("kept")["used_by"]
        time.sleep(0.2)
    time.sleep(1)  # and it stays so: the rename is no release
    assert stack.volume("kept")["used_by"] == ["/1.0/instances/r2"]
    stack.lxflex_cli("storage", "volume", "detach", POOL, "kept", "--instance", "r2")
    assert "kept" not in stack.devices("r2")
    stack.lxd.lxc("delete", "r2")
    stack.lxflex.lxc("storage", "volume", "delete", POOL, "kept")


def test_a_volume_is_restored_under_a_stopped_instance_as_lxd_does(stack: Stack) -> None:
    """LXD restores a custom volume whose instances are stopped, and refuses while one
    runs. The restored files are shifted to the instance's map again (the snapshot was
    taken before the volume was ever given to it)."""
    stack.lxflex_cli("storage", "volume", "create", POOL, "back", "size=8GiB")
    stack.lxflex.lxc("storage", "volume", "snapshot", POOL, "back", "empty")
    stack.give("back", "/back", "c1")
    stack.lxd.lxc("exec", "c1", "--", "sh", "-c", "echo later > /back/later")
    running = stack.lxflex.lxc("storage", "volume", "restore", POOL, "back", "empty", check=False)
    assert "Cannot restore custom volume used by running instances" in running.stderr
    stack.lxd.lxc("stop", "c1", "--force")
    try:
        stack.lxflex.lxc("storage", "volume", "restore", POOL, "back", "empty")
    finally:
        stack.lxd.lxc("start", "c1")
    listed = stack.lxd.lxc("exec", "c1", "--", "ls", "-lna", "/back").stdout
    assert "later" not in listed  # the snapshot's content
    root = next(line for line in listed.splitlines() if line.endswith(" ."))
    assert root.split()[2:4] == ["0", "0"], listed  # shifted to the container again
    stack.lxflex_cli("storage", "volume", "detach", POOL, "back", "--instance", "c1")
    stack.lxflex.lxc("storage", "volume", "delete", POOL, "back")


def test_a_volume_is_renamed_under_a_stopped_instance_as_lxd_does(stack: Stack) -> None:
    """LXD renames a custom volume whose instances are stopped, and refuses while one
    runs. The instance's device follows the new name (its source, the mount moved);
    a rename that fails (the name is taken) puts everything back."""
    stack.lxflex_cli("storage", "volume", "create", POOL, "old", "size=8GiB")
    stack.lxflex_cli("storage", "volume", "create", POOL, "taken", "size=8GiB")
    where = stack.give("old", "/old", "c1").stdout.strip()
    stack.lxd.lxc("exec", "c1", "--", "sh", "-c", "echo kept > /old/f; sync")
    rename = ["storage", "volume", "rename", POOL]
    running = stack.lxflex.lxc(*rename, "old", "new", check=False)
    assert "Volume is still in use by running instances" in running.stderr
    stack.lxd.lxc("stop", "c1", "--force")
    try:
        clash = stack.lxflex.lxc(*rename, "old", "taken", check=False)
        assert "'taken' already exists" in clash.stderr
        assert stack.devices("c1")["old"]["source"] == where  # put back

        assert Path(where).is_mount()
        stack.lxflex.lxc(*rename, "old", "new")
    finally:
        stack.lxd.lxc("start", "c1")
    moved = stack.devices("c1")["old"]  # LXD keeps the device's name too
    assert moved["source"].endswith("/default_new")
    assert Path(moved["source"]).is_mount()
    assert not Path(where).exists()
    assert stack.lxd.lxc("exec", "c1", "--", "cat", "/old/f").stdout == "kept\n"
    assert stack.volume("new")["used_by"] == ["/1.0/instances/c1"]
    (use,) = json.loads(
        stack.lxflex.lxc(
            "query", f"/1.0/storage-pools/{POOL}/volumes/custom/new/attachments"
        ).stdout
    )
    assert use["path"] == moved["source"]
    stack.lxflex_cli("storage", "volume", "detach", POOL, "new", "--instance", "c1")
    assert not Path(moved["source"]).exists()
    for name in ("new", "taken"):
        stack.lxflex.lxc("storage", "volume", "delete", POOL, name)
