"""Backup tarballs with GNU tar: written from a staging tree, members read back out.

GNU tar is the tool LXD uses for the same archives, and it keeps what a filesystem
backup must keep: owners by number, modes, ACLs, extended attributes, hard links, and
holes (``--sparse``: a block image staged as a sparse file is stored as a PAX sparse
member, so an 8 GiB volume holding 100 MiB archives as about 100 MiB, compressed or not).
Reading detects the compression by itself.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .runner import Runner

__all__ = ["COMPRESSIONS", "Archives", "compression_available"]

# Compression name -> GNU tar flag (None: no compression).
COMPRESSIONS: dict[str, str | None] = {
    "none": None,
    "gzip": "--gzip",
    "zstd": "--zstd",
    "xz": "--xz",
    "bzip2": "--bzip2",
}
_TOOLS = {"gzip": "gzip", "zstd": "zstd", "xz": "xz", "bzip2": "bzip2"}
_KEEP = ["--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner"]
_TIMEOUT = 24 * 3600.0  # archives of large volumes take long; the operation shows progress


def compression_available(name: str) -> bool:
    """Whether ``name`` is known and its tool is installed."""
    if name not in COMPRESSIONS:
        return False
    tool = _TOOLS.get(name)
    return tool is None or shutil.which(tool) is not None


class Archives:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def create(self, staging: Path, top: str, out: Path, compression: str) -> None:
        """Archive ``staging/top`` (mount points under it included) into ``out``."""
        flag = COMPRESSIONS[compression]
        argv = ["tar", "--create", "--format=posix", "--sparse", *_KEEP, "--file", str(out)]
        if flag:
            argv.append(flag)
        await self.runner.run([*argv, "-C", str(staging), top], timeout=_TIMEOUT)

    async def read_member(self, archive: Path, member: str) -> bytes:
        """The content of one (small) member; stops at its first occurrence."""
        done = await self.runner.run(
            ["tar", "--extract", "--to-stdout", "--occurrence=1", "--file", str(archive), member],
        )
        return done.stdout.encode()

    async def members(self, archive: Path) -> list[str]:
        done = await self.runner.run(["tar", "--list", "--file", str(archive)], timeout=_TIMEOUT)
        return [line.rstrip("/") for line in done.stdout.splitlines() if line]

    async def extract_file(self, archive: Path, member: str, into: Path) -> Path:
        """Extract one file member (holes kept) under ``into``; return its path."""
        await self.runner.run(
            ["tar", "--extract", "--sparse", "--file", str(archive), "-C", str(into), member],
            timeout=_TIMEOUT,
        )
        return into / member

    async def extract_tree(self, archive: Path, member: str, into: Path) -> None:
        """Extract the tree under directory ``member`` into ``into`` itself (owners,
        modes, ACLs and extended attributes restored; ``member`` maps to ``into``)."""
        pattern = re.sub(r"([.\[\]*^$\\,])", r"\\\1", member)  # a literal, in sed's BRE
        await self.runner.run(
            [
                "tar",
                "--extract",
                "--same-permissions",
                "--same-owner",
                *_KEEP,
                "--file",
                str(archive),
                "-C",
                str(into),
                f"--transform=s,^{pattern}\\(/\\|$\\),./,",
                member,
            ],
            timeout=_TIMEOUT,
        )
