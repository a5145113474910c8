import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from lxflex.host.discovery import ModeUnavailable, check_mode, discover_mode
from lxflex.host.nvme import NvmeConfig, NvmeHost, host_nqn, nguid
from lxflex.host.runner import CommandError, Completed, SubprocessRunner
from lxflex.host.watch import wait_for_path


async def test_wait_for_path_wakes_on_creation_and_removal(tmp_path: Path) -> None:
    link = tmp_path / "nvme-eui.x"
    target = tmp_path / "dev"

    async def make() -> None:
        await asyncio.sleep(0.05)
        target.write_text("")
        link.symlink_to(target)

    task = asyncio.create_task(make())
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wait_for_path(link, timeout=5)
    assert loop.time() - started < 1
    await task
    remover = asyncio.create_task(asyncio.to_thread(link.unlink))
    await wait_for_path(link, present=False, timeout=5)
    await remover
    with pytest.raises(TimeoutError):
        await wait_for_path(link, timeout=0.05)


async def test_wait_for_path_asks_ready_of_a_present_link(tmp_path: Path) -> None:
    """A stale link exists but is not ready: the wait goes on until the link is replaced
    by one that is."""
    link = tmp_path / "nvme-eui.x"
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_text("")
    new.write_text("")
    link.symlink_to(old)

    def right(path: Path) -> bool:
        return path.resolve() == new

    with pytest.raises(TimeoutError):
        await wait_for_path(link, timeout=0.05, ready=right)

    async def replace() -> None:
        await asyncio.sleep(0.05)
        link.unlink()
        link.symlink_to(new)

    task = asyncio.create_task(replace())
    await wait_for_path(link, timeout=5, ready=right)
    await task


def _modules(root: Path, *names: str) -> None:
    for n in names:
        (root / "sys" / "module" / n).mkdir(parents=True)


def test_mode_discovery(tmp_path: Path) -> None:
    with pytest.raises(ModeUnavailable) as info:
        discover_mode(tmp_path)
    assert "nvme_tcp and nvme_fabrics" in str(info.value)
    assert "drv_cfg" in str(info.value)
    _modules(tmp_path, "scini")
    drv = tmp_path / "opt/emc/scaleio/sdc/bin/drv_cfg"
    drv.parent.mkdir(parents=True)
    drv.write_text("")
    assert discover_mode(tmp_path) == "sdc"
    _modules(tmp_path, "nvme_tcp", "nvme_fabrics")
    assert discover_mode(tmp_path) == "nvme/tcp"  # preferred when both work
    check_mode("nvme", tmp_path)
    with pytest.raises(ModeUnavailable, match="nvme_tcp"):
        check_mode("nvme/tcp", tmp_path / "elsewhere")


class Recorder:
    def __init__(self, fail: set[str]) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    async def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 300
    ) -> Completed:
        self.calls.append(list(argv))
        if any(f in argv for f in self.fail):
            raise CommandError(argv, 1, "Failed to write to /dev/nvme-fabrics: Connection refused")
        return Completed(tuple(argv), 0, "", "")


async def test_nvme_connects_through_first_answering_target(tmp_path: Path) -> None:
    rec = Recorder(fail={"10.0.0.1"})
    host = NvmeHost(rec, NvmeConfig(nvme="/x/nvme", by_id=tmp_path, sys=tmp_path))
    await host.connect(["10.0.0.1", "10.0.0.2:8009"], "nqn.h")
    assert rec.calls == [
        ["/x/nvme", "connect-all", "-t", "tcp", "-a", "10.0.0.1", "-q", "nqn.h"],
        ["/x/nvme", "connect-all", "-t", "tcp", "-a", "10.0.0.2", "-q", "nqn.h", "-s", "8009"],
    ]
    rec.fail = {"10.0.0.2"}
    with pytest.raises(CommandError, match="no NVMe/TCP target answered"):
        await host.connect(["10.0.0.2"], "nqn.h")


def test_nvme_controllers_from_sysfs(tmp_path: Path) -> None:
    host = NvmeHost(SubprocessRunner(), NvmeConfig(by_id=tmp_path, sys=tmp_path))
    for name, sub, hq, state in [
        ("nvme0", "nqn.s", "nqn.h", "live"),
        ("nvme1", "nqn.s", "nqn.other", "live"),
        ("nvme2", "nqn.s", "nqn.h", "deleting"),
        ("nvme3", "nqn.t", "nqn.h", "live"),
    ]:
        d = tmp_path / "class" / "nvme" / name
        d.mkdir(parents=True)
        (d / "subsysnqn").write_text(sub + "\n")
        (d / "hostnqn").write_text(hq + "\n")
        (d / "transport").write_text("tcp\n")
        (d / "state").write_text(state + "\n")
    assert host.controllers("nqn.s", "nqn.h") == ["nvme0"]
    assert nguid("694a2d140000000b", "1250de83018c2d0f") == "694a2d140000000b64b94e83018c2d0f"
    assert host.device_link("694a2d140000000b", "1250de83018c2d0f").name == (
        "nvme-eui.694a2d140000000b64b94e83018c2d0f"
    )
    assert host_nqn("u-1") == "nqn.2014-08.org.nvmexpress:uuid:u-1"


async def test_subprocess_runner_errors() -> None:
    runner = SubprocessRunner()
    done = await runner.run(["sh", "-c", "echo out; echo err >&2"])
    assert (done.rc, done.stdout, done.stderr) == (0, "out\n", "err\n")
    with pytest.raises(CommandError) as info:
        await runner.run(["sh", "-c", "echo boom >&2; exit 3"])
    assert (info.value.rc, info.value.stderr) == (3, "boom")
    assert str(info.value) == "sh failed: boom"
    with pytest.raises(CommandError) as missing:
        await runner.run(["/nonexistent/tool"])
    assert missing.value.rc == 127
    with pytest.raises(CommandError, match="timed out"):
        await runner.run(["sleep", "5"], timeout=0.1)
    assert (await runner.run(["false"], check=False)).rc == 1


async def test_a_cancelled_command_is_killed(tmp_path: Path) -> None:
    """Cancelled work leaves no command of its own running."""
    pid_file = tmp_path / "pid"
    script = f"echo $$ > {pid_file}.new && mv {pid_file}.new {pid_file} && exec sleep 30"
    task = asyncio.create_task(SubprocessRunner().run(["sh", "-c", script]))
    await wait_for_path(pid_file, timeout=10)  # written whole, then renamed
    pid = int(pid_file.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, and reaped
