"""Lifecycle events: what a use case changed, told to whoever listens (the API turns them
into LXD's ``lifecycle`` events on ``/1.0/events``).

A use case emits one event once its change is recorded: never for a change that failed,
and never twice. A listener that raises is logged and dropped from that one event, so
an event can never fail the change it reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["Events", "Lifecycle"]

log = logging.getLogger("lxflex.service")


@dataclass(frozen=True)
class Lifecycle:
    """One change, named as LXD names it (``storage-volume-created``, ...): the pool,
    and where it applies the volume, the snapshot or the backup."""

    action: str
    pool: str
    project: str = "default"
    volume: str | None = None
    snapshot: str | None = None
    backup: str | None = None
    context: Mapping[str, str] = field(default_factory=dict)


class Events:
    def __init__(self) -> None:
        self._listeners: list[Callable[[Lifecycle], None]] = []

    def subscribe(self, listener: Callable[[Lifecycle], None]) -> None:
        self._listeners.append(listener)

    def emit(self, event: Lifecycle) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a listener failed on %s", event.action)

    def volume(
        self,
        action: str,
        pool: str,
        volume: str,
        project: str,
        *,
        snapshot: str | None = None,
        context: Mapping[str, str] | None = None,
    ) -> None:
        """Emit ``storage-volume-<action>`` (or ``storage-volume-snapshot-<action>``)."""
        kind = "storage-volume-snapshot" if snapshot is not None else "storage-volume"
        event = Lifecycle(f"{kind}-{action}", pool, project, volume, snapshot, None, context or {})
        self.emit(event)

    def backup(
        self,
        action: str,
        pool: str,
        volume: str,
        backup: str,
        project: str,
        context: Mapping[str, str] | None = None,
    ) -> None:
        """Emit ``storage-volume-backup-<action>``."""
        event = Lifecycle(
            f"storage-volume-backup-{action}", pool, project, volume, None, backup, context or {}
        )
        self.emit(event)
