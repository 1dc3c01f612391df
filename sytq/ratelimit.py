"""Per-client request rate limit shared by every API replica through Redis.

A fixed one-minute window per client: ``INCR`` + ``EXPIRE NX`` in one round trip. Simple and
cheap (one pipelined call per request); a burst of up to twice the limit across a window edge
is accepted as the price of that.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from sytq import redis_keys

_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    remaining: int
    retry_after_seconds: int


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, per_minute: int) -> None:
        self._redis = redis
        self._limit = per_minute

    @property
    def enabled(self) -> bool:
        return self._limit > 0

    async def hit(self, client: str, units: int = 1) -> RateDecision:
        """Count ``units`` (a request, or each task of a batch) for ``client`` and say whether they fit
        in the limit. Units refused are given back, so a refused batch does not use up the window."""
        if not self.enabled:
            return RateDecision(True, 0, 0)
        now = time.time()
        window = int(now // _WINDOW_SECONDS)
        key = redis_keys.rate_limit_key(client, window)
        pipe = self._redis.pipeline(transaction=False)
        pipe.incrby(key, units)
        pipe.expire(key, _WINDOW_SECONDS * 2, nx=True)
        count, _ = await pipe.execute()
        remaining = self._limit - int(count)
        if remaining >= 0:
            return RateDecision(True, remaining, 0)
        if units > 1:
            await self._redis.decrby(key, units)
        retry_after = max(1, int((window + 1) * _WINDOW_SECONDS - now + 0.999))
        return RateDecision(False, 0, retry_after)
