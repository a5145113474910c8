"""Ownership shifted on disk for an unprivileged container's ID map, as LXD shifts a
custom volume when no idmapped mount can do it.

An unprivileged container maps its IDs to a range of the host's (LXD writes the map in
``volatile.idmap.current`` or ``.next`` as JSON: ``[{"Isuid", "Isgid", "Hostid",
"Nsid", "Maprange"}]``). A file the host owns as 0 is ``nobody`` inside; shifted, it is
owned by the host ID the container's 0 maps to, so the container sees it as its own.
:func:`shift_tree` rewrites a tree from one map to another (``None``: not shifted):
owners (setuid and setgid bits kept, which a chown clears), POSIX ACLs, and the root ID
of file capabilities.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IdRange", "Idmap", "shift_tree"]

_ACLS = ("system.posix_acl_access", "system.posix_acl_default")
_ACL_USER, _ACL_GROUP = 0x02, 0x08
_CAPS = "security.capability"
_CAPS_V3 = 0x03000000  # its root ID (a uid) follows the version and two cap sets


@dataclass(frozen=True)
class IdRange:
    is_uid: bool
    is_gid: bool
    host: int
    ns: int
    size: int


@dataclass(frozen=True)
class Idmap:
    """An ID map: container (namespace) IDs to host IDs, by ranges."""

    ranges: tuple[IdRange, ...]

    @staticmethod
    def parse(text: str) -> Idmap:
        """LXD's JSON of a map; ValueError if it is not one."""
        doc = json.loads(text)
        if not isinstance(doc, list):
            raise ValueError("an ID map is a list of ranges")
        ranges = []
        for item in doc:
            try:
                ranges.append(
                    IdRange(
                        bool(item["Isuid"]),
                        bool(item["Isgid"]),
                        int(item["Hostid"]),
                        int(item["Nsid"]),
                        int(item["Maprange"]),
                    )
                )
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"not an ID map range: {item!r}") from None
        return Idmap(tuple(ranges))

    def to_json(self) -> str:
        return json.dumps(
            [
                {
                    "Isuid": r.is_uid,
                    "Isgid": r.is_gid,
                    "Hostid": r.host,
                    "Nsid": r.ns,
                    "Maprange": r.size,
                }
                for r in self.ranges
            ],
            separators=(",", ":"),
        )

    def to_host(self, ns_id: int, *, uid: bool) -> int:
        """The host ID of a container ID (unmapped IDs stay as they are)."""
        for r in self.ranges:
            if (r.is_uid if uid else r.is_gid) and r.ns <= ns_id < r.ns + r.size:
                return r.host + ns_id - r.ns
        return ns_id

    def to_ns(self, host_id: int, *, uid: bool) -> int:
        """The container ID of a host ID (IDs outside the map stay as they are)."""
        for r in self.ranges:
            if (r.is_uid if uid else r.is_gid) and r.host <= host_id < r.host + r.size:
                return r.ns + host_id - r.host
        return host_id


def _move(old: Idmap | None, new: Idmap | None, value: int, *, uid: bool) -> int:
    ns = old.to_ns(value, uid=uid) if old else value
    return new.to_host(ns, uid=uid) if new else ns


def _acl(blob: bytes, old: Idmap | None, new: Idmap | None) -> bytes:
    """A POSIX ACL xattr (version, then entries of tag, perm, id) with its IDs moved."""
    out = bytearray(blob[:4])
    for offset in range(4, len(blob) - 7, 8):
        tag, perm, ident = struct.unpack_from("<HHI", blob, offset)
        if tag in (_ACL_USER, _ACL_GROUP):
            ident = _move(old, new, ident, uid=tag == _ACL_USER)
        out += struct.pack("<HHI", tag, perm, ident)
    return bytes(out)


def _xattrs(path: str, old: Idmap | None, new: Idmap | None) -> None:
    for name in (*_ACLS, _CAPS):
        try:
            blob = os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                continue
            raise
        if name == _CAPS:
            if len(blob) < 24 or struct.unpack_from("<I", blob, 0)[0] & 0xFF000000 != _CAPS_V3:
                continue
            (root,) = struct.unpack_from("<I", blob, 20)
            moved = blob[:20] + struct.pack("<I", _move(old, new, root, uid=True)) + blob[24:]
        else:
            moved = _acl(blob, old, new)
        if moved != blob:
            os.setxattr(path, name, moved, follow_symlinks=False)


def _shift_one(path: str, old: Idmap | None, new: Idmap | None) -> bool:
    info = os.lstat(path)
    uid = _move(old, new, info.st_uid, uid=True)
    gid = _move(old, new, info.st_gid, uid=False)
    link = stat.S_ISLNK(info.st_mode)
    changed = (uid, gid) != (info.st_uid, info.st_gid)
    if changed:
        os.lchown(path, uid, gid)
        if not link and info.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(info.st_mode))  # a chown clears them
    if not link:
        _xattrs(path, old, new)
    return changed


def shift_tree(root: Path, old: Idmap | None, new: Idmap | None) -> int:
    """Rewrite the ownership of ``root`` and everything under it (not across mounts)
    from the map ``old`` to ``new`` (``None``: unshifted, host IDs as they are): the
    entries changed. Blocking: run it in a thread."""
    if old == new:
        return 0
    device = os.lstat(root).st_dev
    changed = int(_shift_one(str(root), old, new))
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(top, d)).st_dev == device]
        for name in (*dirs, *files):
            changed += _shift_one(os.path.join(top, name), old, new)
    return changed
