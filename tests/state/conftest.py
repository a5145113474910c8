"""Databases for the state tests (the shared fixtures live in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lxflex.state import Database


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await Database.open(db_url)
    yield database
    await database.close()
