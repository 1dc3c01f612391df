"""Small helpers shared by the API tests."""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from sytq.queue import Inspector, TaskInfo


def key_entry(name: str, plaintext: str, scopes: str) -> str:
    """One SYTQ_API_KEYS entry for a plaintext key."""
    return f"{name}:{hashlib.sha256(plaintext.encode()).hexdigest()}:{scopes}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def queued(redis: aioredis.Redis, task_id: str) -> TaskInfo:
    return await Inspector(redis).find_task(task_id)
