"""lxflex's persistent state: SQLAlchemy Core over SQLite (default) or PostgreSQL."""

from .db import Database, DatabaseBusy, normalize_url
from .store import NameTaken, Pool, Snapshot, Volume

__all__ = ["Database", "DatabaseBusy", "NameTaken", "Pool", "Snapshot", "Volume", "normalize_url"]
