"""Repairing what a crash cut short: rows left ``creating`` or ``deleting``."""

from __future__ import annotations

from ..state import Database
from ..state import store as st
from .runtime import PoolRuntime
from .specs import spec_of

__all__ = ["recover_volume"]


async def recover_volume(
    db: Database, runtime: PoolRuntime, vol: st.Volume, snaps: list[st.Snapshot]
) -> int:
    """Finish or undo what a crash interrupted on one volume; return the rows repaired."""
    repaired = 0
    for snap in snaps:
        if snap.status == "created" and vol.status != "deleting":
            continue
        snap_id = snap.array_id or await runtime.volumes.find(
            spec_of(vol.content_type, snap.config), snapshot=True
        )
        if snap_id:
            await runtime.volumes.delete(snap_id)
        async with db.write() as conn:
            await st.delete_snapshot(conn, snap.id)
        repaired += 1
    if vol.status in ("creating", "deleting"):
        vol_id = vol.array_id or await runtime.volumes.find(spec_of(vol.content_type, vol.config))
        if vol_id:
            await runtime.volumes.delete(vol_id)
        async with db.write() as conn:
            await st.delete_volume(conn, vol.id)
        repaired += 1
    return repaired
