"""LXD size strings, and the array's size granularity.

LXD writes sizes as an integer followed by an exact, case-sensitive suffix: none, ``B``
or `` bytes`` for bytes; ``kB``, ``MB``, ``GB``, ``TB``, ``PB``, ``EB`` (powers of 1000);
``KiB``, ``MiB``, ``GiB``, ``TiB``, ``PiB``, ``EiB`` (powers of 1024). An empty string
means 0. PowerFlex allocates in whole steps: 8 GiB on 4.x and earlier, 1 GiB on 5.x.
"""

from __future__ import annotations

import re

from ..powerflex import version_tuple

__all__ = ["GIB", "format_size", "granularity", "parse_size", "round_up"]

GIB = 1024**3

_SUFFIXES: dict[str, int] = {
    "": 1,
    "B": 1,
    " bytes": 1,
    "kB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "PB": 1000**5,
    "EB": 1000**6,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "PiB": 1024**5,
    "EiB": 1024**6,
}
_SIZE = re.compile(r"^([0-9]+)([^0-9]*)$")  # ASCII digits only: "٨GiB" is no size
_MAX = 2**63 - 1


def parse_size(text: str) -> int:
    """Bytes in an LXD size string; ValueError with the reason otherwise."""
    if text == "":
        return 0
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"invalid size {text!r}: expected a whole number and a unit, like 10GiB")
    number, suffix = match.groups()
    if suffix not in _SUFFIXES:
        units = ", ".join(s for s in _SUFFIXES if s.strip())
        raise ValueError(f"invalid size {text!r}: unknown unit {suffix!r} (use one of {units})")
    value = int(number) * _SUFFIXES[suffix]
    if value > _MAX:
        raise ValueError(f"invalid size {text!r}: too large")
    return value


def format_size(size: int) -> str:
    """The shortest exact LXD string for ``size`` bytes, preferring binary units."""
    for suffix in ("EiB", "PiB", "TiB", "GiB", "MiB", "KiB"):
        step = _SUFFIXES[suffix]
        if size and size % step == 0:
            return f"{size // step}{suffix}"
    return f"{size}B"


def granularity(api_version: str) -> int:
    """Bytes per allocation step for a gateway of this API version."""
    return GIB if version_tuple(api_version)[0] >= 5 else 8 * GIB


def round_up(size: int, step: int) -> int:
    """``size`` rounded up to a positive multiple of ``step``."""
    return max(step, -(-size // step) * step)
