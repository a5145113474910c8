import datetime

import pytest

from lxflex.driver.config import ConfigError, validate_volume_config
from lxflex.driver.errors import InvalidRequest
from lxflex.service.rules import add_expiry, check_name, next_name, schedule_due

T0 = datetime.datetime(2026, 1, 31, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("expiry", "expected"),
    [
        ("30M", T0 + datetime.timedelta(minutes=30)),
        ("6H", T0 + datetime.timedelta(hours=6)),
        ("3d", T0 + datetime.timedelta(days=3)),
        ("2w", T0 + datetime.timedelta(weeks=2)),
        ("1m", datetime.datetime(2026, 2, 28, 12, 0, tzinfo=datetime.UTC)),  # calendar month
        ("1y", datetime.datetime(2027, 1, 31, 12, 0, tzinfo=datetime.UTC)),
        ("1w 2d", T0 + datetime.timedelta(days=9)),
        ("13m", datetime.datetime(2027, 2, 28, 12, 0, tzinfo=datetime.UTC)),
    ],
)
def test_add_expiry(expiry: str, expected: datetime.datetime) -> None:
    assert add_expiry(T0, expiry) == expected


def test_next_name() -> None:
    assert next_name("snap%d", set()) == "snap0"
    assert next_name("snap%d", {"snap0", "snap1", "snap3"}) == "snap2"
    assert next_name("backup-%d-x", {"backup-0-x"}) == "backup-1-x"
    assert next_name("fixed", {"other"}) == "fixed"


@pytest.mark.parametrize("bad", ["", "a/b", ".hidden", "with space", "x" * 256, "tab\tname"])
def test_check_name_refuses(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        check_name(bad)


_NOON = datetime.datetime(2026, 12, 1, 12, 0, 30, tzinfo=datetime.UTC)  # a Tuesday


@pytest.mark.parametrize(
    ("schedule", "now", "due"),
    [
        ("@hourly", _NOON, True),
        ("@hourly", _NOON + datetime.timedelta(minutes=1), False),
        ("@daily", _NOON, False),
        ("@daily, @hourly", _NOON, True),
        ("0,30 12 * * *", _NOON, True),  # a bare comma is cron's
        ("*/5 * * * 2", _NOON + datetime.timedelta(minutes=5), True),
        ("0 12 * * 1", _NOON, False),
        ("@midnight", _NOON.replace(hour=0), True),
    ],
)
def test_schedule_due(schedule: str, now: datetime.datetime, due: bool) -> None:
    validate_volume_config({"snapshots.schedule": schedule})
    assert schedule_due(schedule, now) is due


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"snapshots.schedule": "banana"}, "not a schedule"),
        ({"snapshots.schedule": "* * * * * *"}, "not a schedule"),  # seconds: not LXD's
        ({"snapshots.schedule": "@hourly,@daily"}, "not a schedule"),  # aliases need ", "
        ({"snapshots.pattern": "{{ creation_date }}"}, "templates are not supported"),
        ({"snapshots.expiry": "3 days"}, "like 3d"),
        ({"security.shifted": "maybe"}, "true or false"),
    ],
)
def test_bad_snapshot_and_security_keys(config: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        validate_volume_config(config)


def test_lxd_volume_keys_are_known() -> None:
    validate_volume_config(
        {
            "snapshots.expiry": "1w 3d",
            "snapshots.pattern": "auto%d",
            "snapshots.schedule": "@daily, @hourly",
            "security.shifted": "true",
            "security.unmapped": "false",
        }
    )
