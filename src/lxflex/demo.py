"""``lxflex-demo``: the gateway client against the embedded simulator, end to end.

It starts lxflex-sim in-process on 127.0.0.1 (state in ``--state-dir``), then, through
the client: reads the system, finds pool ``sp1`` in domain ``pd1``, creates a thin volume,
registers this host's NVMe NQN, maps the volume and connects with the simulator's
``nvme`` shim; writes through the block device that appears, snapshots, overwrites the
volume, restores it from the snapshot and reads the data back; then cleans up. The host
part needs root (loop devices); without it the demo stops after the gateway part.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import click

from .powerflex import PowerFlexClient, RemoveMode, SnapshotDef
from .secret import Secret
from .sim import SimConfig, Simulator

GIB = 1024**3


def _say(step: str, detail: str = "") -> None:
    click.echo(f"  {click.style(step, bold=True)} {detail}")


def _wait_for(path: Path, present: bool, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while path.exists() != present:
        if time.monotonic() > deadline:
            raise click.ClickException(f"{path} did not {'appear' if present else 'vanish'}")
        time.sleep(0.05)


def _device_io(device: Path, payload: bytes | None, length: int) -> bytes:
    fd = os.open(device, os.O_RDWR | os.O_SYNC)
    try:
        if payload is not None:
            os.pwrite(fd, payload, 0)
            os.fsync(fd)
        return os.pread(fd, length, 0)
    finally:
        os.close(fd)


async def _run(state_dir: Path) -> None:
    password = secrets.token_urlsafe(16)
    sim = Simulator(SimConfig(state_dir=state_dir, admin_password=password))
    url = await sim.start()
    click.echo(f"lxflex-sim (PowerFlex API {sim.array.api_version}) serving {url}")
    try:
        async with PowerFlexClient(url, "admin", Secret(password)) as client:
            system = await client.system()
            _say("system", f"{system.id} ({system.system_version_name})")
            pd = await client.protection_domain_by_name("pd1")
            pool = await client.storage_pool_by_name("sp1", pd.id)
            stats = await client.pool_statistics(pool.id)
            _say(
                "pool",
                f"sp1 = {pool.id}, zero padding {pool.zero_padding_enabled}, "
                f"{stats.total_bytes / GIB:.0f} GiB usable",
            )
            vol_id = await client.create_volume(pool.id, 10 * GIB, "demo-vol")
            vol = await client.volume(vol_id)
            _say("volume", f"demo-vol = {vol_id}: asked 10 GiB, got {vol.size_bytes // GIB} GiB")
            if os.geteuid() != 0:
                _say("host", "skipped: attaching block devices needs root")
            else:
                await _host_part(sim, client, vol_id, system.system_nqn or "", pd.id)
            await client.remove_volume(vol_id, RemoveMode.INCLUDING_DESCENDANTS)
            _say("cleanup", "volume and its snapshot removed")
            _say(
                "requests", f"{sum(sim.counters.values())} gateway requests, {client.logins} login"
            )
    finally:
        await sim.stop()


async def _host_part(
    sim: Simulator, client: PowerFlexClient, vol_id: str, subnqn: str, pd_id: str
) -> None:
    host = sim.fabric.hosts["local"]
    nvme = str(host.bin_dir / "nvme")
    hostnqn = f"nqn.2014-08.org.nvmexpress:uuid:{uuid.uuid4()}"
    host_id = await client.create_nvme_host(hostnqn, "demo-host")
    await client.map_host(vol_id, host_id)
    sdt = (await client.sdts(pd_id))[0]
    await asyncio.to_thread(
        subprocess.run,
        [nvme, "connect-all", "-t", "tcp", "-a", sdt.host_ips[0], "-q", hostnqn],
        check=True,
    )
    system_id = subnqn.rsplit(":", 1)[-1]
    link = host.by_id / f"nvme-eui.{vol_id}64b94e{system_id[-10:]}"
    await asyncio.to_thread(_wait_for, link, True)
    _say("attach", f"{link.name} -> {os.readlink(link)}")
    original = b"lxflex demo: original content\n"
    await asyncio.to_thread(_device_io, link, original, len(original))
    snap = await client.snapshot_volumes([SnapshotDef(vol_id, "demo-snap")])
    _say("snapshot", f"demo-snap = {snap.volume_id_list[0]}")
    await asyncio.to_thread(_device_io, link, b"X" * len(original), len(original))
    await client.overwrite_volume_content(vol_id, snap.volume_id_list[0])
    restored = await asyncio.to_thread(_device_io, link, None, len(original))
    _say("restore", f"read back {restored!r}: {'OK' if restored == original else 'MISMATCH'}")
    if restored != original:
        raise click.ClickException("restored data differs from the snapshot")
    await client.unmap_host(vol_id, host_id)
    await asyncio.to_thread(_wait_for, link, False)
    await asyncio.to_thread(
        subprocess.run, [nvme, "disconnect", "-n", subnqn], check=True, capture_output=True
    )
    await client.remove_host(host_id)
    _say("detach", "unmapped, device gone, disconnected, host entry removed")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="Simulator state directory (default: a temporary one, removed afterwards).",
)
def main(state_dir: Path | None) -> None:
    """Run the PowerFlex client against the embedded simulator and show each step."""
    if state_dir is not None:
        asyncio.run(_run(state_dir))
        return
    with tempfile.TemporaryDirectory(prefix="lxflex-demo-") as tmp:
        asyncio.run(_run(Path(tmp)))
