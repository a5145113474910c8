"""lxflex-sim: a stateful Dell PowerFlex gateway simulator with host fabric emulation.

An independent implementation: nothing here imports the lxflex client, driver or their
naming and sizing code, so that one misunderstanding cannot pass on both sides.
"""

from .clock import Clock, ManualClock, SystemClock
from .server import DEFAULT_ADMIN_PASSWORD, SimConfig, Simulator

__all__ = [
    "DEFAULT_ADMIN_PASSWORD",
    "Clock",
    "ManualClock",
    "SimConfig",
    "Simulator",
    "SystemClock",
]
