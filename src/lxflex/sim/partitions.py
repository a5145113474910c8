"""Partition tables as the kernel reads them: MBR primaries and GPT entries.

The fabric emulation exposes each partition of an emulated disk as its own loop device
(offset and size limit over the volume's backing file), so it does not depend on the
host kernel's partition support, which minimal kernels leave out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SECTOR = 512
_GPT_SIGNATURE = b"EFI PART"
_PROTECTIVE = 0xEE


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes
    size: int  # bytes


def _mbr(head: bytes) -> list[Partition] | None:
    if len(head) < SECTOR or head[510:512] != b"\x55\xaa":
        return None
    parts = []
    for i in range(4):
        entry = head[446 + 16 * i : 462 + 16 * i]
        kind = entry[4]
        start, count = struct.unpack_from("<II", entry, 8)
        if kind == _PROTECTIVE:
            return None  # the real table is a GPT
        if kind and count:
            parts.append(Partition(i + 1, start * SECTOR, count * SECTOR))
    return parts


def _gpt(read: _Reader, disk_size: int) -> list[Partition]:
    header = read(SECTOR, SECTOR)
    if header[:8] != _GPT_SIGNATURE:
        return []
    entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
    if entry_size < 128 or count > 1024:
        return []
    table = read(entries_lba * SECTOR, count * entry_size)
    parts = []
    for i in range(count):
        entry = table[i * entry_size : (i + 1) * entry_size]
        if len(entry) < 56 or entry[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        if first <= last and (last + 1) * SECTOR <= disk_size:
            parts.append(Partition(i + 1, first * SECTOR, (last - first + 1) * SECTOR))
    return parts


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, offset: int, length: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)


def read_table(path: str, disk_size: int) -> list[Partition]:
    """The partitions of the disk image at ``path``; empty without a table."""
    read = _Reader(path)
    head = read(0, SECTOR)
    mbr = _mbr(head)
    if mbr is not None:
        return [p for p in mbr if p.start + p.size <= disk_size]
    return _gpt(read, disk_size)
