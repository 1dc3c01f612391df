"""Poison JSON at the API: non-finite numbers, deep nesting and oversized free-form values are 422."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from sytq.queue import Inspector
from sytq.strict_json import MAX_BYTES, MAX_DEPTH
from tests.harness.api_fixtures import RunningApi

JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def nested(levels: int) -> str:
    """A JSON value ``levels`` arrays deep (the value itself is level 1)."""
    return "[" * levels + "]" * levels


async def _pending(redis: aioredis.Redis) -> int:
    inspector = Inspector(redis)
    return sum([(await inspector.queue_stats(q)).pending for q in await inspector.queues()])


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ('{"prompt":"p","metadata":{"x":NaN}}', ["body", "metadata"], "x: NaN"),
        ('{"prompt":"p","metadata":{"a":{"b":[1,Infinity]}}}', ["body", "metadata"], "a.b[1]: Infinity"),
        ('{"prompt":"p","metadata":{"x":-Infinity}}', ["body", "metadata"], "x: -Infinity"),
        ('{"prompt":"p","metadata":{"x":1e400}}', ["body", "metadata"], "too large"),
        ('{"prompt":"p","response_format":{"type":"text","s":NaN}}', ["body", "response_format"], "s: NaN"),
        ('{"prompt":"p","temperature":NaN}', ["body", "temperature"], "finite number"),
        ('{"prompt":"p","top_p":Infinity}', ["body", "top_p"], "finite number"),
        ('{"prompt":"p","max_tokens":1e400}', ["body", "max_tokens"], "finite number"),
        ('{"prompt":"p","metadata":{"x":' + nested(MAX_DEPTH) + "}}", ["body", "metadata"], "deeper than"),
        ('{"prompt":"p","metadata":{"x":"' + "a" * MAX_BYTES + '"}}', ["body", "metadata"], "bytes of JSON"),
        (
            '{"tasks":[{"prompt":"ok"},{"prompt":"p","metadata":{"x":NaN}}]}',
            ["body", "tasks", 1, "metadata"],
            "x: NaN",
        ),
    ],
)
async def test_poison_json_is_422_naming_the_field(
    api: RunningApi,
    http: httpx.AsyncClient,
    redis_client: aioredis.Redis,
    body: str,
    loc: list[str | int],
    words: str,
) -> None:
    path = "/api/v1/tasks/llm:batch" if body.startswith('{"tasks"') else "/api/v1/tasks/llm"
    answer = await http.post(f"{api.url}{path}", content=body.encode(), headers=JSON)
    assert answer.status_code == 422, answer.text
    error = answer.json()["detail"][0]
    assert error["loc"] == loc
    assert words in error["msg"]
    assert await _pending(redis_client) == 0


async def test_values_at_the_caps_are_accepted(
    api: RunningApi, http: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    deepest = '{"prompt":"p","metadata":{"x":' + nested(MAX_DEPTH - 1) + '},"temperature":1.5}'
    big = '{"prompt":"p","metadata":{"x":"' + "a" * (MAX_BYTES - 100) + '"}}'
    for body in (deepest, big):
        answer = await http.post(f"{api.url}/api/v1/tasks/llm", content=body.encode(), headers=JSON)
        assert answer.status_code == 200, answer.text[:300]
    assert await _pending(redis_client) == 2
