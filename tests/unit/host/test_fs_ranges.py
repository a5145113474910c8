"""The maps of used blocks read from a filesystem's own reports (pure parsing), and what
a copy's new ext4 UUID runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from lxflex.host.fs import Filesystems, _block_ranges, _gaps, _subtract
from lxflex.host.runner import CommandError, Completed


def test_free_block_lists_become_ranges() -> None:
    assert _block_ranges(" 9255-32767, 40000, 40002-40003") == [
        (9255, 32768),
        (40000, 40001),
        (40002, 40004),
    ]
    assert _block_ranges(" ") == []


def test_used_is_what_free_leaves() -> None:
    assert _gaps((0, 100), [(10, 20), (20, 30), (90, 100)]) == [(0, 10), (30, 90)]
    assert _gaps((32768, 65536), [(33793, 65536)]) == [(32768, 33793)]
    assert _gaps((0, 10), []) == [(0, 10)]
    assert _gaps((0, 10), [(0, 10)]) == []


def test_the_journal_is_cut_out_but_its_superblock() -> None:
    used = [(0, 1000), (2000, 3000)]
    journal_but_superblock = [(501, 800), (2500, 2600)]
    assert _subtract(used, journal_but_superblock) == [
        (0, 501),
        (800, 1000),
        (2000, 2500),
        (2600, 3000),
    ]


class _Scripted:
    """A Runner answering each tool with a canned report, or failing it."""

    def __init__(self, answers: dict[str, str | None]) -> None:
        self.answers = answers
        self.ran: list[str] = []
        self.argvs: list[tuple[str, ...]] = []

    async def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 300.0
    ) -> Completed:
        tool = str(argv[0])
        self.ran.append(tool)
        self.argvs.append(tuple(map(str, argv)))
        out = self.answers[tool]
        if out is None:
            raise CommandError(argv, 8, f"{tool}: Bad magic number in super-block")
        return Completed(tuple(map(str, argv)), 0, out, "")


_EXT4 = """Filesystem state:         {state}
Filesystem features:      has_journal extent {features}
Block size:               4096
Inode size:               256
Inodes per group:         8192

Group 0: (Blocks 0-32767) csum 0x1
  Inode table at 100-611 (+100)
  30000 free blocks, 8000 free inodes, 2 directories, 8000 unused inodes
  Free blocks: 2000-31999
Group 1: (Blocks 32768-65535) csum 0x2 [INODE_UNINIT]
  Inode table at 612-1123 (bg #0 + 612)
  32768 free blocks, 8192 free inodes, 0 directories, 8192 unused inodes
  Free blocks: 32768-65535
"""
_JOURNAL = "EXTENTS:\n(0-799):1200-1999\n"


async def test_a_clean_ext4_map_leaves_out_free_space_journal_and_unused_inode_tables() -> None:
    runner = _Scripted({"dumpe2fs": _EXT4.format(state="clean", features=""), "debugfs": _JOURNAL})
    ranges = await Filesystems(runner).used_ranges(Path("/dev/x"), "ext4")
    # Group 0 uses blocks 0-1999 and 32000-32767. Of its inode table (100-611) the
    # first 12 blocks hold the 192 inodes ever used; group 1's table (612-1123) holds
    # none; of the journal (1200-1999) only its superblock is needed.
    assert ranges == [
        (0, 112 * 4096),
        (1124 * 4096, 77 * 4096),
        (32000 * 4096, 768 * 4096),
    ]


@pytest.mark.parametrize(
    ("fstype", "answers"),
    [
        ("ext4", {"dumpe2fs": _EXT4.format(state="not clean", features="")}),
        ("ext4", {"dumpe2fs": _EXT4.format(state="clean", features="needs_recovery")}),
        ("ext4", {"dumpe2fs": None}),  # the tool cannot read it
        ("xfs", {"xfs_logprint": "    log tail: 8 head: 12 state: <DIRTY>\n"}),
        ("xfs", {"xfs_logprint": None}),
        ("btrfs", {}),  # no map read: nothing run
    ],
)
async def test_no_map_when_it_would_not_be_sound(
    fstype: str, answers: dict[str, str | None]
) -> None:
    runner = _Scripted(answers)
    assert await Filesystems(runner).used_ranges(Path("/dev/x"), fstype) is None
    assert runner.ran == list(answers)


@pytest.mark.parametrize(
    ("state", "features", "expected"),
    [
        # Clean, checksums seeded from the UUID: keep the seed, no check needed.
        ("clean", "metadata_csum", [["tune2fs", "-O", "metadata_csum_seed", "-U", "random"]]),
        ("clean", "metadata_csum metadata_csum_seed", [["tune2fs", "-U", "random"]]),
        ("clean", "uninit_bg", [["tune2fs", "-U", "random"]]),  # no metadata checksums
        # A journal to replay (a snapshot of a mounted volume) or not clean: check first.
        (
            "clean",
            "metadata_csum needs_recovery",
            [["e2fsck", "-f", "-p"], ["tune2fs", "-O", "metadata_csum_seed", "-U", "random"]],
        ),
        ("not clean", "metadata_csum_seed", [["e2fsck", "-f", "-p"], ["tune2fs", "-U", "random"]]),
        # The UUID seeds ea_inode hashes that tune2fs would rewrite, which needs a check.
        ("clean", "ea_inode", [["e2fsck", "-f", "-p"], ["tune2fs", "-U", "random"]]),
    ],
)
async def test_a_new_ext4_uuid_checks_the_copy_only_when_it_must(
    state: str, features: str, expected: list[list[str]]
) -> None:
    head = f"Filesystem state:         {state}\nFilesystem features:      has_journal {features}\n"
    runner = _Scripted({"dumpe2fs": head, "e2fsck": "", "tune2fs": ""})
    await Filesystems(runner).new_identity(Path("/dev/x"), "ext4")
    assert runner.argvs[0] == ("dumpe2fs", "-h", "/dev/x")
    assert [list(argv[:-1]) for argv in runner.argvs[1:]] == expected
