import datetime

import pytest

from lxflex.times import ZERO_TIME, parse_rfc3339

UTC = datetime.UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2030-01-02T03:04:05.123456789Z", datetime.datetime(2030, 1, 2, 3, 4, 5, 123456, UTC)),
        ("2030-01-02T03:04:05Z", datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02T04:04:05+01:00", datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02T03:04:05", datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (ZERO_TIME, None),
        ("0001-01-01T00:00:00.000000000Z", None),
        ("", None),
    ],
)
def test_parse(text: str, expected: datetime.datetime | None) -> None:
    assert parse_rfc3339(text) == expected


def test_not_a_time() -> None:
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_rfc3339("soon")
