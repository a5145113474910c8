"""What the volume services hand back: views of volumes, and array IDs of records."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Protocol

import msgspec

from ..driver import Conflict, InstanceIds
from ..state import Status
from ..state import attachments as at
from ..state import store as st

__all__ = ["SnapshotRecord", "VolumeUse", "VolumeView", "array_of", "ids_of", "make_view"]


class VolumeUse(msgspec.Struct, frozen=True):
    """A use of a volume (see :mod:`.attachments`) on a server's host: the host's own
    (``instance`` empty) or an instance's."""

    server_uuid: str
    instance: str
    instance_project: str


class SnapshotRecord(Protocol):
    """What the layers above read of a snapshot (the state's record has it all): they
    see snapshots through this, never through the state."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def config(self) -> Mapping[str, str]: ...
    @property
    def created_at(self) -> datetime.datetime: ...
    @property
    def expires_at(self) -> datetime.datetime | None: ...


class VolumeView(msgspec.Struct, frozen=True):
    """A volume as the use cases hand it out (a Struct: lists build thousands)."""

    name: str
    pool: str
    project: str
    type: str
    content_type: str
    description: str
    config: dict[str, str]
    created_at: datetime.datetime
    snapshot_records: tuple[st.Snapshot, ...]  # oldest first, created ones only
    uses: tuple[VolumeUse, ...] = ()  # on every host

    @property
    def snapshots(self) -> list[str]:
        return [s.name for s in self.snapshot_records]


def make_view(
    pool: st.Pool,
    vol: st.Volume,
    snaps: list[st.Snapshot],
    attachments: list[at.Attachment] | None = None,
) -> VolumeView:
    return VolumeView(
        vol.name,
        pool.name,
        vol.project,
        vol.type,
        vol.content_type,
        vol.description,
        dict(vol.config),
        vol.created_at,
        tuple(s for s in snaps if s.status == Status.CREATED),
        tuple(VolumeUse(a.server_uuid, a.instance, a.instance_project) for a in attachments or ()),
    )


def array_of(record: st.Volume | st.Snapshot) -> str:
    if not record.array_id:
        raise Conflict(f"{record.name!r} has no array volume yet (an operation is under way)")
    return record.array_id


def ids_of(record: st.Volume | st.Snapshot) -> InstanceIds:
    """The array IDs of a volume or snapshot: its own, and a virtual machine's twin."""
    return InstanceIds(array_of(record), record.fs_array_id)
