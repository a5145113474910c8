"""Reading listings of image trees: the room a tree needs and its top-level names."""

from __future__ import annotations

from lxflex.host.lxdimage import _tally, filesystem_size_for

TAR_LISTING = """\
drwxr-xr-x 0/0               0 2024-01-01 00:00 ./
-rw-r--r-- 0/0             100 2024-01-01 00:00 ./metadata.yaml
drwxr-xr-x 0/0               0 2024-01-01 00:00 ./rootfs/
-rw-r--r-- 1000/1001      5000 2024-01-01 00:00 ./rootfs/a file with spaces
lrwxrwxrwx 0/0               0 2024-01-01 00:00 ./rootfs/lib -> usr/lib
hrwxr-xr-x 0/0               0 2024-01-01 00:00 ./rootfs/bin/hi link to ./rootfs/bin/hello
crw-rw-rw- 0/0             1,3 2024-01-01 00:00 ./rootfs/dev/null
"""

SQUASHFS_LISTING = """\
Parallel unsquashfs: Using 2 processors
3 inodes (3 blocks) to write

drwxr-xr-x 0/0                  52 2024-01-01 00:00 squashfs-root
-rw-r--r-- 0/0               10000 2024-01-01 00:00 squashfs-root/data
"""


def test_tar_listing() -> None:
    size, tops = _tally(TAR_LISTING)
    # Regular files round up to 4 KiB blocks; every entry costs an inode's share (512).
    assert size == 4096 + 8192 + 6 * 512
    assert tops == {"", "metadata.yaml", "rootfs"}


def test_squashfs_listing_ignores_the_chatter() -> None:
    size, tops = _tally(SQUASHFS_LISTING)
    assert size == 12288 + 2 * 512
    assert tops == {"squashfs-root"}


def test_filesystem_size_leaves_room() -> None:
    assert filesystem_size_for(0) == 256 << 20
    assert filesystem_size_for(10 << 30) == (11 << 30) + (256 << 20)
