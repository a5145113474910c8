"""Errors the driver raises for callers to render (the API maps them to HTTP statuses).

    DriverError
    ├── InvalidRequest     400: a value the driver cannot honour (shrink, bad size, limit)
    ├── NotFound           404: the array lost a volume the state knows
    ├── Conflict           409: the array refuses because of other objects (limit, in use)
    ├── Unavailable        503: the gateway or the host tooling cannot do it now
    └── InsufficientSpace  507: the storage pool has not the space (retrying will not help)

Gateway and host errors are wrapped with the operation's context; the original is kept
as ``__cause__``.
"""

from __future__ import annotations


class DriverError(Exception):
    status = 500


class InvalidRequest(DriverError):
    status = 400


class NotFound(DriverError):
    status = 404


class Conflict(DriverError):
    status = 409


class Unavailable(DriverError):
    status = 503


class InsufficientSpace(DriverError):
    status = 507
