"""A Redis lease lock: at most one holder at a time, lost by a holder that stops renewing it."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

# Take the lease when free, renew it when ours; 1 when held by us afterwards.
_ACQUIRE = """
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return 1 end
if redis.call("GET", KEYS[1]) == ARGV[1] then redis.call("PEXPIRE", KEYS[1], ARGV[2]) return 1 end
return 0
"""
_RELEASE = """
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
"""


class LeaseLock:
    def __init__(self, redis: aioredis.Redis, key: str, ttl_seconds: float) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self.token = uuid.uuid4().hex

    async def acquire(self) -> bool:
        """Take or renew the lease for ``ttl_seconds``; False while another holder has it."""
        held = await self._redis.eval(_ACQUIRE, 1, self._key, self.token, str(self._ttl_ms))  # type: ignore[misc]
        return bool(held)

    async def release(self) -> None:
        """Give the lease up (only if still ours), so another holder need not wait for it to run out."""
        await self._redis.eval(_RELEASE, 1, self._key, self.token)  # type: ignore[misc]
