"""What a volume's uses are, for :mod:`.attachments` (the host's own) and
:mod:`.instance_uses` (the instances of its LXD or Incus): the views the API renders,
and the refusals a use may meet."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..driver import Conflict, Content
from ..state import attachments as at
from ..state import store as st
from ..state.attachments import Attachment

__all__ = [
    "AttachedElsewhere",
    "Attachment",
    "AttachmentView",
    "BrokenAttachment",
    "Mover",
    "shared",
    "use_view",
]


@dataclass(frozen=True)
class AttachmentView:
    pool: str
    project: str
    volume: str
    server_uuid: str  # the host's server
    path: str  # where the volume is usable on that host: a directory, or a device
    instance: str  # "" for the host's own use
    instance_project: str
    device: str
    created_at: datetime.datetime


class AttachedElsewhere(Conflict):
    """The volume is in use on another host: ``holders`` are its uses there (a move
    takes it from them first)."""

    def __init__(self, message: str, holders: list[at.Attachment]) -> None:
        super().__init__(message)
        self.holders = holders


@dataclass(frozen=True)
class BrokenAttachment:
    """An attachment of this host whose mount or device is missing (for storage check)."""

    volume: str
    project: str
    path: str
    problem: str
    repair: Callable[[], Awaitable[None]]  # attaches it again (a stray: unmounts it)
    stray: bool = False  # a mount of a volume another host has


# (pool, volume, project, the uses on other hosts): each given up by its member, only if
# its instance does not run (Conflict if it does); a member that is Offline fenced.
Mover = Callable[[str, str, str, list[Attachment]], Awaitable[None]]


def shared(vol: st.Volume) -> bool:
    """Whether several hosts may use the volume at once (``security.shared``)."""
    return vol.content_type == Content.BLOCK and vol.config.get("security.shared") == "true"


def use_view(pool: str, vol: st.Volume, row: at.Attachment) -> AttachmentView:
    return AttachmentView(
        pool,
        vol.project,
        vol.name,
        row.server_uuid,
        row.path,
        row.instance,
        row.instance_project,
        row.device,
        row.created_at,
    )
