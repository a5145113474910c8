"""Storage pools as use cases: create, show, update, delete, resources.

A pool is checked against the gateway and this host before anything is stored; the
stored config then carries what was discovered (``powerflex.mode``, ``powerflex.sdt``,
``volatile.powerflex.version``). Configs shown to callers never include the password.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass

from ..driver import (
    PASSWORD_KEY,
    POOL_KEYS,
    ConfigError,
    Conflict,
    InvalidRequest,
    NotFound,
    PoolDriver,
    Unavailable,
    granularity,
    parse_size,
    validate_pool_config,
)
from ..secret import Secret
from ..state import Database, NameTaken, Status, StatusChanged
from ..state import journal as jn
from ..state import store as st
from .events import Events, Lifecycle
from .journal import Journal
from .runtime import Runtimes

__all__ = ["PASSWORD_KEY", "PoolService", "PoolView"]

log = logging.getLogger("lxflex.service")

_POOL_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
DRIVER = "powerflex"
# Keys whose change needs the gateway again: the pool must still be the same pool.
_RECHECK = {
    "powerflex.gateway",
    "powerflex.gateway.verify",
    "powerflex.user.name",
    "powerflex.sdt",
}


@dataclass(frozen=True)
class PoolView:
    name: str
    driver: str
    description: str
    status: str
    config: dict[str, str]
    pending_on: tuple[str, ...] = ()  # a pending pool's members (LXD's --target step)


def _view(pool: st.Pool) -> PoolView:
    # The record's config holds no password: it is the record's own field, a Secret.
    return PoolView(
        pool.name, pool.driver, pool.description, pool.status, dict(pool.config), pool.pending_on
    )


class PoolService:
    def __init__(self, db: Database, runtimes: Runtimes) -> None:
        self.db = db
        self.runtimes = runtimes
        self.journal = Journal(db, runtimes.uuid)
        self.events = Events()  # what the use cases changed, for the API's event stream
        # Every request reads its pool. When this process is the database's only writer
        # (SQLite), the records are kept here and dropped when this service changes one;
        # with a shared database (PostgreSQL: other servers change pools) each is read.
        self._records: dict[str, st.Pool] | None = {} if db.exclusive else None

    async def record(self, name: str) -> st.Pool:
        if self._records is not None and name in self._records:
            return self._records[name]
        async with self.db.read() as conn:
            pool = await st.get_pool(conn, name)
        if pool is None:
            raise NotFound(f"storage pool {name!r} not found")
        if self._records is not None:
            self._records[name] = pool
        return pool

    def _changed(self, name: str) -> None:
        if self._records is not None:
            self._records.pop(name, None)

    async def runtime(self, pool: st.Pool) -> PoolDriver:
        if pool.status is Status.PENDING:
            raise InvalidRequest(
                f"storage pool {pool.name!r} is pending: create it without --target to finish"
            )
        if pool.password is None:
            raise ConfigError(PASSWORD_KEY, f"is not set on storage pool {pool.name!r}")
        return await self.runtimes.get(
            pool.name, dict(pool.config), pool.password, self.journal.leftovers(pool.id)
        )

    async def define(self, name: str, driver: str, member: str) -> None:
        """LXD's first step of a cluster pool (``--target member``): the pool pending on
        that member, with no config (a PowerFlex pool has no member's own keys)."""
        _check_new(name, driver)
        async with self.db.write() as conn:
            pool = await st.get_pool(conn, name, for_update=True)
            if pool is None:
                await st.create_pool(conn, name, driver, {}, pending_on=[member])
            elif pool.driver != driver:
                raise InvalidRequest("Storage pool already exists with a different driver")
            elif pool.status is not Status.PENDING:
                raise InvalidRequest("Storage pool is not in pending state")
            elif member in pool.pending_on:
                raise InvalidRequest(f'The storage pool already defined on member "{member}"')
            else:
                await st.set_pending_on(conn, pool.id, [*pool.pending_on, member])
        self._changed(name)

    async def create(
        self,
        name: str,
        driver: str,
        config: Mapping[str, str],
        description: str = "",
        *,
        password: Secret | None = None,
    ) -> PoolView:
        """Check a new pool against the gateway and this host, then store it (a pool
        pending on members, from LXD's ``--target`` step, is created for all of them).
        ``config`` holds its keys but the gateway password, which is ``password``."""
        _check_new(name, driver)
        user = {k: v for k, v in config.items() if v != ""}
        validate_pool_config(user, password, creating=True)
        async with self.db.read() as conn:
            existing = await st.get_pool(conn, name)
        if existing is not None and existing.status is not Status.PENDING:
            raise Conflict(f"storage pool {name!r} already exists")
        assert password is not None  # noqa: S101 - validated: it is required
        resolved = await self.runtimes.check(user, password)
        _check_size_step(user, resolved.version)
        stored = dict(user)
        stored["powerflex.mode"] = user.get("powerflex.mode") or resolved.mode
        if resolved.sdts and not user.get("powerflex.sdt"):
            stored["powerflex.sdt"] = ",".join(resolved.sdts)
        stored.setdefault(
            "volume.size", "8GiB" if granularity(resolved.version) > 2**30 else "1GiB"
        )
        stored["volatile.powerflex.version"] = resolved.version
        try:
            async with self.db.write() as conn:
                if existing is None:
                    await st.create_pool(
                        conn, name, DRIVER, stored, password=password, description=description
                    )
                else:
                    await st.finish_pool(
                        conn, existing.id, stored, password=password, description=description
                    )
                pool = await st.get_pool(conn, name)
        except (NameTaken, StatusChanged):
            raise Conflict(f"storage pool {name!r} already exists") from None
        finally:
            self._changed(name)
        assert pool is not None  # noqa: S101 - written in this transaction
        self.events.emit(Lifecycle("storage-pool-created", name))
        return _view(pool)

    async def get(self, name: str) -> PoolView:
        return _view(await self.record(name))

    async def all(self) -> list[PoolView]:
        async with self.db.read() as conn:
            return [_view(p) for p in await st.list_pools(conn)]

    async def update(
        self,
        name: str,
        config: Mapping[str, str],
        description: str | None = None,
        *,
        password: Secret | None = None,
    ) -> PoolView:
        """Replace the pool's config (keys absent or empty are unset).

        Keys that cannot change on a live pool are refused with the reason; a change of
        gateway, credentials or targets is checked against the gateway first, which must
        still serve the same system and pool. Without a ``password`` the pool's is kept.
        """
        pool = await self.record(name)
        if pool.status is Status.PENDING:  # LXD's words
            raise InvalidRequest(
                "Cannot update storage pool global config when not in created state"
            )
        new = {k: v for k, v in config.items() if v != "" and k != "volatile.powerflex.version"}
        secret = password or pool.password
        old = {k: v for k, v in pool.config.items() if k != "volatile.powerflex.version"}
        for key in set(old) | set(new):
            spec = POOL_KEYS.get(key)
            if old.get(key) != new.get(key) and spec is not None and not spec.live:
                raise InvalidRequest(
                    f'"{key}" cannot be changed on an existing pool: {spec.why_not_live}'
                )
        validate_pool_config(new, secret, creating=False)
        assert secret is not None  # noqa: S101 - validated: it is required
        if secret != pool.password or any(old.get(k) != new.get(k) for k in _RECHECK):
            resolved = await self.runtimes.check(new, secret)
            try:
                before = (await self.runtime(pool)).resolved
            except Unavailable:
                # The old gateway address is gone (the reason to change it): the pool key,
                # which cannot change, still names the same storage pool.
                log.warning("pool %s: old gateway unreachable; taking the new settings", name)
            else:
                if (resolved.system_id, resolved.pool_id) != (before.system_id, before.pool_id):
                    raise InvalidRequest(
                        "the new gateway settings lead to a different storage pool"
                    )
        version = pool.config.get("volatile.powerflex.version", "4")
        _check_size_step(new, version)
        new["volatile.powerflex.version"] = version
        try:
            async with self.db.write() as conn:
                await st.update_pool(
                    conn, pool.id, config=new, description=description, password=password
                )
        finally:
            self._changed(name)
        await self.runtimes.drop(name)
        self.events.emit(Lifecycle("storage-pool-updated", name))
        return await self.get(name)

    async def delete(self, name: str) -> None:
        """Delete a pool without volumes; the leftovers of failed cleanups on its array
        are removed first (and one that cannot be removed keeps the pool)."""
        pool = await self.record(name)
        reason = "unknown"
        if await self.journal.entries(pool.id):
            repairs = await self.journal.repair(pool.id, (await self.runtime(pool)).volumes)
            reason = repairs.failed[0][1] if repairs.failed else reason
        try:
            async with self.db.write() as conn:
                count = await st.count_volumes(conn, pool.id)
                if count:  # LXD answers 400 "The storage pool is currently in use"
                    raise InvalidRequest(
                        f"storage pool {name!r} is in use: it still has {count} volume(s)"
                    )
                left = await jn.count_entries(conn, pool.id)
                if left:
                    raise Conflict(
                        f"storage pool {name!r} still has {left} leftover(s) of failed "
                        f"cleanups on the array that cannot be removed now ({reason})"
                    )
                await st.delete_pool(conn, pool.id)
        finally:
            self._changed(name)
        await self.runtimes.drop(name)
        shutil.rmtree(self.runtimes.host.mounts / name, ignore_errors=True)
        self.events.emit(Lifecycle("storage-pool-deleted", name))

    async def resources(self, name: str) -> tuple[int, int]:
        """(used, total) bytes."""
        pool = await self.record(name)
        return await (await self.runtime(pool)).volumes.usage()


def _check_new(name: str, driver: str) -> None:
    if driver != DRIVER:
        raise InvalidRequest(f"unsupported storage driver {driver!r}: lxflex serves {DRIVER}")
    if not _POOL_NAME.fullmatch(name):
        raise InvalidRequest(
            f"invalid pool name {name!r}: ASCII letters, digits, '-', '_' and '.' (not "
            "first), at most 64"
        )


def _check_size_step(config: Mapping[str, str], version: str) -> None:
    size = config.get("volume.size")
    step = granularity(version)
    if size and parse_size(size) % step:
        raise ConfigError("volume.size", f"must be a multiple of {step // 2**30}GiB on this array")
