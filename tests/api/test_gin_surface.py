"""The Go original's HTTP surface over real HTTP, compared byte for byte with what gin wrote.

Expected bodies are written from the original's handlers and Go's encoding/json rules: struct
fields in order, ``data`` omitted when nil, map keys sorted, no spaces, HTML characters escaped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import redis.asyncio as aioredis

from sytq.queue import Inspector, QueueClient
from tests.harness.api_fixtures import RunningApi

GIN_TYPE = "application/json; charset=utf-8"
PAYLOAD = b'{"table_name":"valuation_records","id":1}'


async def _enqueue(redis: aioredis.Redis, task_id: str, **options: object) -> None:
    await QueueClient(redis).enqueue("llm:process", PAYLOAD, task_id=task_id, **options)  # type: ignore[arg-type]


def _stamped(pattern: bytes, body: bytes, before: float, after: float) -> None:
    """``body`` matches ``pattern`` whose one group is a unix time taken between the two moments."""
    match = re.fullmatch(pattern, body)
    assert match, body
    assert int(before) <= int(match.group(1)) <= int(after) + 1


async def test_submit_success_and_errors_are_gins_bytes(api: RunningApi) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        ok = await http.post("/api/tasks/llm", content=b'{"table_name":"valuation_records","id":123}')
        answers = {
            body: await http.post("/api/tasks/llm", content=body)
            for body in (b"", b"{oops", b"<x>", b'{"id":5}', b'{"table_name":"valuation_records","id":"5"}')
        }
    assert ok.status_code == 200 and ok.headers["content-type"] == GIN_TYPE
    assert re.fullmatch(
        rb'\{"code":200,"message":"Success","data":\{"task_id":"[0-9a-f-]{36}","status":"enqueued"\}\}',
        ok.content,
    )
    expected = {
        b"": b'{"code":400,"message":"EOF"}',
        b"{oops": b'{"code":400,"message":"invalid character \'o\' looking for beginning of object key '
        b'string"}',
        b"<x>": b'{"code":400,"message":"invalid character \'\\u003c\' looking for beginning of value"}',
        b'{"id":5}': b'{"code":400,"message":"Key: \'CreateTaskRequest.TableName\' Error:Field '
        b"validation for 'TableName' failed on the 'required' tag\"}",
        b'{"table_name":"valuation_records","id":"5"}': b'{"code":400,"message":"json: cannot unmarshal '
        b'string into Go struct field CreateTaskRequest.id of type int64"}',
    }
    for body, response in answers.items():
        assert (response.status_code, response.headers["content-type"]) == (400, GIN_TYPE)
        assert response.content == expected[body]


async def test_task_status_found_scheduled_archived(api: RunningApi, redis_client: aioredis.Redis) -> None:
    due = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    await _enqueue(redis_client, "pending-1")
    await _enqueue(redis_client, "later-1", process_at=due)
    await _enqueue(redis_client, "gone-1")
    await Inspector(redis_client).archive_task("default", "gone-1")
    async with httpx.AsyncClient(base_url=api.url) as http:
        before = time.time()
        pending = await http.get("/api/tasks/pending-1")
        after = time.time()
        later = await http.get("/api/tasks/later-1")
        gone = await http.get("/api/tasks/gone-1")
    assert pending.status_code == 200 and pending.headers["content-type"] == GIN_TYPE
    _stamped(
        rb'\{"code":200,"message":"Success","data":\{"task_id":"pending-1","status":"pending",'
        rb'"queue_name":"default","created_at":(\d+),"retry_count":0\}\}',
        pending.content,
        before,
        after,
    )
    assert later.content == (
        b'{"code":200,"message":"Success","data":{"task_id":"later-1","status":"scheduled",'
        b'"queue_name":"default","created_at":1893553445,"retry_count":0}}'
    )
    # No next run: Go's zero time, as the original showed it.
    assert gone.content == (
        b'{"code":200,"message":"Success","data":{"task_id":"gone-1","status":"archived",'
        b'"queue_name":"default","created_at":-62135596800,"retry_count":0}}'
    )


async def test_task_status_not_found_is_the_originals_500(
    api: RunningApi, redis_client: aioredis.Redis
) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        no_queue = await http.get("/api/tasks/nothing-yet")
        await _enqueue(redis_client, "someone")
        no_task = await http.get("/api/tasks/unknown-id")
        other_queue = await _enqueue(redis_client, "elsewhere", queue="low")
        elsewhere = await http.get("/api/tasks/elsewhere")
    assert other_queue is None
    assert (no_queue.status_code, no_queue.content) == (
        500,
        b'{"code":500,"message":"Failed to get task info: asynq: queue not found"}',
    )
    for response in (no_task, elsewhere):  # only the default queue is looked at
        assert (response.status_code, response.content) == (
            500,
            b'{"code":500,"message":"Failed to get task info: asynq: task not found"}',
        )


async def test_list_filters_pages_and_limits(api: RunningApi, redis_client: aioredis.Redis) -> None:
    for n in range(3):
        await _enqueue(redis_client, f"p{n}")
    await _enqueue(redis_client, "r0", process_at=datetime(2031, 1, 1, tzinfo=UTC))
    async with httpx.AsyncClient(base_url=api.url) as http:
        before = time.time()
        first = await http.get("/api/tasks", params={"status": "pending", "limit": "2"})
        second = await http.get("/api/tasks", params={"status": "pending", "limit": "2", "offset": "2"})
        after = time.time()
        active = await http.get("/api/tasks")  # no status: the original listed active tasks
        bogus = await http.get("/api/tasks?status=whatever&limit=0&offset=-4")
        capped = await http.get("/api/tasks?status=completed&limit=500")
    item = (
        rb'\{"task_id":"%s","status":"pending","queue_name":"default","created_at":(\d+),'
        rb'"retry_count":0,"type":"llm:process"\}'
    )
    _stamped(
        rb'\{"code":200,"message":"Success","data":\{"tasks":\['
        + item % b"p0"
        + b","
        + (item % b"p1").replace(b"(", b"(?:")
        + rb'\],"total_count":2,"limit":2,"offset":0\}\}',
        first.content,
        before,
        after,
    )
    _stamped(
        rb'\{"code":200,"message":"Success","data":\{"tasks":\['
        + item % b"p2"
        + rb'\],"total_count":1,"limit":2,"offset":2\}\}',
        second.content,
        before,
        after,
    )
    assert (
        active.content
        == b'{"code":200,"message":"Success","data":{"tasks":[],"total_count":0,"limit":10,"offset":0}}'
    )
    assert bogus.content == active.content
    assert (
        capped.content
        == b'{"code":200,"message":"Success","data":{"tasks":[],"total_count":0,"limit":100,"offset":0}}'
    )


async def test_list_failed_means_retry_and_bad_input(api: RunningApi, redis_client: aioredis.Redis) -> None:
    await _enqueue(redis_client, "x0")
    async with httpx.AsyncClient(base_url=api.url) as http:
        failed = await http.get("/api/tasks?status=failed")
        bad_limit = await http.get("/api/tasks?limit=abc&offset=zz")
        huge = await http.get("/api/tasks?offset=99999999999999999999")
        no_queue = await http.get("/api/tasks?queue_name=nope")
        blank_queue = await http.get("/api/tasks?queue_name=%20")
        far = await http.get("/api/tasks?status=pending&offset=9223372036854775807")
    assert (
        failed.content
        == b'{"code":200,"message":"Success","data":{"tasks":[],"total_count":0,"limit":10,"offset":0}}'
    )
    assert (bad_limit.status_code, bad_limit.content) == (
        400,
        b'{"code":400,"message":"Invalid query parameters: strconv.ParseInt: parsing \\"abc\\": '
        b'invalid syntax"}',
    )
    assert (huge.status_code, huge.content) == (
        400,
        b'{"code":400,"message":"Invalid query parameters: strconv.ParseInt: parsing '
        b'\\"99999999999999999999\\": value out of range"}',
    )
    assert (no_queue.status_code, no_queue.content) == (
        500,
        b'{"code":500,"message":"Failed to list tasks: asynq: queue not found"}',
    )
    assert (blank_queue.status_code, blank_queue.content) == (
        500,
        b'{"code":500,"message":"Failed to list tasks: asynq: queue name must contain one or more '
        b'characters"}',
    )
    assert far.content == (
        b'{"code":200,"message":"Success","data":{"tasks":[],"total_count":0,"limit":10,"offset":9223372036854775807}}'
    )


async def test_health_paths(start_api: Callable[..., RunningApi]) -> None:
    api = start_api()
    no_database = start_api(database_url="mysql+pymysql://nobody:x@127.0.0.1:1/none")
    async with httpx.AsyncClient() as http:
        before = time.time()
        health = await http.get(f"{api.url}/health")
        live = await http.get(f"{api.url}/healthz/live")
        ready = await http.get(f"{api.url}/healthz/ready")
        not_ready = await http.get(f"{no_database.url}/healthz/ready")
        after = time.time()
    stamp = rb',"timestamp":(\d+)\}\}'
    assert health.headers["content-type"] == GIN_TYPE
    _stamped(
        rb'\{"code":200,"message":"Service is running","data":\{"status":"ok"' + stamp,
        health.content,
        before,
        after,
    )
    _stamped(
        rb'\{"code":200,"message":"Service is alive","data":\{"status":"ok"' + stamp,
        live.content,
        before,
        after,
    )
    _stamped(
        rb'\{"code":200,"message":"Service is ready","data":\{"database":"ok","status":"ok"' + stamp,
        ready.content,
        before,
        after,
    )
    assert not_ready.status_code == 503
    _stamped(
        rb'\{"code":503,"message":"Service is not ready","data":\{"database":"error",'
        rb'"error":"database ping failed","status":"error"' + stamp,
        not_ready.content,
        before,
        after,
    )
