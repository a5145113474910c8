"""lxflex's persistent state: SQLAlchemy Core over SQLite (default) or PostgreSQL."""

from .db import NOTICE_LIMIT, Conn, Database, DatabaseBusy, normalize_url
from .status import (
    CREATE_DONE,
    DELETE_BEGIN,
    DELETE_REFUSED,
    RESTORE_BEGIN,
    RESTORE_DONE,
    Status,
    StatusChanged,
)
from .store import NameTaken, Pool, Snapshot, Volume

__all__ = [
    "CREATE_DONE",
    "DELETE_BEGIN",
    "DELETE_REFUSED",
    "NOTICE_LIMIT",
    "RESTORE_BEGIN",
    "RESTORE_DONE",
    "Conn",
    "Database",
    "DatabaseBusy",
    "NameTaken",
    "Pool",
    "Snapshot",
    "Status",
    "StatusChanged",
    "Volume",
    "normalize_url",
]
