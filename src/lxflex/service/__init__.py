"""Use cases over the state, the driver and the host: pools, volumes, snapshots."""

from .pools import PoolService, PoolView
from .runtime import HostSettings, Runtimes
from .storage import Storage
from .volumes import VolumeService, VolumeView

__all__ = [
    "HostSettings",
    "PoolService",
    "PoolView",
    "Runtimes",
    "Storage",
    "VolumeService",
    "VolumeView",
]
