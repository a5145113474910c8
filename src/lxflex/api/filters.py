"""LXD's list filters: ``name eq v1``, ``config.size ne 8GiB and not type eq custom``.

A filter is a sequence of clauses ``[not] <field> eq|ne <value>`` joined by ``and`` and
``or`` (``and`` binds tighter). Fields are dotted paths into the listed object
(``config.user.foo``); volumes also have the pseudo-field ``snapshot`` (true/false).
Values may be quoted; they match as case-insensitive anchored regular expressions.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from .envelope import ApiError

__all__ = ["matches", "parse_filter"]


@dataclass(frozen=True)
class Clause:
    field: str
    equal: bool
    pattern: re.Pattern[str]
    negate: bool


# A filter is a disjunction of conjunctions of clauses.
Filter = list[list[Clause]]


def parse_filter(text: str) -> Filter | None:
    if not text.strip():
        return None
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ApiError(400, f"invalid filter: {exc}") from None
    result: Filter = [[]]
    i = 0
    while i < len(words):
        negate = words[i].lower() == "not"
        if negate:
            i += 1
        if i + 2 >= len(words):
            raise ApiError(400, f"invalid filter {text!r}: incomplete clause")
        field, op, value = words[i], words[i + 1].lower(), words[i + 2]
        if op not in ("eq", "ne"):
            raise ApiError(400, f"invalid filter {text!r}: unknown operator {op!r}")
        try:
            pattern = re.compile(f"^(?:{value})$", re.IGNORECASE)
        except re.error:
            pattern = re.compile(f"^{re.escape(value)}$", re.IGNORECASE)
        result[-1].append(Clause(field, op == "eq", pattern, negate))
        i += 3
        if i < len(words):
            joiner = words[i].lower()
            if joiner == "or":
                result.append([])
            elif joiner != "and":
                raise ApiError(400, f"invalid filter {text!r}: expected and/or, got {joiner!r}")
            i += 1
            if i >= len(words):
                raise ApiError(400, f"invalid filter {text!r}: dangling {joiner}")
    return result


def _value(obj: dict[str, Any], field: str) -> str:
    if field == "snapshot":
        return "true" if "/" in str(obj.get("name", "")) else "false"
    if field.startswith("config."):
        return str(obj.get("config", {}).get(field[len("config.") :], ""))
    value: Any = obj
    for part in field.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return str(value)


def matches(expression: Filter, obj: dict[str, Any]) -> bool:
    def clause_ok(c: Clause) -> bool:
        hit = bool(c.pattern.match(_value(obj, c.field)))
        ok = hit if c.equal else not hit
        return not ok if c.negate else ok

    return any(all(clause_ok(c) for c in group) for group in expression)
