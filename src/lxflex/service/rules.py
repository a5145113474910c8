"""Pure rules of the volume use cases: names, new volumes' configs, snapshot name
patterns, expiry times."""

from __future__ import annotations

import calendar
import datetime
import re
import unicodedata
import uuid
from collections.abc import Mapping

from ..driver import SCHEDULE_ALIASES, InvalidRequest, fill_volume_config, schedule_parts
from ..state import store as st

__all__ = [
    "add_expiry",
    "check_name",
    "fill_config",
    "next_name",
    "schedule_due",
]


# Names become parts of file names (mount points, ``.NAME.partial`` tarballs): room left.
NAME_BYTES = 200


def check_name(name: str) -> None:
    """A volume, snapshot or backup name as LXD takes it: not empty, no slash or
    backslash, no leading dot, no space or control character; at most 200 bytes."""
    if (
        not name
        or "/" in name
        or "\\" in name
        or name.startswith(".")
        or len(name.encode()) > NAME_BYTES
        or any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in name)
    ):
        raise InvalidRequest(
            f"invalid name {name!r}: no slashes, backslashes, spaces, control characters "
            f"or leading dots, and at most {NAME_BYTES} bytes"
        )


def next_name(pattern: str, taken: set[str]) -> str:
    """The first free name of ``pattern`` (``%d`` counts up from 0)."""
    if "%d" not in pattern:
        return pattern
    index = 0
    while pattern.replace("%d", str(index), 1) in taken:
        index += 1
    return pattern.replace("%d", str(index), 1)


_AMOUNT = re.compile(r"(\d+)([MHdwmy])")


_ALIAS_CRON = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@annually": "0 0 1 1 *",
    "@yearly": "0 0 1 1 *",
}
assert set(_ALIAS_CRON) == set(SCHEDULE_ALIASES)  # noqa: S101 - the two tables agree


def schedule_due(schedule: str, now: datetime.datetime) -> bool:
    """Whether a (valid) ``snapshots.schedule`` fires in the minute of ``now`` (UTC)."""
    from croniter import croniter  # loaded only when something is scheduled

    minute = now.astimezone(datetime.UTC).replace(second=0, microsecond=0)
    return any(
        croniter.match(_ALIAS_CRON.get(part, part), minute) for part in schedule_parts(schedule)
    )


def add_expiry(start: datetime.datetime, expiry: str) -> datetime.datetime:
    """``start`` plus an LXD expiry such as ``3d`` or ``1m 2w`` (months and years are
    calendar months and years)."""
    result = start
    for amount, unit in _AMOUNT.findall(expiry):
        n = int(amount)
        if unit in "MHdw":
            result += {
                "M": datetime.timedelta(minutes=n),
                "H": datetime.timedelta(hours=n),
                "d": datetime.timedelta(days=n),
                "w": datetime.timedelta(weeks=n),
            }[unit]
        else:
            months = n * (12 if unit == "y" else 1) + result.month - 1
            year, month = result.year + months // 12, months % 12 + 1
            day = min(result.day, calendar.monthrange(year, month)[1])
            result = result.replace(year=year, month=month, day=day)
    return result


def fill_config(
    pool: st.Pool, content: str, config: Mapping[str, str], step: int
) -> dict[str, str]:
    """A new volume's config, as the driver's key table fills it (see
    :func:`~lxflex.driver.config.fill_volume_config`), with a new UUID."""
    filled = fill_volume_config(pool.config, content, config, step=step)
    filled["volatile.uuid"] = str(uuid.uuid4())
    return filled
