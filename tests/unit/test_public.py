"""The public face of each package, pinned: a name added to or dropped from an
``__all__`` is a decision, so it fails here until this list says so (as httpx pins its
own)."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "powerflex": [
        "AiohttpTransport",
        "AlreadyMappedError",
        "AuthenticationError",
        "CapacityError",
        "DEFAULT_CONNECTIONS",
        "DifferentVTreeError",
        "Gateway",
        "GatewayError",
        "GatewayTimeoutError",
        "Generation",
        "Host",
        "HostNotFoundError",
        "HostType",
        "HttpRequest",
        "HttpResponse",
        "InvalidNameError",
        "InvalidSizeError",
        "MappedHost",
        "NameInUseError",
        "NameTooLongError",
        "NotFoundError",
        "NotMappedError",
        "PoolStatistics",
        "PowerFlexClient",
        "PowerFlexError",
        "ProtectionDomain",
        "ProtectionDomainNotFoundError",
        "ProtocolError",
        "RemoveMode",
        "RetryPolicy",
        "Sdt",
        "SdtIp",
        "SnapshotDef",
        "SnapshotResult",
        "StoragePool",
        "StoragePoolNotFoundError",
        "System",
        "Timeouts",
        "TlsPolicy",
        "TooManySnapshotsError",
        "Transport",
        "TransportError",
        "Volume",
        "VolumeMappedError",
        "VolumeNotFoundError",
        "VolumeType",
        "parse_gateway",
        "version_tuple",
    ],
    "service": [
        "CheckReport",
        "HostSettings",
        "InstanceService",
        "PASSWORD_KEY",
        "PoolService",
        "PoolView",
        "Runtimes",
        "SnapshotRecord",
        "Storage",
        "TrustService",
        "VolumeService",
        "VolumeView",
    ],
    "state": [
        "CREATE_DONE",
        "Conn",
        "DELETE_BEGIN",
        "DELETE_REFUSED",
        "Database",
        "DatabaseBusy",
        "NameTaken",
        "Pool",
        "RESTORE_BEGIN",
        "RESTORE_DONE",
        "Snapshot",
        "Status",
        "StatusChanged",
        "Volume",
        "normalize_url",
    ],
    "sim": [
        "Clock",
        "DEFAULT_ADMIN_PASSWORD",
        "ManualClock",
        "SimConfig",
        "Simulator",
        "SystemClock",
    ],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_pinned(package: str) -> None:
    module = importlib.import_module(f"lxflex.{package}")
    assert sorted(module.__all__) == PUBLIC[package]
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []
