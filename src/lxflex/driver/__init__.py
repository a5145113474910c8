"""The PowerFlex storage driver: naming, sizing, configuration and volume operations.

Its public face is what this module exports (pinned by ``tests/unit/test_public.py``);
the layers above import from here, never from the modules inside:

* the key tables and config rules (:mod:`.config`), names (:mod:`.naming`) and sizes
  (:mod:`.units`);
* the errors every operation raises (:mod:`.errors`): a gateway's or a host's failure
  reaches the caller as one of them, saying what was under way;
* a pool's driver, :class:`PoolDriver`, opened from the pool's config and this host's
  :class:`HostSide` (:func:`check_pool` only checks a config, as :func:`resolve` does
  with a client of one's own); its :class:`PowerFlexVolumes` makes, attaches, mounts,
  snapshots, restores, grows, copies and removes volumes through an :class:`Attacher`
  (NVMe/TCP or SDC); its :class:`InstanceVolumes` does the same for instance volumes (a
  virtual machine's pair whole); its :class:`Backups` exports and imports them;
* the port through which a failed cleanup hands over what it left (:class:`Leftovers`).
"""

from .attach import Attacher, AttachPolicy, NvmeAttacher, SdcAttacher
from .backup import Backups, BackupSource
from .config import (
    MODE_NVME,
    MODE_SDC,
    PASSWORD_KEY,
    POOL_KEYS,
    SCHEDULE_ALIASES,
    VOLUME_KEYS,
    ConfigError,
    bool_value,
    copy_volume_config,
    fill_volume_config,
    imported_volume_config,
    schedule_parts,
    updated_volume_config,
    validate_pool_config,
    validate_volume_config,
)
from .errors import Conflict, DriverError, InsufficientSpace, InvalidRequest, NotFound, Unavailable
from .face import HostSide, PoolDriver, check_pool
from .instances import (
    DeleteInterrupted,
    InstanceCopy,
    InstanceIds,
    InstanceVolumes,
    RestoreInterrupted,
)
from .leftovers import Leftover, Leftovers, LoggedLeftovers
from .naming import Content, VolumeType, parse_name, volume_name
from .pool import ResolvedPool, client_for, resolve
from .refresh import GuardKept, RefreshPlan
from .spec import CopyPlan, CopyResult, Progress, VolumeSpec
from .units import GIB, format_size, granularity, parse_size, round_up
from .volumes import PowerFlexVolumes

__all__ = [
    "GIB",
    "MODE_NVME",
    "MODE_SDC",
    "PASSWORD_KEY",
    "POOL_KEYS",
    "SCHEDULE_ALIASES",
    "VOLUME_KEYS",
    "AttachPolicy",
    "Attacher",
    "BackupSource",
    "Backups",
    "ConfigError",
    "Conflict",
    "Content",
    "CopyPlan",
    "CopyResult",
    "DeleteInterrupted",
    "DriverError",
    "GuardKept",
    "HostSide",
    "InstanceCopy",
    "InstanceIds",
    "InstanceVolumes",
    "InsufficientSpace",
    "InvalidRequest",
    "Leftover",
    "Leftovers",
    "LoggedLeftovers",
    "NotFound",
    "NvmeAttacher",
    "PoolDriver",
    "PowerFlexVolumes",
    "Progress",
    "RefreshPlan",
    "ResolvedPool",
    "RestoreInterrupted",
    "SdcAttacher",
    "Unavailable",
    "VolumeSpec",
    "VolumeType",
    "bool_value",
    "check_pool",
    "client_for",
    "copy_volume_config",
    "fill_volume_config",
    "format_size",
    "granularity",
    "imported_volume_config",
    "parse_name",
    "parse_size",
    "resolve",
    "round_up",
    "schedule_parts",
    "updated_volume_config",
    "validate_pool_config",
    "validate_volume_config",
    "volume_name",
]
