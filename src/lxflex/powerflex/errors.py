"""The error tree of the PowerFlex gateway client.

Every exception the client raises derives from :class:`PowerFlexError`::

    PowerFlexError
    ├── TransportError              the gateway could not be reached or did not answer
    │   └── GatewayTimeoutError     no answer within the timeout
    ├── ProtocolError               the gateway answered something we cannot parse
    ├── AuthenticationError         login refused (bad credentials, missing role)
    └── GatewayError                the gateway answered with an error document
        ├── NotFoundError           79 volume, 142 protection domain, 171 storage pool,
        │   │                       80 SDC, 91 host, 3 generic
        │   ├── VolumeNotFoundError
        │   ├── ProtectionDomainNotFoundError
        │   ├── StoragePoolNotFoundError
        │   └── HostNotFoundError
        ├── NameInUseError          99
        ├── InvalidNameError        227 (bad characters)
        │   └── NameTooLongError    226
        ├── InvalidSizeError        225 (granularity), 133 (shrink), 190 (too large)
        ├── AlreadyMappedError      81 (3.x) / 4037 (4.x)
        ├── NotMappedError          84 (3.x) / 4039 (4.x)
        ├── VolumeMappedError       104 (remove while mapped), 180 (host has mappings)
        ├── TooManySnapshotsError   182 (also found in ``details[].rc``)
        ├── CapacityError           191, 300, 337 (the storage pool is out of space)
        └── DifferentVTreeError     198 (overwriteVolumeContent across VTrees)

Gateway errors keep their fields (``http_status``, ``error_code``, ``message``,
``details``) so callers branch on codes, not on text. :func:`error_from_response` picks the
subclass from the code, looking into ``details`` for multi-object actions such as
snapshotVolumes. Exception texts never contain credentials or tokens: the client never
passes them in, and request bodies are not quoted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

__all__ = [
    "AlreadyMappedError",
    "AuthenticationError",
    "CapacityError",
    "DifferentVTreeError",
    "GatewayError",
    "GatewayTimeoutError",
    "HostNotFoundError",
    "InvalidNameError",
    "InvalidSizeError",
    "NameInUseError",
    "NameTooLongError",
    "NotFoundError",
    "NotMappedError",
    "PowerFlexError",
    "ProtectionDomainNotFoundError",
    "ProtocolError",
    "StoragePoolNotFoundError",
    "TooManySnapshotsError",
    "TransportError",
    "VolumeMappedError",
    "VolumeNotFoundError",
    "error_from_response",
]


class PowerFlexError(Exception):
    """Base of every error raised by :mod:`lxflex.powerflex`."""


class TransportError(PowerFlexError):
    """The request did not get an HTTP answer (refused, reset, TLS failure, DNS)."""

    def __init__(self, method: str, path: str, reason: str) -> None:
        self.method = method
        self.path = path
        self.reason = reason
        super().__init__(f"{method} {path}: gateway unreachable: {reason}")


class GatewayTimeoutError(TransportError):
    """The gateway did not answer within the configured timeout."""


class ProtocolError(PowerFlexError):
    """The gateway answered, but not in a shape this client understands."""

    def __init__(self, method: str, path: str, reason: str) -> None:
        self.method = method
        self.path = path
        self.reason = reason
        super().__init__(f"{method} {path}: unexpected gateway answer: {reason}")


class AuthenticationError(PowerFlexError):
    """The gateway refused the credentials (HTTP 401/403 at login)."""

    def __init__(self, http_status: int, reason: str = "invalid user name or password") -> None:
        self.http_status = http_status
        self.reason = reason
        super().__init__(f"gateway login failed (HTTP {http_status}): {reason}")


class GatewayError(PowerFlexError):
    """An error document returned by the gateway.

    Attributes:
        http_status: the HTTP status of the answer (usually 500 for MDM errors).
        error_code: PowerFlex's numeric ``errorCode`` (the ``details[].rc`` of a
            multi-object action when the envelope code is 0).
        message: the gateway's message.
        details: the ``details`` list of a multi-object action, as sent.
        method, path: the request that failed (no body, no headers).
    """

    codes: ClassVar[frozenset[int]] = frozenset()

    def __init__(
        self,
        *,
        http_status: int,
        error_code: int,
        message: str,
        details: Sequence[Mapping[str, Any]] = (),
        method: str = "",
        path: str = "",
    ) -> None:
        self.http_status = http_status
        self.error_code = error_code
        self.message = message
        self.details = list(details)
        self.method = method
        self.path = path
        where = f"{method} {path}: " if method else ""
        super().__init__(f"{where}{message} (errorCode {error_code}, HTTP {http_status})")


class NotFoundError(GatewayError):
    """The addressed object does not exist."""

    codes = frozenset({3})


class VolumeNotFoundError(NotFoundError):
    codes = frozenset({79})


class ProtectionDomainNotFoundError(NotFoundError):
    codes = frozenset({142})


class StoragePoolNotFoundError(NotFoundError):
    codes = frozenset({171})


class HostNotFoundError(NotFoundError):
    """An SDC or NVMe host that does not exist."""

    codes = frozenset({80, 91})


class NameInUseError(GatewayError):
    codes = frozenset({99})


class InvalidNameError(GatewayError):
    codes = frozenset({227})


class NameTooLongError(InvalidNameError):
    codes = frozenset({226})


class InvalidSizeError(GatewayError):
    """The size is not a multiple of the granularity, shrinks the volume, or is too big."""

    codes = frozenset({133, 190, 225})


class AlreadyMappedError(GatewayError):
    codes = frozenset({81, 4037})


class NotMappedError(GatewayError):
    codes = frozenset({84, 4039})


class VolumeMappedError(GatewayError):
    """A mapped volume cannot be removed; a host with mappings cannot be removed."""

    codes = frozenset({104, 180})


class TooManySnapshotsError(GatewayError):
    codes = frozenset({182})


class DifferentVTreeError(GatewayError):
    codes = frozenset({198})


class CapacityError(GatewayError):
    """The storage pool has not the space (or reached its critical capacity)."""

    codes = frozenset({191, 300, 337})


_BY_CODE: dict[int, type[GatewayError]] = {
    code: cls
    for cls in (
        NotFoundError,
        VolumeNotFoundError,
        ProtectionDomainNotFoundError,
        StoragePoolNotFoundError,
        HostNotFoundError,
        NameInUseError,
        InvalidNameError,
        NameTooLongError,
        InvalidSizeError,
        AlreadyMappedError,
        NotMappedError,
        VolumeMappedError,
        TooManySnapshotsError,
        DifferentVTreeError,
        CapacityError,
    )
    for code in cls.codes
}


def _as_int(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return 0
    return 0


def error_from_response(
    http_status: int, body: object, *, method: str = "", path: str = ""
) -> GatewayError:
    """Build the typed error for an error answer.

    ``body`` is the decoded JSON document, or anything else for a non-JSON answer. The
    envelope's ``errorCode`` decides the class; when it is 0 and ``details`` carry an
    ``rc`` (snapshotVolumes), the first detail's code decides and its message is used.
    """
    doc: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    code = _as_int(doc.get("errorCode"))
    message = doc.get("message")
    raw_details = doc.get("details")
    details = (
        [d for d in raw_details if isinstance(d, Mapping)] if isinstance(raw_details, list) else []
    )
    if code == 0 and details:
        detail = details[0]
        code = _as_int(detail.get("rc"))
        message = detail.get("errorMessage") or detail.get("error") or message
    if not isinstance(message, str) or not message:
        message = f"HTTP {http_status}"
    cls = _BY_CODE.get(code, GatewayError)
    return cls(
        http_status=http_status,
        error_code=code,
        message=message.strip(),
        details=details,
        method=method,
        path=path,
    )
