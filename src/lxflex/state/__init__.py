"""lxflex's persistent state: SQLAlchemy Core over SQLite (default) or PostgreSQL."""

from .db import Conn, Database, DatabaseBusy, normalize_url
from .store import NameTaken, Pool, Snapshot, Volume

__all__ = [
    "Conn",
    "Database",
    "DatabaseBusy",
    "NameTaken",
    "Pool",
    "Snapshot",
    "Volume",
    "normalize_url",
]
