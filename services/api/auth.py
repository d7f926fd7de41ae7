"""Bearer tokens: who is calling, decided by ``TokenService.authenticate``.

Validated tokens are remembered per process (keyed by their hash) for
``TOKEN_CACHE_SECONDS``, so a store read is not paid per request; the cache holds
only while the store's token version (``TokenService.version``, bumped by every
revocation or other change of a token row) is the one it was filled under. That
version is read at most every ``REVOCATION_CHECK_SECONDS``, so a token revoked in
one process is refused by every other within a second. Expiry is checked on every
request. Unknown tokens are never remembered; a client sending too many of them is
answered 429 (``bad_tokens``).

The acting user (``Principal.user``) is the token's user; an agency-wide token (no
user) may name one in ``X-Hub-User``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.access import Principal
from services.api.bad_tokens import BadTokenLimiter
from services.api.context import api_of
from services.api.errors import ApiError
from services.api.threads import BlockingCalls
from services.application import USER_ID_PATTERN, TokenRefused, TokenService, hash_token
from services.settings import Settings

# Also how often a token in use is read again, and so its last use recorded
# (``TokenService`` writes it at most once a minute).
TOKEN_CACHE_SECONDS = 60.0
TOKEN_CACHE_SIZE = 10_000
# Half the promised second: a revocation committed just after one check is seen by
# the next, and the check itself takes milliseconds.
REVOCATION_CHECK_SECONDS = 0.5
USER_HEADER = "x-hub-user"

REFUSALS = {
    "unknown": "the token is not valid",
    "expired": "the token has expired",
    "revoked": "the token has been revoked",
}

bearer = HTTPBearer(auto_error=False, description="a token from hub agency add / hub token auditor")
# The scheme ``bearer`` documents, for a route that authenticates in its body rather
# than through ``Caller`` (solving the dependencies cost about 35 µs per message).
BEARER_SECURITY: list[dict[str, list[str]]] = [{bearer.scheme_name: []}]


@dataclass(frozen=True)
class _Known:
    who: Principal
    version: int  # the token version it was read under
    valid_until: float  # monotonic: then the store is asked again
    expires_at: float | None  # wall clock (epoch seconds)


class Authenticator:
    def __init__(
        self,
        tokens: TokenService,
        blocking: BlockingCalls,
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = tokens
        self._blocking = blocking
        self._clock = clock
        self._wall_clock = wall_clock
        self.bad_tokens = (
            BadTokenLimiter()
            if settings is None
            else BadTokenLimiter(
                settings.auth_bad_token_limit,
                settings.auth_bad_token_window_s,
                settings.auth_bad_token_clients,
            )
        )
        # Keyed by the token's hash, so no token is kept in memory as sent.
        self._known: dict[str, _Known] = {}
        self._version: int | None = None
        self._version_checked = -float("inf")

    async def caller_of(self, request: Request) -> Principal:
        """The caller of ``request``: 401 without a valid bearer token, 429 after too
        many bad ones from its address, 422 for a malformed ``X-Hub-User``."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthenticated", "send Authorization: Bearer <token>")
        key = hash_token(token)
        now = self._clock()
        if now - self._version_checked >= REVOCATION_CHECK_SECONDS:
            await self._check_version(now)
        known = self._known.get(key)
        if (
            known is not None
            and known.version == self._version
            and known.valid_until > now
            and (known.expires_at is None or known.expires_at > self._wall_clock())
        ):
            return _acting(request, known.who)
        peer = request.client.host if request.client else "unknown"
        wait = self.bad_tokens.retry_after(peer, now)
        if wait:
            raise ApiError(
                429,
                "too_many_requests",
                f"too many bad tokens from this client; try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        version = self._version
        try:
            holder = await self._blocking.run(self._tokens.authenticate, token)
        except TokenRefused as refused:
            self.bad_tokens.failed(peer, self._clock())
            raise ApiError(401, "unauthenticated", REFUSALS[refused.reason]) from None
        who = Principal(
            role=holder.role, subject=holder.subject, name=holder.name, user=holder.user
        )
        if version is not None:
            if len(self._known) >= TOKEN_CACHE_SIZE:
                self._known.clear()
            expires = None if holder.expires_at is None else holder.expires_at.timestamp()
            self._known[key] = _Known(who, version, now + TOKEN_CACHE_SECONDS, expires)
        return _acting(request, who)

    async def _check_version(self, now: float) -> None:
        # Marked first: requests arriving while it is read use the version known.
        self._version_checked = now
        version = await self._blocking.run(self._tokens.version)
        if version != self._version:
            self._known.clear()
            self._version = version


def _acting(request: Request, who: Principal) -> Principal:
    """``who``, acting as the user its token names, or for an agency-wide token as
    the one ``X-Hub-User`` names (if any)."""
    claimed = request.headers.get(USER_HEADER)
    if claimed is None:
        return who
    if not USER_ID_PATTERN.match(claimed):
        raise ApiError(
            422,
            "invalid_request",
            "X-Hub-User is 1-64 of A-Z, a-z, 0-9, '.', '_', '@', '-'",
            [{"path": "header.x-hub-user", "problem": "does not match the user id pattern"}],
        )
    if who.user is None:
        return replace(who, user=claimed)
    if claimed != who.user:
        raise ApiError(403, "actor_mismatch", "this token acts only for its own user")
    return who


async def _caller(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    # ``bearer`` only documents the scheme in OpenAPI; the header is read here.
    return await api_of(request).auth.caller_of(request)


Caller = Annotated[Principal, Depends(_caller)]
