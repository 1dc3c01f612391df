"""Request guards as FastAPI dependencies: API key or Basic user + scope (401/403) and the
per-caller rate limit (429)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from api.auth import ANONYMOUS, ApiKey, Scope, basic_credentials, match_basic, match_key
from api.state import AppState, app_state

_bearer = HTTPBearer(auto_error=False, description="An API key configured in SYTQ_API_KEYS")


class _BasicSchemeDoc(HTTPBasic):
    """Documents HTTP Basic in the OpenAPI schema; the credentials are read by ``authorize``, which
    answers malformed ones the way the Go original did (FastAPI's own class would not)."""

    async def __call__(self, request: Request) -> HTTPBasicCredentials | None:  # type: ignore[override]
        return None


_basic = _BasicSchemeDoc(
    scheme_name="HTTPBasic", auto_error=False, description="A user configured in SYTQ_BASIC_AUTH_USERS"
)

# Routes of the Go original's contract answer a failed login exactly as its gin.BasicAuth did.
COMPAT_PREFIX = "/api/tasks"


def require(scope: Scope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that admits a caller holding ``scope`` and within its rate limit."""

    async def guard(
        request: Request,
        _doc_bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
        _doc_basic: HTTPBasicCredentials | None = Depends(_basic),  # noqa: B008
    ) -> ApiKey:
        return await authorize(
            app_state(request),
            request.headers.get("authorization"),
            scope,
            compat=request.url.path.startswith(COMPAT_PREFIX),
        )

    return guard


# For routes that skip dependency injection on the hot path: documents the same schemes.
BEARER_SECURITY: list[dict[str, list[str]]] = [{"HTTPBearer": []}, {"HTTPBasic": []}]


async def authorize(
    state: AppState, authorization: str | None, scope: Scope, *, compat: bool = False
) -> ApiKey:
    """The caller, checked for ``scope`` and counted against its rate limit (one request)."""
    key = authenticate(state, authorization, compat=compat)
    if not key.allows(scope):
        raise HTTPException(403, f"{key.name!r} lacks the {scope!r} scope")
    await charge(state, key, 1)
    return key


async def charge(state: AppState, key: ApiKey, units: int) -> None:
    """Count ``units`` (requests, or the tasks of a batch) against the caller's per-minute limit."""
    if not state.limiter.enabled or units <= 0:
        return
    decision = await state.limiter.hit(key.name, units)
    if not decision.allowed:
        raise HTTPException(
            429,
            f"rate limit of {state.settings.api_rate_limit_per_minute} requests/minute exceeded",
            headers={"Retry-After": str(decision.retry_after_seconds)},
        )


def _challenge(state: AppState, compat: bool) -> dict[str, str]:
    # Quoted as Go's strconv.Quote does for gin (backslash and double quote escaped).
    realm = state.settings.basic_auth_realm.replace("\\", "\\\\").replace('"', '\\"')
    basic = f'Basic realm="{realm}"'
    if compat:
        return {"WWW-Authenticate": basic}
    return {"WWW-Authenticate": f"Bearer, {basic}" if state.identities.basic_users else "Bearer"}


def authenticate(state: AppState, authorization: str | None, *, compat: bool = False) -> ApiKey:
    """The caller named by ``Authorization`` (Bearer key or Basic user), or a 401."""
    identities = state.identities
    if identities.disabled:
        return ANONYMOUS
    if authorization is not None:
        known = identities.verified.get(authorization)
        if known is not None:
            return known
    scheme, _, token = (authorization or "").strip().partition(" ")
    found: ApiKey | None = None
    if scheme.lower() == "bearer" and token.strip():
        found = match_key(identities.keys, token.strip())
    elif scheme.lower() == "basic" and identities.basic_users:
        credentials = basic_credentials(authorization or "")
        if credentials is not None:
            found = match_basic(identities.basic_users, *credentials)
    if found is not None:
        identities.remember(authorization or "", found)
        return found
    if compat:
        raise HTTPException(401, "", headers=_challenge(state, compat=True))
    if not authorization:
        message = "missing credentials: send Authorization: Bearer <key>"
        if identities.basic_users:
            message += " or Basic <user:password>"
        raise HTTPException(401, message, headers=_challenge(state, compat=False))
    raise HTTPException(401, "invalid credentials", headers=_challenge(state, compat=False))
