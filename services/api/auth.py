"""Bearer tokens: who is calling, decided by ``TokenService.authenticate``.

Validated tokens are remembered for ``TOKEN_CACHE_SECONDS`` per process (README:
"a store read is not paid per request"); unknown tokens are never remembered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.access import Principal
from services.api.context import api_of
from services.api.errors import ApiError
from services.api.threads import BlockingCalls
from services.application import TokenService, hash_token

TOKEN_CACHE_SECONDS = 5.0
TOKEN_CACHE_SIZE = 10_000

bearer = HTTPBearer(auto_error=False, description="a token from hub agency add / hub token auditor")
# The scheme ``bearer`` documents, for a route that authenticates in its body rather
# than through ``Caller`` (solving the dependencies cost about 35 µs per message).
BEARER_SECURITY: list[dict[str, list[str]]] = [{bearer.scheme_name: []}]


class Authenticator:
    def __init__(
        self,
        tokens: TokenService,
        blocking: BlockingCalls,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens = tokens
        self._blocking = blocking
        self._clock = clock
        # Keyed by the token's hash, so no token is kept in memory as sent.
        self._known: dict[str, tuple[float, Principal]] = {}  # -> (valid until, who)

    async def caller_of(self, request: Request) -> Principal:
        """The caller of ``request``: 401 without a valid bearer token."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthenticated", "send Authorization: Bearer <token>")
        key = hash_token(token)
        now = self._clock()
        cached = self._known.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._blocking.run(self._tokens.authenticate, token)
        if found is None:
            raise ApiError(401, "unauthenticated", "the token is not valid")
        who = Principal(role=found["role"], subject=found["subject"], name=found["name"])
        if len(self._known) >= TOKEN_CACHE_SIZE:
            self._known.clear()
        self._known[key] = (now + TOKEN_CACHE_SECONDS, who)
        return who


async def _caller(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    # ``bearer`` only documents the scheme in OpenAPI; the header is read here.
    return await api_of(request).auth.caller_of(request)


Caller = Annotated[Principal, Depends(_caller)]
