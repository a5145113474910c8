"""``lxflex-demo``: the storage service on the embedded default, end to end.

It starts lxflex-sim in-process on 127.0.0.1 (a PowerFlex 4.5 gateway with its host
fabric emulation) and opens the storage service on SQLite, both in ``--state-dir``. Then,
as an operator would: it creates a PowerFlex pool (mode, targets and version discovered),
a filesystem volume (attached over the emulated NVMe/TCP fabric, formatted), mounts it,
writes, snapshots, changes the data, restores, grows the volume and its filesystem,
copies it with its snapshot into a thin new volume, reads the copy, and removes it all.
The host part needs root (loop devices and mounts); without it the demo shows the pool
and a block volume only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

import click

from .embedded import embedded
from .service import Storage

GIB = 1024**3


def _say(step: str, detail: str = "") -> None:
    click.echo(f"  {click.style(f'{step:<9}', bold=True)} {detail}")


async def _run(state_dir: Path) -> None:
    async with embedded(state_dir) as env:
        click.echo(f"lxflex-sim (PowerFlex API {env.sim.array.api_version}) serving {env.sim.url}")
        storage = env.storage
        try:
            pool = await storage.pools.create(
                "pf", "powerflex", env.pool_config(), password=env.secret
            )
            cfg = pool.config
            _say(
                "pool",
                f"pf: mode {cfg['powerflex.mode']}, targets {cfg['powerflex.sdt']}, "
                f"PowerFlex API {cfg['volatile.powerflex.version']}",
            )
            if os.geteuid() != 0:
                await storage.volumes.create("pf", "blk", content_type="block")
                _say("volume", "blk (block, 8GiB) created; the host part needs root: stopping here")
                await storage.volumes.delete("pf", "blk")
            else:
                await _host_part(storage)
            await storage.pools.delete("pf")
            _say("cleanup", "volumes and pool removed; nothing left on the array or the host")
            _say("requests", f"{sum(env.sim.counters.values())} gateway requests in all")
        finally:
            # After a failure, leave no mount behind (the volumes go with the state dir).
            for name in ("data-copy", "data"):
                with contextlib.suppress(Exception):
                    await storage.volumes.unmount("pf", name)


async def _host_part(storage: Storage) -> None:
    volumes = storage.volumes
    view = await volumes.create("pf", "data", config={"size": "10GiB"})
    _say(
        "volume",
        f"data: asked 10GiB, got {view.config['size']} "
        f"({view.config['block.filesystem']}, {view.config['block.type']})",
    )
    path = await volumes.mount("pf", "data")
    (path / "hello.txt").write_text("written before the snapshot\n")
    _say("mount", f"{path}")
    await volumes.snapshot("pf", "data", "snap0")
    (path / "hello.txt").write_text("changed after the snapshot\n")
    await volumes.restore("pf", "data", "snap0")
    _say("restore", f"hello.txt reads {(path / 'hello.txt').read_text().strip()!r}")
    await volumes.update("pf", "data", {"size": "24GiB"})
    stats = os.statvfs(path)
    _say("resize", f"filesystem now {stats.f_blocks * stats.f_frsize / GIB:.1f} GiB")
    await volumes.unmount("pf", "data")
    copy = await volumes.copy("pf", "data", "pf", "data-copy")
    copy_path = await volumes.mount("pf", "data-copy")
    _say(
        "copy",
        f"data-copy with snapshots {copy.snapshots}: hello.txt reads "
        f"{(copy_path / 'hello.txt').read_text().strip()!r}",
    )
    used, total = await storage.pools.resources("pf")
    _say(
        "usage", f"{used / 2**20:.0f} MiB written of {total / GIB:.0f} GiB: thin volumes, thin copy"
    )
    for name in ("data-copy", "data"):
        await volumes.unmount("pf", name)
        await volumes.delete("pf", name)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="Where the simulator and the service keep their state (default: a temporary "
    "directory, removed afterwards).",
)
def main(state_dir: Path | None) -> None:
    """Run the storage service against the embedded PowerFlex simulator, step by step."""
    if state_dir is not None:
        asyncio.run(_run(state_dir))
        return
    with tempfile.TemporaryDirectory(prefix="lxflex-demo-") as tmp:
        asyncio.run(_run(Path(tmp)))
