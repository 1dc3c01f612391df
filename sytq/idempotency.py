"""Idempotent submits: one ``Idempotency-Key`` maps to one task id.

The task id is derived from the key (HMAC-SHA256 under a server secret over client + key,
shaped as a UUID), so two racing submits with the same key collide on the queue's task id and
can never enqueue twice, while nobody without the secret can predict (and squat on) another
client's id. Redis remembers a
fingerprint of the first request body so that a key reused for a *different* request is
refused instead of silently answering with an unrelated task.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

from sytq import redis_keys

MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(ValueError):
    """The key was already used for a request with a different body."""


def task_id_for(secret: bytes, client: str, key: str) -> str:
    """The task id of ``key`` sent by ``client``: the same client and key give the same id; another
    client's identical key gives another id."""
    digest = hmac.new(secret, f"{client}\x00{key}".encode(), hashlib.sha256).digest()
    # Shaped as a random (v4) UUID: indistinguishable from the ids of submits without a key.
    return str(uuid.UUID(bytes=digest[:16], version=4))


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Claim:
    task_id: str
    fresh: bool  # this request made the claim (only then may a failed submit release it)


class IdempotencyStore:
    def __init__(self, redis: aioredis.Redis, ttl_seconds: int, secret: bytes) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._secret = secret

    async def claim(self, client: str, key: str, body_fingerprint: str) -> Claim:
        """The task id for this key; raises IdempotencyKeyReused when the body differs."""
        task_id = task_id_for(self._secret, client, key)
        redis_key = redis_keys.idempotency_key(task_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(redis_key, body_fingerprint, nx=True, ex=self._ttl)
        pipe.get(redis_key)
        created, stored = await pipe.execute()
        if stored is not None and stored.decode() != body_fingerprint:
            raise IdempotencyKeyReused("Idempotency-Key was already used with a different request body")
        return Claim(task_id=task_id, fresh=bool(created))

    async def release(self, client: str, key: str) -> None:
        """Forget a claim whose submit failed, so a retry with the same key can succeed."""
        await self._redis.delete(redis_keys.idempotency_key(task_id_for(self._secret, client, key)))
