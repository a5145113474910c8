import datetime

import pytest

from lxflex.driver.errors import InvalidRequest
from lxflex.service.rules import add_expiry, check_name, next_name

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
