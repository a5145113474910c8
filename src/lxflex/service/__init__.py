"""Use cases over the state, the driver and the host: pools, volumes (custom and instance),
snapshots, backups, trust."""

from .attachments import AttachedElsewhere, Attachment, AttachmentService, AttachmentView
from .check import Report as CheckReport
from .cluster import DEFAULT_OFFLINE_THRESHOLD, ClusterService, ClusterSettings, MemberView
from .instances import InstanceService
from .pools import PASSWORD_KEY, PoolService, PoolView
from .runtime import HostSettings, Runtimes
from .storage import Storage
from .trust import TrustService
from .views import SnapshotRecord, VolumeUse, VolumeView
from .volumes import VolumeService

__all__ = [
    "DEFAULT_OFFLINE_THRESHOLD",
    "PASSWORD_KEY",
    "AttachedElsewhere",
    "Attachment",
    "AttachmentService",
    "AttachmentView",
    "CheckReport",
    "ClusterService",
    "ClusterSettings",
    "HostSettings",
    "InstanceService",
    "MemberView",
    "PoolService",
    "PoolView",
    "Runtimes",
    "SnapshotRecord",
    "Storage",
    "TrustService",
    "VolumeService",
    "VolumeUse",
    "VolumeView",
]
