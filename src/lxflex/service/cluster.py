"""Cluster membership: several lxflexd servers sharing one PostgreSQL state (and so its
pools, volumes and trust store) and one array.

A server joins as a member with a name and the address its peers reach it at; while it
runs, it writes a heartbeat every half of ``offline_threshold`` (LXD's default, 20 s).
A member whose last heartbeat is older than the threshold (by the database's clock) is
Offline, with a message that says since when, as LXD words it. Removing a member takes
it out of the list; a member that is still running is refused unless forced.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import platform
import re
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..driver import Conflict, InvalidRequest, NotFound
from ..state import NOTICE_LIMIT, Database
from ..state import cluster as sc
from .trust import fingerprint

__all__ = [
    "DEFAULT_OFFLINE_THRESHOLD",
    "ClusterService",
    "ClusterSettings",
    "MemberView",
    "check_member_name",
]

log = logging.getLogger("lxflex.service")

DEFAULT_OFFLINE_THRESHOLD = 20.0  # seconds, as LXD's cluster.offline_threshold
EVENTS = "lxflex_events"  # the notice channel of the members' events
# A notice that is one part of an event larger than a notice: part:<id>:<i>:<count>:<text>
_PART = "part:"
_MAX_PARTS = 64  # an event of up to about 500 KB is relayed; a larger one is not
_PENDING = 16  # events whose parts are being heard at once (the rest of one may be lost)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")


def check_member_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"invalid cluster member name {name!r}: letters, digits and dashes, "
            "at most 63, not starting with a dash"
        )


@dataclass(frozen=True)
class ClusterSettings:
    """This server as a cluster member: its name and the HOST:PORT its peers reach."""

    name: str
    address: str
    offline_threshold: float = DEFAULT_OFFLINE_THRESHOLD

    def __post_init__(self) -> None:
        check_member_name(self.name)
        if self.offline_threshold <= 10:
            raise InvalidRequest("the offline threshold must be greater than 10 seconds")


@dataclass(frozen=True)
class MemberView:
    name: str
    address: str
    architecture: str
    online: bool
    message: str
    certificate: str
    server_uuid: str


def _pieces(text: str, budget: int) -> list[str]:
    """``text`` cut into pieces of at most ``budget`` bytes (UTF-8), whole characters."""
    data, pieces, start = text.encode(), [], 0
    while start < len(data):
        end = min(start + budget, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # inside a character
            end -= 1
        pieces.append(data[start:end].decode())
        start = end
    return pieces


def _fingerprint(pem: str) -> str:
    try:
        return fingerprint(ssl.PEM_cert_to_DER_cert(pem))
    except ValueError:  # not a certificate: matches nothing
        return ""


def _message(member: sc.Member, threshold: float) -> tuple[bool, str]:
    silent = member.silent_for
    if silent is not None and silent < threshold:
        return True, "Fully operational"
    if member.heartbeat_at is None or silent is None:
        return False, "No heartbeat yet"
    when = member.heartbeat_at.astimezone(datetime.UTC)
    return False, f"No heartbeat for {int(silent)}s ({when:%Y-%m-%d %H:%M:%S} UTC)"


class ClusterService:
    """This server's membership (none when ``settings`` is None) and the members'."""

    def __init__(self, db: Database, server_uuid: str, settings: ClusterSettings | None) -> None:
        self.db, self.server_uuid, self.settings = db, server_uuid, settings
        self.member_still = True  # False once a heartbeat finds this member removed

    @property
    def clustered(self) -> bool:
        return self.settings is not None

    @property
    def name(self) -> str | None:
        return self.settings.name if self.settings else None

    def _threshold(self) -> float:
        return self.settings.offline_threshold if self.settings else DEFAULT_OFFLINE_THRESHOLD

    async def join(self, certificate: str) -> None:
        """Become (or stay) the member of these settings, with this server certificate."""
        if self.settings is None:
            return
        if self.db.dialect != "postgresql":
            raise InvalidRequest(
                "a cluster shares one PostgreSQL database: start every member with "
                "--db postgresql://..."
            )
        try:
            async with self.db.write() as conn:
                await sc.join(
                    conn,
                    self.server_uuid,
                    self.settings.name,
                    self.settings.address,
                    certificate,
                    platform.machine(),
                )
        except sc.MemberTaken as exc:
            raise Conflict(str(exc)) from None
        log.info("cluster member %s at %s", self.settings.name, self.settings.address)

    async def resume(self, offline_threshold: float) -> ClusterSettings | None:
        """For a server started without member settings: those it has as a member (its
        name and address, from the shared state), which it then serves as; None for a
        standalone server. A server that is no member must not serve a cluster's
        database (it would take the members' work under way for its own leftovers)."""
        if self.settings is not None or self.db.dialect != "postgresql":
            return self.settings
        members = await self.members()
        mine = next((m for m in members if m.server_uuid == self.server_uuid), None)
        if mine is not None:
            self.settings = ClusterSettings(mine.name, mine.address, offline_threshold)
            return self.settings
        if members:
            raise InvalidRequest(
                f"this database is a cluster's (members {', '.join(m.name for m in members)}) "
                "and this server is none of them: start it with --cluster-name and "
                "--cluster-address to join"
            )
        return None

    async def check_new_member(self, name: str) -> None:
        """``name`` may be given to a server that is to join (a join token)."""
        if self.settings is None:
            raise InvalidRequest("This server is not clustered")
        check_member_name(name)
        if any(m.name == name for m in await self.members()):
            raise Conflict(f"The cluster already has a member with name: {name}")

    async def certificate(self, cert: str, key: str) -> tuple[str, str]:
        """The cluster certificate and its key (PEM), which every member serves: the one
        a member offered first, ``cert`` and ``key`` if none has."""
        async with self.db.write() as conn:
            return await sc.offer_certificate(conn, cert, key)

    async def database_url(self) -> str:
        """The shared database's URL, with its password, for a server joining by token."""
        return await self.db.url_for_members()

    async def beat(self) -> bool:
        """One heartbeat; False when this server is no longer a member."""
        async with self.db.write() as conn:
            return await sc.heartbeat(conn, self.server_uuid)

    async def heartbeats(self) -> None:
        """Beat every half threshold until cancelled; returns, saying so, when this
        server was removed (fenced: whatever it does now, it must stop)."""
        while self.settings is not None:
            try:
                if not await self.beat():
                    self.member_still = False
                    log.error(
                        "this server is no longer cluster member %s (it was removed); stopping",
                        self.settings.name,
                    )
                    return
            except Exception as exc:  # the database is away: peers will see us Offline
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(self._threshold() / 2)

    async def members(self) -> list[MemberView]:
        async with self.db.read() as conn:
            found = await sc.list_members(conn)
        threshold = self._threshold()
        return [
            MemberView(
                m.name,
                m.address,
                m.architecture,
                *_message(m, threshold),
                m.certificate,
                m.server_uuid,
            )
            for m in found
        ]

    async def names(self) -> dict[str, str]:
        """The members' names by server UUID (none for a standalone server)."""
        if self.settings is None:
            return {}
        return {m.server_uuid: m.name for m in await self.members()}

    async def of_server(self, server_uuid: str) -> MemberView | None:
        """The member that server ``server_uuid`` is, if it is one."""
        return next((m for m in await self.members() if m.server_uuid == server_uuid), None)

    async def member(self, name: str) -> MemberView:
        for member in await self.members():
            if member.name == name:
                return member
        raise NotFound("Cluster member not found")

    async def tell(self, payload: str) -> None:
        """Say ``payload`` (an event) to every member, this one included: in parts when
        it is larger than a notice (:meth:`heard` puts them together); ValueError when it
        would take more than 64 notices."""
        if len(payload.encode()) <= NOTICE_LIMIT and not payload.startswith(_PART):
            await self.db.notify(EVENTS, payload)
            return
        pieces = _pieces(payload, NOTICE_LIMIT - 64)  # room for the part's header
        if len(pieces) > _MAX_PARTS:
            raise ValueError(f"more than {_MAX_PARTS} notices of {NOTICE_LIMIT} bytes")
        key = uuid.uuid4().hex
        for index, piece in enumerate(pieces):
            await self.db.notify(EVENTS, f"{_PART}{key}:{index}:{len(pieces)}:{piece}")

    async def heard(self) -> AsyncIterator[str]:
        """What members say (:meth:`tell`), each whole, for as long as the caller
        listens."""
        pending: dict[str, list[str | None]] = {}
        async for notice in self.db.notices(EVENTS):
            if not notice.startswith(_PART):
                yield notice
                continue
            try:
                key, index, count, piece = notice.removeprefix(_PART).split(":", 3)
                at, total = int(index), int(count)
            except ValueError:
                continue  # no part of ours
            parts = pending.setdefault(key, [None] * total)
            if not 0 <= at < total <= _MAX_PARTS or len(parts) != total:
                continue
            parts[at] = piece
            if all(p is not None for p in parts):
                del pending[key]
                yield "".join(p or "" for p in parts)
            while len(pending) > _PENDING:  # the oldest, whose rest never came
                del pending[next(iter(pending))]

    async def member_with_certificate(self, fp: str) -> MemberView | None:
        """The member whose server certificate has fingerprint ``fp`` (a peer calling)."""
        if self.settings is None:
            return None
        for member in await self.members():
            if member.certificate and _fingerprint(member.certificate) == fp:
                return member
        return None

    async def removable(self, name: str, *, force: bool = False) -> MemberView:
        """The member ``name``, if it may be removed: another member (a member cannot
        fence itself), and an Online one only with ``force`` (it would go on serving)."""
        member = await self.member(name)
        if name == self.name:
            raise InvalidRequest(
                f"cluster member {name!r} cannot remove itself: remove it through another member"
            )
        if member.online and not force:
            raise InvalidRequest(
                f"cluster member {name!r} is online: stop its lxflexd first, or remove it "
                "with --force"
            )
        return member

    async def leave(self, name: str) -> None:
        """The member is one no more (see :meth:`Storage.remove_member`)."""
        async with self.db.write() as conn:
            await sc.leave(conn, name)
        log.warning("cluster member %s removed", name)
