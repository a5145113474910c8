"""A string that cannot leak by accident.

`Secret` wraps a password or a token. Its ``repr``, ``str`` and ``format`` all render
``***``, so a secret that lands in an f-string, a log record, an exception text or a
traceback's locals shows nothing. The only way to the value is :meth:`Secret.reveal`,
which code calls at the one place the value must go on the wire.
"""

from __future__ import annotations

import hmac
from typing import NoReturn

MASK = "***"


class Secret:
    """An opaque holder for a credential; compare with ``==``, read with :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the value. Call only where it is put on the wire."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, len(self._value)))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not picklable")
