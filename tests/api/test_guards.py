"""Auth, rate limits, input limits and idempotency, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis.asyncio as aioredis

from sytq.queue import Inspector
from tests.api.helpers import bearer, key_entry
from tests.harness.api_fixtures import RunningApi

KEYS = ",".join(
    [
        key_entry("php-app", "submit-secret", "submit"),
        key_entry("dashboard", "read-secret", "read"),
        key_entry("ops", "admin-secret", "admin"),
    ]
)
PROMPT = {"prompt": "hi"}


@pytest.fixture
def secured(start_api: Callable[..., RunningApi]) -> RunningApi:
    return start_api(api_keys=KEYS, api_rate_limit_per_minute=5)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def _pending(redis: aioredis.Redis) -> int:
    inspector = Inspector(redis)
    return sum([(await inspector.queue_stats(q)).pending for q in await inspector.queues()])


async def test_keys_and_scopes(
    secured: RunningApi, http: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    url = f"{secured.url}/api/v1/tasks/llm"
    missing = await http.post(url, json=PROMPT)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert (await http.post(url, json=PROMPT, headers=bearer("wrong"))).status_code == 401
    assert (await http.post(url, json=PROMPT, headers={"Authorization": "Basic eDp5"})).status_code == 401
    forbidden = await http.post(url, json=PROMPT, headers=bearer("read-secret"))
    assert forbidden.status_code == 403 and "submit" in forbidden.json()["detail"]
    accepted = await http.post(url, json=PROMPT, headers=bearer("submit-secret"))
    assert accepted.status_code == 200
    task_url = f"{secured.url}/api/v1/tasks/{accepted.json()['task_id']}"
    assert (await http.get(task_url, headers=bearer("submit-secret"))).status_code == 403
    # Another tenant's key with the read scope does not see it (tests/api/test_tenancy.py); admin does.
    assert (await http.get(task_url, headers=bearer("read-secret"))).status_code == 404
    assert (await http.get(task_url, headers=bearer("admin-secret"))).status_code == 200
    assert (
        await http.post(f"{secured.url}/api/v1/queues/default/pause", headers=bearer("read-secret"))
    ).status_code == 403
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert (await http.get(f"{secured.url}{open_path}")).status_code == 200, open_path
    assert await _pending(redis_client) == 1


async def test_rate_limit_per_key(secured: RunningApi, http: httpx.AsyncClient) -> None:
    url = f"{secured.url}/api/v1/tasks/llm"
    codes = [
        (await http.post(url, json=PROMPT, headers=bearer("submit-secret"))).status_code for _ in range(5)
    ]
    assert codes == [200] * 5
    limited = await http.post(url, json=PROMPT, headers=bearer("submit-secret"))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # Another key has its own budget.
    assert (await http.get(f"{secured.url}/api/v1/queues", headers=bearer("read-secret"))).status_code == 200


async def test_input_limits(
    start_api: Callable[..., RunningApi], http: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    api = start_api(api_max_body_bytes=4096, api_max_prompt_chars=100)
    url = f"{api.url}/api/v1/tasks/llm"
    assert (await http.post(url, json={"prompt": "x" * 5000})).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    assert (
        await http.post(url, content=chunks(), headers={"Content-Type": "application/json"})
    ).status_code == 413
    too_long = await http.post(url, json={"prompt": "x" * 101})
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["body", "prompt"]
    unknown = await http.post(url, json={"prompt": "hi", "callbak_url": "http://x"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "callbak_url"]
    both = await http.post(url, json={"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]})
    assert both.status_code == 422 and "exactly one" in both.text
    assert (await http.post(url, json={"prompt": "hi", "temperature": 9})).status_code == 422
    assert (
        await http.post(url, json={"prompt": "hi", "process_at": "2030-01-01T00:00:00"})
    ).status_code == 422
    assert (
        await http.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    ).status_code == 422
    for unsafe in (
        "http://169.254.169.254/latest",
        "http://10.0.0.7/cb",
        "ftp://example.com/x",
        "http://[::1]/",
    ):
        refused = await http.post(url, json={"prompt": "hi", "callback_url": unsafe})
        assert refused.status_code == 422, unsafe
        assert refused.json()["detail"][0]["loc"] == ["body", "callback_url"]
    assert (
        await http.post(url, json={"prompt": "hi", "callback_url": "http://127.0.0.1:9/cb"})
    ).status_code == 200
    assert await _pending(redis_client) == 1
    assert "Traceback" not in too_long.text


async def test_idempotent_resubmit(
    api: RunningApi, http: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    url = f"{api.url}/api/v1/tasks/llm"
    first = await http.post(url, json=PROMPT, headers={"Idempotency-Key": "order-42"})
    again = await http.post(url, json=PROMPT, headers={"Idempotency-Key": "order-42"})
    other = await http.post(url, json=PROMPT, headers={"Idempotency-Key": "order-43"})
    assert first.status_code == again.status_code == other.status_code == 200
    assert first.content == again.content
    assert other.json()["task_id"] != first.json()["task_id"]
    reused = await http.post(url, json={"prompt": "something else"}, headers={"Idempotency-Key": "order-42"})
    assert reused.status_code == 422 and "different" in reused.text
    # A refused submit does not use its key up: fixing the request and resending works.
    unsafe = {"prompt": "hi", "callback_url": "http://10.1.2.3/hook"}
    refused = await http.post(url, json=unsafe, headers={"Idempotency-Key": "order-44"})
    fixed = await http.post(url, json=PROMPT, headers={"Idempotency-Key": "order-44"})
    assert refused.status_code == 422 and fixed.status_code == 200
    assert await _pending(redis_client) == 3


async def test_batch(
    start_api: Callable[..., RunningApi], http: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    api = start_api(api_max_batch=100)
    url = f"{api.url}/api/v1/tasks/llm:batch"
    tasks = [{"prompt": f"item {i}", "metadata": {"i": i}} for i in range(100)]
    answer = await http.post(url, json={"tasks": tasks})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["enqueued"] == 100 and body["failed"] == 0
    assert [r["index"] for r in body["results"]] == list(range(100))
    assert len({r["task_id"] for r in body["results"]}) == 100
    inspector = Inspector(redis_client)
    for result in body["results"][:5]:
        assert (await inspector.find_task(result["task_id"])).state == "pending"
    assert await _pending(redis_client) == 100

    over = await http.post(url, json={"tasks": [*tasks, {"prompt": "one more"}]})
    assert over.status_code == 422 and "at most 100" in over.text
    bad_item = await http.post(url, json={"tasks": [{"prompt": "ok"}, {"prompt": "x", "temperature": -1}]})
    assert bad_item.status_code == 422
    assert bad_item.json()["detail"][0]["loc"][:3] == ["body", "tasks", 1]
    assert await _pending(redis_client) == 100  # a refused batch enqueues nothing


async def test_racing_repeats_of_one_idempotency_key(
    api: RunningApi, http: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    """Simultaneous repeats land in the same coalesced batch: one task, one id for all."""
    url = f"{api.url}/api/v1/tasks/llm"
    answers = await asyncio.gather(
        *[http.post(url, json=PROMPT, headers={"Idempotency-Key": "same"}) for _ in range(20)],
        *[http.post(url, json=PROMPT) for _ in range(20)],
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["task_id"] for a in answers[:20]}) == 1
    assert len({a.json()["task_id"] for a in answers[20:]}) == 20
    assert await _pending(redis_client) == 21
