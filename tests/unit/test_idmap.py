"""Ownership shifted on disk for a container's ID map, and back."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import pytest

from lxflex.host.idmap import Idmap, shift_tree

MAP = Idmap.parse(
    '[{"Isuid":true,"Isgid":false,"Hostid":100000,"Nsid":0,"Maprange":65536},'
    '{"Isuid":false,"Isgid":true,"Hostid":200000,"Nsid":0,"Maprange":65536}]'
)
OTHER = Idmap.parse('[{"Isuid":true,"Isgid":true,"Hostid":300000,"Nsid":0,"Maprange":65536}]')


def _acl(*entries: tuple[int, int, int]) -> bytes:
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def test_a_map_reads_and_writes_lxds_json() -> None:
    assert Idmap.parse(MAP.to_json()) == MAP
    assert MAP.to_host(0, uid=True) == 100000
    assert MAP.to_host(0, uid=False) == 200000
    assert MAP.to_ns(100033, uid=True) == 33
    assert MAP.to_host(70000, uid=True) == 70000  # outside the map: as it is
    with pytest.raises(ValueError, match="not an ID map range"):
        Idmap.parse('[{"Isuid": true}]')
    with pytest.raises(ValueError, match="a list of ranges"):
        Idmap.parse("{}")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_tree_is_shifted_to_a_map_to_another_and_back(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "file").write_text("x")
    os.chown(root / "dir" / "file", 1000, 1000)
    tool = root / "tool"
    tool.write_text("#!/bin/sh\n")
    os.chmod(tool, 0o4755)  # noqa: S103 - the setuid bit a chown would clear
    (root / "link").symlink_to("dir/file")
    acl = _acl(
        (0x01, 6, 0xFFFFFFFF),
        (0x02, 6, 1000),
        (0x04, 4, 0xFFFFFFFF),
        (0x10, 6, 0xFFFFFFFF),
        (0x20, 4, 0xFFFFFFFF),
    )
    os.setxattr(root / "dir" / "file", "system.posix_acl_access", acl)

    assert shift_tree(root, None, MAP) == 5  # root, dir, file, tool, link
    assert (os.lstat(root).st_uid, os.lstat(root).st_gid) == (100000, 200000)
    assert (os.lstat(root / "dir" / "file").st_uid, os.lstat(root / "dir" / "file").st_gid) == (
        101000,
        201000,
    )
    assert os.lstat(root / "link").st_uid == 100000  # the link itself, not its target
    assert stat.S_IMODE(os.lstat(tool).st_mode) == 0o4755  # setuid kept
    shifted = os.getxattr(root / "dir" / "file", "system.posix_acl_access")
    assert struct.unpack_from("<HHI", shifted, 12) == (0x02, 6, 101000)

    assert shift_tree(root, MAP, OTHER) == 5
    assert os.lstat(root / "dir" / "file").st_uid == 301000
    assert shift_tree(root, OTHER, None) == 5
    assert (os.lstat(root / "dir" / "file").st_uid, os.lstat(root / "dir" / "file").st_gid) == (
        1000,
        1000,
    )
    assert os.getxattr(root / "dir" / "file", "system.posix_acl_access") == acl
    assert shift_tree(root, None, None) == 0
