"""Provider limits shared by every worker pod through Redis: in-flight calls, requests and tokens
per minute, per provider and model. All Redis commands of the limiter live in this module.

In-flight slots are leases in a sorted set scored by expiry, so a pod killed mid-call frees its
slots when the lease runs out instead of leaking them. Minute windows are plain counters. Tokens
are reserved before a call (an estimate: the prompt plus the answer allowed) and settled with the
usage the provider reports, so concurrent calls cannot together overshoot the budget by their
unknown answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from sytq import redis_keys
from sytq.metrics import LLM_LIMITER_WAIT

# KEYS: inflight zset, rpm counter, tpm counter.
# ARGV: now_ms, lease_ms, token, max_in_flight, rpm, tpm, tokens to reserve.
# Returns 0 when granted, else a suggested wait in ms. Every check comes before any write.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local max_in_flight = tonumber(ARGV[4])
local rpm = tonumber(ARGV[5])
local tpm = tonumber(ARGV[6])
local reserve = tonumber(ARGV[7])
local window_left = 60000 - (now % 60000)
if tpm > 0 then
  local used = tonumber(redis.call('GET', KEYS[3]) or '0')
  -- a call larger than the whole budget still goes alone into an empty minute
  if used >= tpm or (used > 0 and used + reserve > tpm) then return window_left end
end
if rpm > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= rpm then return window_left end
if max_in_flight > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= max_in_flight then return 50 end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
if rpm > 0 then
  redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], 120000)
end
if tpm > 0 and reserve > 0 then
  redis.call('INCRBY', KEYS[3], reserve)
  redis.call('PEXPIRE', KEYS[3], 120000)
end
return 0
"""


class Reservation:
    """A granted slot; the caller sets ``used_tokens`` from the provider's usage (left unset, as
    for a failed call, the reserved tokens are given back)."""

    __slots__ = ("reserved_tokens", "used_tokens")

    def __init__(self, reserved_tokens: int) -> None:
        self.reserved_tokens = reserved_tokens
        self.used_tokens: int | None = None


class SharedLimiter:
    """Acquire with ``async with limiter.slot(model): ...``; a limit of 0 means unlimited."""

    def __init__(
        self,
        redis: aioredis.Redis,
        provider: str,
        *,
        max_in_flight: int = 0,
        requests_per_minute: int = 0,
        tokens_per_minute: int = 0,
        lease_seconds: float = 900.0,
    ) -> None:
        self._redis = redis
        self._provider = provider
        self.max_in_flight = max_in_flight
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._lease_ms = int(lease_seconds * 1000)
        self._acquire: Any = redis.register_script(_ACQUIRE)

    @property
    def enabled(self) -> bool:
        return bool(self.max_in_flight or self.requests_per_minute or self.tokens_per_minute)

    def _keys(self, model: str, now_ms: int) -> list[str]:
        minute = now_ms // 60000
        return [
            redis_keys.llm_in_flight_key(self._provider, model),
            redis_keys.llm_requests_key(self._provider, model, minute),
            redis_keys.llm_tokens_key(self._provider, model, minute),
        ]

    async def in_flight(self, model: str) -> int:
        now_ms = int(time.time() * 1000)
        key = self._keys(model, now_ms)[0]
        await self._redis.zremrangebyscore(key, "-inf", now_ms)
        return int(await self._redis.zcard(key))

    @contextlib.asynccontextmanager
    async def slot(self, model: str, tokens: int = 0) -> AsyncIterator[Reservation]:
        """Wait for an in-flight slot, a request and ``tokens`` (an estimate) of this minute's budget."""
        reserve = tokens if self.tokens_per_minute else 0
        reservation = Reservation(reserve)
        if not self.enabled:
            yield reservation
            return
        token = uuid.uuid4().hex
        started = time.monotonic()
        while True:
            now_ms = int(time.time() * 1000)
            keys = self._keys(model, now_ms)
            args = [
                now_ms,
                self._lease_ms,
                token,
                self.max_in_flight,
                self.requests_per_minute,
                self.tokens_per_minute,
                reserve,
            ]
            wait_ms = int(await self._acquire(keys=keys, args=args))
            if wait_ms == 0:
                break
            # Jitter spreads the pods' retries so they do not poll in lockstep.
            await asyncio.sleep(min(wait_ms, 1000) / 1000 * random.uniform(0.5, 1.0))
        LLM_LIMITER_WAIT.labels(model=model).observe(time.monotonic() - started)
        try:
            yield reservation
        finally:
            await self._release(keys, token, reservation)

    async def _release(self, keys: list[str], token: str, reservation: Reservation) -> None:
        """Free the in-flight slot and settle the tokens (in the minute they were reserved in)."""
        settle = (reservation.used_tokens or 0) - reservation.reserved_tokens
        if not self.max_in_flight and not settle:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            if self.max_in_flight:
                pipe.zrem(keys[0], token)
            if settle:
                pipe.incrby(keys[2], settle)
                pipe.expire(keys[2], 120)
            await pipe.execute()

    async def tokens_used(self, model: str) -> int:
        """This minute's tokens: reserved by calls in flight plus used by finished ones."""
        key = self._keys(model, int(time.time() * 1000))[2]
        return int(await self._redis.get(key) or 0)
