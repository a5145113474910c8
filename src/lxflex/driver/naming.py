"""PowerFlex volume names from LXD volumes, and back.

PowerFlex names hold at most 31 characters, so names derive from the volume's
``volatile.uuid``: the standard base64 of its 16 bytes (24 characters, with ``==``), after
a prefix for the volume type and, for some contents, a suffix::

    custom filesystem   u_<b64>         container           c_<b64>
    custom block        u_<b64>.b       virtual machine     v_<b64>    (config filesystem)
    custom ISO          u_<b64>.i                           v_<b64>.b  (root disk)
    image               i_<b64>

A snapshot takes an extra leading ``s`` (``su_…``, ``sv_….b``); a standalone copy made by
an array snapshot carries none. The longest name, ``sv_<b64>.b``, has 29 characters.
Names decode back to type, content and UUID, which lets a pool be recovered from the
array alone.
"""

from __future__ import annotations

import base64
import enum
import uuid
from dataclasses import dataclass

__all__ = ["Content", "ParsedName", "VolumeType", "parse_name", "volume_name"]

MAX_NAME = 31


class VolumeType(enum.StrEnum):
    CUSTOM = "custom"
    CONTAINER = "container"
    VIRTUAL_MACHINE = "virtual-machine"
    IMAGE = "image"


class Content(enum.StrEnum):
    FILESYSTEM = "filesystem"
    BLOCK = "block"
    ISO = "iso"


_PREFIX = {
    VolumeType.CUSTOM: "u_",
    VolumeType.CONTAINER: "c_",
    VolumeType.VIRTUAL_MACHINE: "v_",
    VolumeType.IMAGE: "i_",
}
_SUFFIX = {Content.FILESYSTEM: "", Content.BLOCK: ".b", Content.ISO: ".i"}


def volume_name(
    volume_type: VolumeType, content: Content, volume_uuid: uuid.UUID, *, snapshot: bool = False
) -> str:
    encoded = base64.b64encode(volume_uuid.bytes).decode("ascii")
    name = f"{'s' if snapshot else ''}{_PREFIX[volume_type]}{encoded}{_SUFFIX[content]}"
    if len(name) > MAX_NAME:  # cannot happen with the tables above; guards future edits
        raise ValueError(f"volume name {name!r} exceeds {MAX_NAME} characters")
    return name


@dataclass(frozen=True)
class ParsedName:
    volume_type: VolumeType
    content: Content
    uuid: uuid.UUID
    snapshot: bool


def parse_name(name: str) -> ParsedName | None:
    """Decode a name made by :func:`volume_name`; None for any other name."""
    snapshot = name.startswith("s") and name[1:3] in _PREFIX.values()
    body = name[1:] if snapshot else name
    volume_type = next((t for t, p in _PREFIX.items() if body.startswith(p)), None)
    if volume_type is None:
        return None
    body = body[2:]
    content = Content.FILESYSTEM
    for kind, suffix in _SUFFIX.items():
        if suffix and body.endswith(suffix):
            content, body = kind, body[: -len(suffix)]
    try:
        raw = base64.b64decode(body, validate=True)
    except ValueError:
        return None
    if len(raw) != 16 or len(body) != 24:
        return None
    return ParsedName(volume_type, content, uuid.UUID(bytes=raw), snapshot)
