"""Volumes in use: how long from asking to a usable volume, against LXD's own.

In the same run, with the real LXD 5.0.2 (Debian ``lxd``) and a running container made
from a locally built busybox image, each round (median of ``--rounds``):

* lxflex, host: ``POST .../attachments`` until the filesystem volume is mounted;
* lxflex, instance: ``POST .../attachments {"instance": "c1"}`` until the container has
  the volume as a disk device (mapped, connected, mounted, shifted to its ID map);
* LXD, ``dir`` pool: a custom volume created and given to the same container (what
  ``lxc storage volume create`` and ``lxc storage volume attach`` send), the baseline;
* LXD giving the container a plain host directory as a disk device: LXD's part of the
  lxflex instance row (the rest is lxflex's: map, connect, mount, shift, its rows).

Each volume is detached (and LXD's deleted) before the next round. lxflex runs on its
embedded simulator (``lxflexd --simulator``). Needs root, ``lxd`` and busybox.

    python -m bench.inuse [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.daemon import daemon
from lxflex.host.lxd import LxdClient

POOL = "powerflex"


@contextmanager
def real_lxd() -> Iterator[Path]:
    """LXD in a state directory of its own (short: it holds sockets); its socket."""
    state = Path(tempfile.mkdtemp(prefix="lxd-bench-", dir="/tmp"))
    proc = subprocess.Popen(
        ["lxd", "--group", "root", "--logfile", str(state / "bench.log")],
        env={**os.environ, "LXD_DIR": str(state)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {**os.environ, "LXD_DIR": str(state), "LXD_CONF": str(state / "conf")}
    try:
        deadline = time.monotonic() + 120
        while (
            subprocess.run(["lxc", "info"], env=env, capture_output=True, check=False).returncode
            != 0
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("lxd did not start")
            time.sleep(0.5)
        _container(state, env)
        yield state / "unix.socket"
    finally:
        subprocess.run(
            ["lxc", "delete", "--force", "c1"], env=env, capture_output=True, check=False
        )
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        mounts = subprocess.run(
            ["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=False
        )
        for target in sorted(
            (m for m in mounts.stdout.split() if m.startswith(f"{state}/")), reverse=True
        ):
            subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(state, ignore_errors=True)


def _container(state: Path, env: dict[str, str]) -> None:
    """A running container c1 from a busybox image built here, on a dir pool."""
    image = state / "image"
    root = image / "rootfs"
    for directory in ("bin", "sbin", "dev", "proc", "sys", "tmp"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox (Debian busybox-static) is needed for the image")
    shutil.copy2(busybox, root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "sbin" / "init").symlink_to("../bin/busybox")
    (image / "metadata.yaml").write_text("architecture: x86_64\ncreation_date: 1700000000\n")
    with tarfile.open(state / "image.tar.gz", "w:gz") as tar:
        tar.add(image / "metadata.yaml", "metadata.yaml")
        tar.add(root, "rootfs")
    for argv in (
        ["image", "import", str(state / "image.tar.gz"), "--alias", "busybox"],
        ["storage", "create", "dir", "dir"],
        ["profile", "device", "add", "default", "root", "disk", "path=/", "pool=dir"],
        ["init", "busybox", "c1"],
        ["start", "c1"],
    ):
        subprocess.run(["lxc", *argv], env=env, check=True, capture_output=True)


async def _timed(
    rounds: int, work: Callable[[int], Awaitable[None]], undo: Callable[[int], Awaitable[None]]
) -> float:
    times = []
    for i in range(rounds):
        started = time.perf_counter()
        await work(i)
        times.append(time.perf_counter() - started)
        await undo(i)
    return statistics.median(times)


async def measure(lxflex_socket: Path, lxd_socket: Path, rounds: int) -> None:
    lxflex, lxd = LxdClient(lxflex_socket), LxdClient(lxd_socket)
    vols = f"/1.0/storage-pools/{POOL}/volumes/custom"
    try:
        for i in range(rounds * 2):
            await lxflex.request("POST", vols, {"name": f"v{i}", "config": {"size": "8GiB"}})

        async def host(i: int) -> None:
            await lxflex.request("POST", f"{vols}/v{i}/attachments", {})

        async def host_off(i: int) -> None:
            await lxflex.request("DELETE", f"{vols}/v{i}/attachments/host")

        async def instance(i: int) -> None:
            body = {"instance": "c1", "path": f"/v{rounds + i}", "socket": str(lxd_socket)}
            await lxflex.request("POST", f"{vols}/v{rounds + i}/attachments", body)

        async def instance_off(i: int) -> None:
            await lxflex.request("DELETE", f"{vols}/v{rounds + i}/attachments/instances/c1")

        async def own(i: int) -> None:
            await lxd.request(
                "POST", "/1.0/storage-pools/dir/volumes/custom", {"name": f"d{i}", "config": {}}
            )
            disk = {"type": "disk", "pool": "dir", "source": f"d{i}", "path": f"/d{i}"}
            await lxd.set_device("c1", "default", f"d{i}", disk, new=True)

        async def own_off(i: int) -> None:
            await lxd.remove_device("c1", "default", f"d{i}")
            await lxd.request("DELETE", f"/1.0/storage-pools/dir/volumes/custom/d{i}")

        scratch = Path(tempfile.mkdtemp(prefix="lxflex-bench-dir-"))

        async def plain(i: int) -> None:  # what LXD's part of an instance attach costs
            (scratch / str(i)).mkdir()
            disk = {"type": "disk", "source": str(scratch / str(i)), "path": f"/p{i}"}
            await lxd.set_device("c1", "default", f"p{i}", disk, new=True)

        async def plain_off(i: int) -> None:
            await lxd.remove_device("c1", "default", f"p{i}")

        host_s = await _timed(rounds, host, host_off)
        instance_s = await _timed(rounds, instance, instance_off)
        own_s = await _timed(rounds, own, own_off)
        plain_s = await _timed(rounds, plain, plain_off)
        shutil.rmtree(scratch, ignore_errors=True)
    finally:
        await lxflex.close()
        await lxd.close()
    print(f"volume in use, median of {rounds} (lxflex on its embedded simulator)")
    print(f"  lxflex, mounted on the host:         {host_s * 1000:8.1f} ms")
    print(f"  lxflex, a disk of container c1:      {instance_s * 1000:8.1f} ms")
    print(f"  LXD dir pool, created and given c1:  {own_s * 1000:8.1f} ms  (baseline)")
    print(f"  ratio lxflex instance / LXD dir:     {instance_s / own_s:.2f}")
    print("  where the instance's time goes:")
    print(f"    LXD giving c1 a host directory:    {plain_s * 1000:8.1f} ms")
    print(f"    lxflex's own (map, mount, shift):  {(instance_s - plain_s) * 1000:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lxflex-bench-")))
        lxd_socket = stack.enter_context(real_lxd())
        lxflex = stack.enter_context(daemon(tmp / "lxflex"))
        asyncio.run(measure(Path(lxflex.socket), lxd_socket, args.rounds))


if __name__ == "__main__":
    main()
