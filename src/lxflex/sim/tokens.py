"""The simulator's users and tokens.

A token is valid for ``lifetime`` seconds from its issue and is dropped after ``idle``
seconds without use (the 3.x gateway's 8 hours and 10 minutes by default; 4.x access
tokens live 5 minutes). 4.x logins also issue a refresh token that logout revokes
together with its access token. Tokens are random and never written to disk, so a
restarted simulator rejects old tokens, as a restarted gateway does.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from .clock import Clock


@dataclass(frozen=True)
class TokenPolicy:
    lifetime: float = 8 * 3600.0
    idle: float = 600.0


@dataclass
class _Entry:
    user: str
    issued: float
    last_used: float
    partner: str | None = None  # the refresh token of an access token, and vice versa


class TokenStore:
    def __init__(self, users: dict[str, str], policy: TokenPolicy, clock: Clock) -> None:
        self._users = users
        self.policy = policy
        self.clock = clock
        self._tokens: dict[str, _Entry] = {}
        self.logins = 0

    def check_password(self, user: str, password: str) -> bool:
        expected = self._users.get(user)
        if expected is None:
            hmac.compare_digest(password.encode(), b"-")  # same work for unknown users
            return False
        return hmac.compare_digest(password.encode(), expected.encode())

    def issue(self, user: str, *, with_refresh: bool = False) -> tuple[str, str | None]:
        self.logins += 1
        now = self.clock.monotonic()
        access = secrets.token_urlsafe(32)
        refresh = secrets.token_urlsafe(32) if with_refresh else None
        self._tokens[access] = _Entry(user, now, now, refresh)
        if refresh is not None:
            self._tokens[refresh] = _Entry(user, now, now, access)
        return access, refresh

    def validate(self, token: str) -> str | None:
        """The user a token belongs to, refreshing its idle timer; None if invalid."""
        entry = self._tokens.get(token)
        if entry is None:
            return None
        now = self.clock.monotonic()
        if now - entry.issued > self.policy.lifetime or now - entry.last_used > self.policy.idle:
            self.revoke(token)
            return None
        entry.last_used = now
        return entry.user

    def revoke(self, token: str) -> None:
        entry = self._tokens.pop(token, None)
        if entry is not None and entry.partner is not None:
            self._tokens.pop(entry.partner, None)

    def expire_all(self) -> None:
        self._tokens.clear()
