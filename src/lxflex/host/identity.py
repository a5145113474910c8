"""This server's identity: a UUID kept in ``<state>/server.uuid``, created once."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

__all__ = ["server_uuid"]


def server_uuid(state_dir: Path) -> str:
    """The server's UUID, written on first use (atomically) and never changed after."""
    path = state_dir / "server.uuid"
    try:
        value = path.read_text().strip()
        return str(uuid.UUID(value))
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    value = str(uuid.uuid4())
    tmp = path.with_name(f".server.uuid.{os.getpid()}")
    tmp.write_text(value + "\n")
    try:
        os.link(tmp, path)  # fails if another process won the race: keep theirs
    except FileExistsError:
        value = path.read_text().strip()
    finally:
        tmp.unlink()
    return value
