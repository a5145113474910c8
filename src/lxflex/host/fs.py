"""Filesystems on attached volumes: make, mount, grow, freeze, re-identify, and the
map of the blocks they use.

ext4, xfs and btrfs are supported, through their standard tools run by the Runner. Mount
state is read from ``/proc/self/mountinfo``. mkfs skips the discard pass: a new PowerFlex
volume in a zero-padded pool already reads as zeros, and a discard of the whole device
would only cost time.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from .runner import CommandError, Runner

__all__ = ["Filesystems", "device_in_use", "is_mounted", "mounted_under", "used_bytes"]

log = logging.getLogger("lxflex.host")

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

    async def bind(self, source: Path, target: Path) -> None:
        """Make the tree mounted at ``source`` show at ``target`` too (a bind mount)."""
        target.mkdir(parents=True, exist_ok=True)
        await self.runner.run(["mount", "--bind", str(source), str(target)], timeout=120)

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
                await self._e2fsck(device)
            await self.runner.run(["resize2fs", str(device)], timeout=600)
        elif fstype == "xfs":
            await self.runner.run(["xfs_growfs", str(_need(mounted_at))], timeout=600)
        elif fstype == "btrfs":
            await self.runner.run(
                ["btrfs", "filesystem", "resize", "max", str(_need(mounted_at))], timeout=600
            )
        else:
            raise ValueError(f"unsupported filesystem {fstype!r}")

    async def _e2fsck(self, device: Path) -> None:
        """A full check that repairs what is safe: exit code 1 says it replayed a journal
        or fixed something (a copy of a mounted filesystem), which is success here; 4 and
        above are errors it left."""
        argv = ["e2fsck", "-f", "-p", str(device)]
        done = await self.runner.run(argv, check=False, timeout=600)
        if done.rc not in (0, 1):
            raise CommandError(argv, done.rc, done.stderr or done.stdout)

    async def freeze(self, target: Path) -> None:
        await self.runner.run(["fsfreeze", "--freeze", str(target)], timeout=60)

    async def thaw(self, target: Path) -> None:
        await self.runner.run(["fsfreeze", "--unfreeze", str(target)], timeout=60)

    async def used_ranges(self, device: Path, fstype: str) -> list[tuple[int, int]] | None:
        """The byte ranges (offset, length) of ``device`` that its filesystem uses, read
        from the filesystem's own maps of free space: all a copy must write for the
        filesystem to be whole, whatever the target's other blocks hold. Left out of
        ext4's: its journal but for the journal's superblock (after a clean unmount it
        holds nothing to replay), and inode-table blocks past the last inode ever used
        (nothing reads them; a new inode there is written whole).

        None when that would not be sound: another filesystem, one the tools cannot
        read, or one not cleanly unmounted, whose journal or log holds changes its maps
        do not show yet (a snapshot of a mounted volume). The caller then copies every
        block."""
        try:
            if fstype == "ext4":
                return await self._ext4_ranges(device)
            if fstype == "xfs":
                return await self._xfs_ranges(device)
        except (CommandError, KeyError, ValueError) as exc:
            log.info("%s: no map of used blocks (%s)", device, exc)
        return None

    async def _ext4_ranges(self, device: Path) -> list[tuple[int, int]] | None:
        out = (await self.runner.run(["dumpe2fs", str(device)], timeout=600)).stdout
        head = _fields(out.split("\n\n", 1)[0], ":")
        if head["Filesystem state"] != "clean" or "needs_recovery" in head.get(
            "Filesystem features", ""
        ):
            return None
        size = int(head["Block size"])
        # An inode table's blocks past its last used inode hold no inode in use (the
        # count of unused ones is kept where the filesystem tracks it): zeros will do.
        per_block = size // int(head["Inode size"])
        per_group = int(head["Inodes per group"])
        used: list[tuple[int, int]] = []
        unneeded: list[tuple[int, int]] = []
        group: tuple[int, int] | None = None
        table: tuple[int, int] | None = None
        for line in out.splitlines():
            text = line.strip()
            found = _GROUP.match(line)
            if found:
                group, table = (int(found[1]), int(found[2]) + 1), None
            elif (at := _TABLE.match(text)) is not None:
                table = (int(at[1]), int(at[2]) + 1)
            elif (counts := _UNUSED.search(text)) is not None and table is not None:
                in_use = per_group - int(counts[1])
                first_free = table[0] + -(-in_use // per_block)
                if first_free < table[1]:
                    unneeded.append((first_free, table[1]))
            elif group is not None and text.startswith("Free blocks:"):
                used.extend(_gaps(group, _block_ranges(text.split(":", 1)[1])))
                group = None
        unneeded += (await self._ext4_journal(device))[1:]
        blocks = _subtract(used, unneeded)
        return [(start * size, (end - start) * size) for start, end in blocks]

    async def _ext4_journal(self, device: Path) -> list[tuple[int, int]]:
        """The journal's block ranges, its superblock first; none if it has no inode."""
        out = await self.runner.run(["debugfs", "-R", "stat <8>", str(device)], timeout=120)
        ranges = []
        for first, last in re.findall(r"\(\d+(?:-\d+)?\):(\d+)(?:-(\d+))?", out.stdout):
            ranges.append((int(first), int(last or first) + 1))
        if not ranges:
            return []
        start, end = ranges[0]
        return [(start, start + 1), (start + 1, end), *ranges[1:]]

    async def _xfs_ranges(self, device: Path) -> list[tuple[int, int]] | None:
        logged = await self.runner.run(["xfs_logprint", "-t", str(device)], timeout=120)
        if "state: <CLEAN>" not in logged.stdout:
            return None
        argv = ["xfs_db", "-r", "-c", "sb 0", "-c", "print agblocks agcount blocksize dblocks"]
        info = _fields((await self.runner.run([*argv, str(device)], timeout=120)).stdout, "=")
        per_ag, count = int(info["agblocks"]), int(info["agcount"])
        size, blocks = int(info["blocksize"]), int(info["dblocks"])
        out = await self.runner.run(["xfs_db", "-r", "-c", "freesp -d", str(device)], timeout=600)
        free: list[tuple[int, int]] = []
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and all(p.isdigit() for p in parts):
                agno, agbno, length = map(int, parts)
                start = agno * per_ag + agbno
                free.append((start, start + length))
        used = _gaps((0, min(blocks, count * per_ag)), sorted(free))
        return [(start * size, (end - start) * size) for start, end in used]

    async def new_identity(self, device: Path, fstype: str) -> None:
        """Give a copied filesystem its own UUID, so the copy and its source can both mount."""
        if fstype == "ext4":
            await self._ext4_identity(device)
        elif fstype == "xfs":
            await self.runner.run(["xfs_admin", "-U", "generate", str(device)], timeout=120)
        elif fstype == "btrfs":
            await self.runner.run(["btrfstune", "-f", "-u", str(device)], timeout=600)
        else:
            raise ValueError(f"unsupported filesystem {fstype!r}")

    async def _ext4_identity(self, device: Path) -> None:
        """A new UUID for ext4. Its metadata checksums are seeded from the UUID; keeping
        the old seed (``metadata_csum_seed``, Linux 4.4 and later) spares rewriting every
        metadata block, and tune2fs then needs no fresh check. e2fsck runs first when the
        copy holds a journal to replay (a snapshot of a mounted volume) or was not left
        clean, or when the UUID seeds checksums that tune2fs would have to rewrite
        (``ea_inode`` without ``metadata_csum``)."""
        argv = ["dumpe2fs", "-h", str(device)]
        head = _fields((await self.runner.run(argv, timeout=120)).stdout, ":")
        features = head.get("Filesystem features", "").split()
        clean = head.get("Filesystem state") == "clean" and "needs_recovery" not in features
        tune = ["tune2fs"]
        if "metadata_csum" in features and "metadata_csum_seed" not in features:
            tune += ["-O", "metadata_csum_seed"]
        if not clean or ("ea_inode" in features and "metadata_csum" not in features):
            await self._e2fsck(device)
        await self.runner.run([*tune, "-U", "random", str(device)], timeout=120)


_GROUP = re.compile(r"^Group \d+: \(Blocks (\d+)-(\d+)\)")
_TABLE = re.compile(r"^Inode table at (\d+)-(\d+)")
_UNUSED = re.compile(r"(\d+) unused inodes")


def _block_ranges(text: str) -> list[tuple[int, int]]:
    """``a-b, c, d-e`` as half-open ranges."""
    ranges = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            first, _, last = part.partition("-")
            ranges.append((int(first), int(last or first) + 1))
    return ranges


def _gaps(whole: tuple[int, int], taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``whole`` not in the sorted ranges ``taken``."""
    gaps, at = [], whole[0]
    for start, end in taken:
        if start > at:
            gaps.append((at, min(start, whole[1])))
        at = max(at, end)
    if at < whole[1]:
        gaps.append((at, whole[1]))
    return [(s, e) for s, e in gaps if e > s]


def _subtract(ranges: list[tuple[int, int]], cut: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` without the blocks of ``cut`` (both half-open)."""
    result = []
    for start, end in ranges:
        result.extend(_gaps((start, end), sorted(c for c in cut if c[0] < end and c[1] > start)))
    return result


def _fields(text: str, separator: str) -> dict[str, str]:
    """``key: value`` (or ``key = value``) lines of a tool's report."""
    fields = {}
    for line in text.splitlines():
        key, found, value = line.partition(separator)
        if found:
            fields[key.strip()] = value.strip()
    return fields


def _need(path: Path | None) -> Path:
    if path is None:
        raise ValueError("this filesystem grows only while mounted")
    return path
