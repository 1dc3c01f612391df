"""Request guards as FastAPI dependencies: API key + scope (401/403) and per-key rate limit (429)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import ANONYMOUS, ApiKey, Scope, match_key
from api.state import AppState, app_state

_bearer = HTTPBearer(auto_error=False, description="An API key configured in SYTQ_API_KEYS")


def require(scope: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that admits a caller holding ``scope`` and within its rate limit."""

    async def guard(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> ApiKey:
        return await authorize(app_state(request), credentials.credentials if credentials else None, scope)

    return guard


# For routes that skip dependency injection on the hot path: documents the same scheme.
BEARER_SECURITY: list[dict[str, list[str]]] = [{"HTTPBearer": []}]


def bearer_token(request: Request) -> str | None:
    """The key from ``Authorization: Bearer <key>``, or None."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def authorize(state: AppState, token: str | None, scope: Scope) -> ApiKey:
    """The caller's key, checked for ``scope`` and counted against its rate limit."""
    key = _authenticate(state, token)
    if not key.allows(scope):
        raise HTTPException(403, f"API key {key.name!r} lacks the {scope!r} scope")
    if state.limiter.enabled:
        decision = await state.limiter.hit(key.name)
        if not decision.allowed:
            raise HTTPException(
                429,
                f"rate limit of {state.settings.api_rate_limit_per_minute} requests/minute exceeded",
                headers={"Retry-After": str(decision.retry_after_seconds)},
            )
    return key


def _authenticate(state: AppState, token: str | None) -> ApiKey:
    if not state.keys:
        return ANONYMOUS
    if not token:
        raise HTTPException(
            401, "missing API key: send Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"}
        )
    key = match_key(state.keys, token)
    if key is None:
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return key
