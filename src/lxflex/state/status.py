"""The life of a row: the ``status`` a pool, volume, snapshot or backup row reads, and
the only ways it may change.

A row is written before the array work it records and finished after it, so a crash
between the two leaves a row that says what was under way; start-up recovery reads it
(see :mod:`lxflex.service.recovery`)::

    (insert) --> creating --CREATE_DONE--> created --DELETE_BEGIN--> deleting --> (removed)
                    |                       ^   |                        |
                    +--> (removed)          |   +--RESTORE_BEGIN--> restoring
                                            |                            |
                                            +-------RESTORE_DONE---------+
                                            +-------DELETE_REFUSED-------(deleting)

A row may be removed in any status: a failed create is undone, a delete is finished,
recovery clears what a crash left. Every other change of status is one of the
:data:`STEPS` below, applied by the store as a compare-and-set: it changes the row only
if the row still reads the step's ``old`` status, and raises :class:`StatusChanged`
otherwise, so two writers can never both believe they moved one row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CREATE_DONE",
    "DELETE_BEGIN",
    "DELETE_REFUSED",
    "POOL_CREATED",
    "RESTORE_BEGIN",
    "RESTORE_DONE",
    "STEPS",
    "Status",
    "StatusChanged",
    "Step",
]


class Status(enum.StrEnum):
    """What a row says of the array work it records (the text stored in ``status``)."""

    CREATING = "creating"
    """Inserted before its array object is made: not shown to readers; a crash leaves it
    for recovery to remove with whatever the array made."""
    CREATED = "created"
    """Whole: the array object exists and the row records it. Only such rows are shown
    as existing."""
    DELETING = "deleting"
    """A delete is under way: shown, but no new work starts on it; a crash leaves it for
    recovery to finish."""
    RESTORING = "restoring"
    """A virtual machine's pair is being restored from a snapshot; a crash leaves it for
    recovery to undo half a restore."""
    PENDING = "pending"
    """A pool defined on members (LXD's ``--target`` step) but not created yet: it has
    no config, and holds nothing."""

    @property
    def visible(self) -> bool:
        """Whether readers see the row (a row ``creating`` does not exist yet to them)."""
        return self is not Status.CREATING


class StatusChanged(Exception):
    """A step found its row in another status than it starts from (or gone)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One allowed change of a row's status."""

    name: str
    old: Status
    new: Status


CREATE_DONE = Step("create done", Status.CREATING, Status.CREATED)
DELETE_BEGIN = Step("delete begun", Status.CREATED, Status.DELETING)
DELETE_REFUSED = Step("delete refused by the array", Status.DELETING, Status.CREATED)
RESTORE_BEGIN = Step("restore begun", Status.CREATED, Status.RESTORING)
RESTORE_DONE = Step("restore done or undone", Status.RESTORING, Status.CREATED)
POOL_CREATED = Step("pending pool created", Status.PENDING, Status.CREATED)

STEPS: tuple[Step, ...] = (
    CREATE_DONE,
    DELETE_BEGIN,
    DELETE_REFUSED,
    RESTORE_BEGIN,
    RESTORE_DONE,
    POOL_CREATED,
)
"""The transition table: every change of status there is."""
