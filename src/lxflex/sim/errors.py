"""The simulator's error catalogue: what the MDM answers when a rule is broken.

Codes and texts follow what real gateways were seen to return; where the real value is
not known, the code is the simulator's own choice and marked so. Errors are rendered as
``{"message", "httpStatusCode", "errorCode"}`` (plus ``details`` for multi-object actions).
This module is part of the independent simulator and shares nothing with the client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SimError(Exception):
    error_code: int
    message: str
    http_status: int = 500
    details: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "message": self.message,
            "httpStatusCode": self.http_status,
            "errorCode": self.error_code,
        }
        if self.details:
            doc["details"] = self.details
        return doc


def illegal(message: str) -> SimError:
    """A malformed request (missing or ill-typed parameter): HTTP 400, code 0."""
    return SimError(0, message, 400)


def not_found_volume() -> SimError:
    return SimError(79, "Could not find the volume")


def not_found_pd() -> SimError:
    return SimError(142, "Could not find Protection Domain")


def not_found_pool() -> SimError:
    return SimError(171, "Could not find Storage Pool")


def not_found_sdc() -> SimError:
    return SimError(80, "Could not find the SDC")


def not_found_host() -> SimError:
    return SimError(91, "Could not find the host")


def not_found_vtree() -> SimError:
    # Simulator's choice: the MDM table has no VTree code that clients were seen to match.
    return SimError(3, "Not found")


def name_in_use() -> SimError:
    return SimError(99, "Volume name already in use. Please use a different name.")


def host_name_in_use() -> SimError:
    # Simulator's choice of code; the text mirrors the volume case.
    return SimError(99, "Host name already in use. Please use a different name.")


def nqn_in_use() -> SimError:
    # Simulator's choice: real gateways refuse a duplicate NQN with an unpublished code.
    return SimError(4001, "A host with this NQN already exists.")


def name_too_long() -> SimError:
    return SimError(226, "The given name exceeds the allowed length of 31 characters.")


def name_invalid() -> SimError:
    return SimError(
        227,
        "The given name contains invalid characters. Use alphanumeric and punctuation "
        "characters only. Spaces are not allowed.",
    )


def size_granularity(granularity_gb: int) -> SimError:
    return SimError(
        225,
        f"The specified volume size is illegal. Volume size must be in {granularity_gb} GB blocks",
    )


def size_shrink() -> SimError:
    return SimError(133, "Volume capacity can only be increased")


def size_too_large() -> SimError:
    return SimError(190, "The volume size too large")


def size_zero() -> SimError:
    return SimError(0, "Illegal volume size", 400)


def too_many_snapshots() -> SimError:
    return SimError(
        0,
        "Error with details",
        details=[
            {
                "rc": 182,
                "error": "TOO_MANY_SNAPS_IN_VTREE",
                "errorMessage": "There are too many snapshots in the VTree",
            }
        ],
    )


def volume_mapped() -> SimError:
    return SimError(104, "Volume is mapped")


def host_has_mappings() -> SimError:
    return SimError(180, "SDC has mapped volume(s)")


def already_mapped(legacy: bool) -> SimError:
    if legacy:
        return SimError(81, "The volume is already mapped to this SDC")
    return SimError(4037, "The volume is already mapped to this host")


def not_mapped(legacy: bool) -> SimError:
    if legacy:
        return SimError(84, "The volume is not mapped to SDC")
    return SimError(4039, "The volume is not mapped to this host")


def multiple_mappings() -> SimError:
    # Simulator's choice of code (the real one is unpublished); the text is the gateway's.
    return SimError(297, "This volume is already mapped and may not be mapped to additional SDCs.")


def no_descendants() -> SimError:
    return SimError(183, "There are no volumes to delete")


def different_vtree() -> SimError:
    return SimError(
        198,
        "To overwrite the content of a volume, the source and target volumes must be "
        "from the same V-Tree.",
    )


def overwrite_self() -> SimError:
    return SimError(330, "You cannot overwrite a volume with itself.")


def out_of_space() -> SimError:
    return SimError(191, "The capacity of the Storage Pool is too small for this operation")


def allocation_limit() -> SimError:
    return SimError(300, "Requested volume size exceeds the volume allocation limit")
