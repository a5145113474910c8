"""Times as LXD writes them: RFC 3339 in UTC with a ``Z``; Go's nanoseconds, read to
Python's microseconds; Go's zero time (``0001-01-01T00:00:00Z``) for "none"."""

from __future__ import annotations

import datetime

__all__ = ["ZERO_TIME", "parse_rfc3339"]

ZERO_TIME = "0001-01-01T00:00:00Z"


def parse_rfc3339(text: str) -> datetime.datetime | None:
    """A time in UTC if it names none; None for an empty text or the zero time.
    ValueError for a text that is not RFC 3339."""
    if not text or text.startswith("0001-01-01"):
        return None
    value = text.replace("Z", "+00:00")
    head, dot, rest = value.partition(".")
    if dot:  # Go writes nanoseconds; Python reads microseconds
        digits = "".join(c for c in rest if c.isdigit())
        value = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    parsed = datetime.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return None if parsed.year <= 1 else parsed
