"""Resolving a pool's config against the gateway and this host.

:func:`resolve` checks, in order: the credentials (by reading the API version), the
protection domain and the storage pool, zero padding (PowerFlex would otherwise hand out
stale data in new thin volumes), the mode's prerequisites on this host, and, for
NVMe/TCP, the target addresses. Nothing is changed anywhere; the caller persists the
pool only when this returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..host.discovery import ModeUnavailable, check_mode, discover_mode
from ..powerflex import (
    DEFAULT_CONNECTIONS,
    AuthenticationError,
    NotFoundError,
    PowerFlexClient,
    PowerFlexError,
    RetryPolicy,
    TlsPolicy,
    TransportError,
    version_tuple,
)
from ..secret import Secret
from .config import MODE_NVME, MODE_SDC, PASSWORD_KEY, ConfigError, bool_value
from .errors import Unavailable

__all__ = ["ResolvedPool", "client_for", "resolve"]


@dataclass(frozen=True)
class ResolvedPool:
    pool_id: str
    pool_name: str
    pd_id: str
    system_id: str
    system_nqn: str | None
    version: str
    mode: str
    sdts: tuple[str, ...]


def client_for(
    config: dict[str, str], password: Secret, retry: RetryPolicy | None = None
) -> PowerFlexClient:
    """A gateway client for a pool's config and its password."""
    return PowerFlexClient(
        config["powerflex.gateway"],
        config.get("powerflex.user.name") or "admin",
        password,
        tls=TlsPolicy(verify=bool_value(config.get("powerflex.gateway.verify"), True)),
        retry=retry,
        connections=int(config.get("powerflex.gateway.connections") or DEFAULT_CONNECTIONS),
    )


def _is_nvme(mode: str) -> bool:
    return mode in (MODE_NVME, "nvme")


async def resolve(client: PowerFlexClient, config: dict[str, str], host_root: Path) -> ResolvedPool:
    """Check the pool config against the gateway and this host; raise ConfigError naming
    the key at fault, or Unavailable when the gateway cannot be reached."""
    try:
        return await _resolve(client, config, host_root)
    except AuthenticationError:
        raise ConfigError(PASSWORD_KEY, "the gateway refused the user name or password") from None
    except TransportError as exc:
        raise Unavailable(f"cannot reach the PowerFlex gateway: {exc.reason}") from exc


async def _resolve(
    client: PowerFlexClient, config: dict[str, str], host_root: Path
) -> ResolvedPool:
    version = await client.api_version()
    domain = config.get("powerflex.domain") or ""
    pool_key = config["powerflex.pool"]
    try:
        if domain:
            try:
                pd = await client.protection_domain_by_name(domain)
            except NotFoundError:
                raise ConfigError(
                    "powerflex.domain", f"no protection domain named {domain!r}"
                ) from None
            pool = await client.storage_pool_by_name(pool_key, pd.id)
        else:
            pool = await client.storage_pool(pool_key)
    except NotFoundError:
        where = f" in protection domain {domain!r}" if domain else ""
        raise ConfigError("powerflex.pool", f"no storage pool {pool_key!r}{where}") from None
    if not pool.zero_padding_enabled:
        raise ConfigError(
            "powerflex.pool",
            f"storage pool {pool.name or pool.id} has zero padding disabled; enable it, "
            "or new volumes could expose data of deleted ones",
        )
    system = await client.system()
    mode = config.get("powerflex.mode") or ""
    try:
        if mode:
            check_mode(mode, host_root)
        else:
            mode = discover_mode(host_root)
    except ModeUnavailable as exc:
        raise ConfigError("powerflex.mode", str(exc)) from None
    sdts: tuple[str, ...] = ()
    if _is_nvme(mode):
        if version_tuple(version)[0] < 4:
            raise ConfigError(
                "powerflex.mode", f"NVMe/TCP needs PowerFlex 4.0 or later (API {version})"
            )
        given = config.get("powerflex.sdt") or ""
        if given:
            sdts = tuple(a.strip() for a in given.split(","))
        else:
            try:
                found = await client.sdts(pool.protection_domain_id)
            except PowerFlexError as exc:
                raise ConfigError(
                    "powerflex.sdt", f"cannot list the domain's SDTs: {exc}"
                ) from None
            sdts = tuple(ip for sdt in found for ip in sdt.host_ips)
            if not sdts:
                raise ConfigError(
                    "powerflex.sdt",
                    "the protection domain has no SDT with a host-facing address; set one",
                )
    elif mode == MODE_SDC and config.get("powerflex.sdt"):
        raise ConfigError("powerflex.sdt", "applies to the nvme/tcp mode only")
    return ResolvedPool(
        pool.id,
        pool.name or pool.id,
        pool.protection_domain_id,
        system.id,
        system.system_nqn,
        version,
        mode,
        sdts,
    )
