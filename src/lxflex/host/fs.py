"""Filesystems on attached volumes: make, mount, grow, freeze, re-identify.

ext4, xfs and btrfs are supported, through their standard tools run by the Runner. Mount
state is read from ``/proc/self/mountinfo``. mkfs skips the discard pass: a new PowerFlex
volume in a zero-padded pool already reads as zeros, and a discard of the whole device
would only cost time.
"""

from __future__ import annotations

import os
from pathlib import Path

from .runner import Runner

__all__ = ["Filesystems", "device_in_use", "is_mounted", "mounted_under", "used_bytes"]

_MKFS = {
    "ext4": ["mkfs.ext4", "-q", "-F", "-E", "nodiscard"],
    "xfs": ["mkfs.xfs", "-q", "-f", "-K"],
    "btrfs": ["mkfs.btrfs", "-q", "-f", "-K"],
}


def _unescape(field: str) -> str:
    return (
        field.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def is_mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point in this mount namespace."""
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(_unescape(line.split()[4]) == target for line in f)
    except OSError:
        return os.path.ismount(path)


def used_bytes(path: Path) -> int | None:
    """The bytes the filesystem mounted at ``path`` uses; None when nothing is mounted
    there."""
    if not is_mounted(path):
        return None
    stats = os.statvfs(path)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def mounted_under(root: Path) -> list[Path]:
    """The mount points at or below ``root``, deepest first (the order to unmount them)."""
    top = os.path.realpath(root)
    try:
        with open("/proc/self/mountinfo") as f:
            targets = {_unescape(line.split()[4]) for line in f}
    except OSError:
        return []
    inside = [t for t in targets if t == top or t.startswith(top + os.sep)]
    return [Path(t) for t in sorted(inside, key=lambda t: t.count(os.sep), reverse=True)]


def device_in_use(device: Path) -> bool:
    """Whether the block device a link leads to is mounted (as the source of a mount)."""
    source = os.path.realpath(device)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                _, _, rest = line.partition(" - ")
                fields = rest.split()
                if len(fields) > 1 and os.path.realpath(_unescape(fields[1])) == source:
                    return True
    except OSError:
        return False
    return False


class Filesystems:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def make(self, device: Path, fstype: str) -> None:
        if fstype not in _MKFS:
            raise ValueError(f"unsupported filesystem {fstype!r}")
        await self.runner.run([*_MKFS[fstype], str(device)], timeout=600)

    async def mount(self, device: Path, target: Path, fstype: str, options: str = "") -> None:
        target.mkdir(parents=True, exist_ok=True)
        argv = ["mount", "-t", fstype]
        if options:
            argv += ["-o", options]
        await self.runner.run([*argv, str(device), str(target)], timeout=120)

    async def unmount(self, target: Path) -> None:
        if is_mounted(target):
            await self.runner.run(["umount", str(target)], timeout=120)

    async def grow(self, device: Path, fstype: str, mounted_at: Path | None) -> None:
        """Grow the filesystem to the device's size; xfs and btrfs need it mounted.

        ext4 grows online when ``mounted_at`` is given (which needs CAP_SYS_RESOURCE),
        offline otherwise.
        """
        if fstype == "ext4":
            if mounted_at is None:  # offline resize2fs insists on a fresh check
                await self.runner.run(["e2fsck", "-f", "-p", str(device)], timeout=600)
            await self.runner.run(["resize2fs", str(device)], timeout=600)
        elif fstype == "xfs":
            await self.runner.run(["xfs_growfs", str(_need(mounted_at))], timeout=600)
        elif fstype == "btrfs":
            await self.runner.run(
                ["btrfs", "filesystem", "resize", "max", str(_need(mounted_at))], timeout=600
            )
        else:
            raise ValueError(f"unsupported filesystem {fstype!r}")

    async def freeze(self, target: Path) -> None:
        await self.runner.run(["fsfreeze", "--freeze", str(target)], timeout=60)

    async def thaw(self, target: Path) -> None:
        await self.runner.run(["fsfreeze", "--unfreeze", str(target)], timeout=60)

    async def new_identity(self, device: Path, fstype: str) -> None:
        """Give a copied filesystem its own UUID, so the copy and its source can both mount."""
        if fstype == "ext4":
            await self.runner.run(["e2fsck", "-f", "-p", str(device)], timeout=600)
            await self.runner.run(["tune2fs", "-U", "random", str(device)], timeout=120)
        elif fstype == "xfs":
            await self.runner.run(["xfs_admin", "-U", "generate", str(device)], timeout=120)
        elif fstype == "btrfs":
            await self.runner.run(["btrfstune", "-f", "-u", str(device)], timeout=600)
        else:
            raise ValueError(f"unsupported filesystem {fstype!r}")


def _need(path: Path | None) -> Path:
    if path is None:
        raise ValueError("this filesystem grows only while mounted")
    return path
