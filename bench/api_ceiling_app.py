"""The ceiling for bench_api: a bare FastAPI endpoint that does one Redis LPUSH and nothing else."""

from __future__ import annotations

import os

import redis.asyncio as aioredis
from fastapi import FastAPI, Request

app = FastAPI()
_redis = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"], max_connections=512)


@app.post("/lpush")
async def lpush(request: Request) -> dict[str, str]:
    await _redis.lpush("bench:ceiling", await request.body())
    return {"status": "enqueued"}
