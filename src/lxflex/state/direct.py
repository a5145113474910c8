"""The per-request writes, run by SQLite's driver directly.

SQLAlchemy spends 40-80 µs around each statement it executes (cache key, execution
context, result object) for 5-10 µs of work in SQLite; a volume create runs two writes in
two transactions, on the one thread that serves every request. A statement marked with
:func:`prepared` is compiled by SQLAlchemy once per set of parameter names (the same SQL
it would send), and its parameters go through SQLAlchemy's own bind processors (a time
becomes the same text); only the execution skips the engine. Plain INSERT, UPDATE and
DELETE statements with one set of parameters qualify; one that needs Python-side defaults
is left to SQLAlchemy, as are many sets at once and every statement on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

__all__ = ["Rows", "prepared", "run"]

_S = TypeVar("_S", sa.Insert, sa.Update, sa.Delete)

# id -> statement: prepared statements live as long as the module that made them.
_PREPARED: dict[int, sa.Insert | sa.Update | sa.Delete] = {}
_PLANS: dict[tuple[int, tuple[str, ...]], _Plan | None] = {}


def prepared(statement: _S) -> _S:
    """Mark a statement built once at import as one to run on the driver directly."""
    _PREPARED[id(statement)] = statement
    return statement


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    def bind(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            params[name] if process is None else process(params[name])
            for name, process in zip(self.names, self.processors, strict=True)
        )


class Rows:
    """What the store reads of a write's result: the rows it returned."""

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def all(self) -> list[Any]:
        return self._rows

    def scalar_one(self) -> Any:
        if len(self._rows) != 1:
            raise sa.exc.NoResultFound(f"expected one row, got {len(self._rows)}")
        return self._rows[0][0]


def _plan(
    statement: sa.Insert | sa.Update | sa.Delete, names: tuple[str, ...], dialect: Dialect
) -> _Plan | None:
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(names))
    if (
        compiled.positiontup is None
        or compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.postfetch_lastrowid
    ):
        return None
    order = tuple(compiled.positiontup)
    processors = tuple(
        compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order
    )
    return _Plan(compiled.string, order, processors)


def run(
    driver: sqlite3.Connection,
    dialect: Dialect,
    statement: Any,
    parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
) -> Rows | None:
    """Execute a prepared statement with one set of parameters on ``driver``; None when
    it is not one (or cannot be run directly), for SQLAlchemy to execute instead."""
    if id(statement) not in _PREPARED or not isinstance(parameters, Mapping):
        return None
    key = (id(statement), tuple(parameters))
    if key in _PLANS:
        plan = _PLANS[key]
    else:
        plan = _PLANS[key] = _plan(statement, key[1], dialect)
    if plan is None:
        return None
    try:
        return Rows(driver.execute(plan.sql, plan.bind(parameters)).fetchall())
    except sqlite3.Error as exc:  # as SQLAlchemy would raise it (IntegrityError: a clash)
        raise DBAPIError.instance(plan.sql, None, exc, sqlite3.Error) from None
