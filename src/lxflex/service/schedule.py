"""The clock's work, once a minute: snapshots that ``snapshots.schedule`` asks for, and
the removal of snapshots past their expiry."""

from __future__ import annotations

import datetime
import logging

from ..state import Status
from ..state import store as st
from .rules import add_expiry, schedule_due
from .volumes import CUSTOM, VolumeService

__all__ = ["run_schedule"]

log = logging.getLogger("lxflex.service")


async def run_schedule(volumes: VolumeService, now: datetime.datetime) -> tuple[int, int]:
    """The clock's work at ``now`` (run once a minute): remove the snapshots of custom
    volumes that expired, and snapshot the volumes whose ``snapshots.schedule`` is
    due, named by ``snapshots.pattern`` and expiring by ``snapshots.expiry``. One
    volume's failure is logged and does not stop the others. Return (taken,
    removed)."""
    taken = removed = 0
    for view in await volumes.pools.all():
        pool = await volumes.pools.record(view.name)
        async with volumes.db.read() as conn:
            vols = await st.list_volumes(conn, pool.id)
            snaps = await st.list_pool_snapshots(conn, pool.id)
        for vol in vols:
            if vol.type != CUSTOM or vol.status != Status.CREATED:
                continue
            for snap in snaps.get(vol.id, []):
                if snap.expires_at is not None and snap.expires_at <= now:
                    try:
                        await volumes.delete_snapshot(
                            pool.name, vol.name, snap.name, project=vol.project
                        )
                        removed += 1
                    except Exception as exc:
                        log.warning(
                            "cannot remove expired snapshot %s/%s: %s", vol.name, snap.name, exc
                        )
            schedule = vol.config.get("snapshots.schedule")
            if schedule and schedule_due(schedule, now):
                expiry = vol.config.get("snapshots.expiry")
                expires = add_expiry(now, expiry) if expiry else None
                try:
                    await volumes.snapshot(
                        pool.name, vol.name, project=vol.project, expires_at=expires
                    )
                    taken += 1
                except Exception as exc:
                    log.warning("scheduled snapshot of %s failed: %s", vol.name, exc)
    return taken, removed
