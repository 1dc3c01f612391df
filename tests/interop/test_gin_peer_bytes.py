"""Our answers on the Go original's routes against real gin + encoding/json + asynq for the same
requests on the same Redis (``ginpeer``, a gin server built for these tests): status, Content-Type
and body, byte for byte, for a fixed corpus and a few hundred mutated submit bodies."""

from __future__ import annotations

import random
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio as aioredis

from sytq.queue import Inspector, QueueClient
from tests.harness.api_fixtures import RunningApi
from tests.harness.services import RedisServer
from tests.interop.probe_build import ProbeBuildError, build_ginpeer

VALID = b'{"table_name":"valuation_records","id":123}'
# Unix times within a few seconds of now (pending tasks' created_at, health timestamps) differ
# between two servers asked a moment apart; they are compared as "now".
_NOWISH = re.compile(rb'"(created_at|timestamp)":(\d{10})')
_TASK_ID = re.compile(rb'"task_id":"[0-9a-f-]{36}"')


@pytest.fixture
def ginpeer(redis_server: RedisServer) -> Iterator[str]:
    try:
        binary = build_ginpeer()
    except ProbeBuildError as exc:
        pytest.fail(str(exc))
    proc = subprocess.Popen(
        [str(binary), "-redis", f"127.0.0.1:{redis_server.port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().decode().strip()
    assert address, "ginpeer did not start"
    yield f"http://{address}"
    proc.terminate()
    proc.wait(10)


def _normalized(body: bytes) -> bytes:
    now = time.time()

    def nowish(match: re.Match[bytes]) -> bytes:
        value = int(match.group(2))
        return b'"%s":NOW' % match.group(1) if abs(value - now) <= 5 else match.group(0)

    return _TASK_ID.sub(b'"task_id":"ID"', _NOWISH.sub(nowish, body))


def _same(gin: httpx.Response, ours: httpx.Response, what: object) -> None:
    assert ours.status_code == gin.status_code, (what, gin.content, ours.content)
    assert ours.headers["content-type"] == gin.headers["content-type"], what
    assert _normalized(ours.content) == _normalized(gin.content), what


FIXED_BODIES = [
    VALID,
    b"",
    b"   ",
    b"{",
    b"null",
    b"{}",
    b"[]",
    b'"x"',
    b"-1",
    b"{oops",
    b"<html>",
    b'{"table_name":"valuation_records"}',
    b'{"id":5}',
    b'{"table_name":"valuation_records","id":0}',
    b'{"table_name":"valuation_records","id":-7}',
    b'{"table_name":"valuation_records","id":"7"}',
    b'{"table_name":"valuation_records","id":7.5}',
    b'{"table_name":"valuation_records","id":1e3}',
    b'{"table_name":"valuation_records","id":9223372036854775808}',
    b'{"table_name":7,"id":7}',
    b'{"table_name":["a"],"id":{"b":1}}',
    b'{"TABLE_NAME":"valuation_records","Id":9}',
    b'{"table_name":"valuation_records","id":9} tail & <more>',
    b'{"table_name":"valuation_records","id":9,}',
    b'{"table_name":"valuation_records","id":09}',
    b'{"table_name":"valuation\\u005frecords","id":9}',
    b'{"table_name":"valuation_records\n","id":9}',
    b'{"table_name":"valuation_records","id":9,"x":[1,{"y":nul}]}',
    b'{"table_name":"\\ud800","id":9}',
    b"\xef\xbb\xbf{}",
    b"\x00",
    b"{\"a\":'b'}",
    b"[" * 10001,
]


async def test_submit_answers_match_gin(api: RunningApi, ginpeer: str) -> None:
    rng = random.Random(20261204)
    alphabet = b'{}[]":,0123456789-+.eE \\/ntrufals_id\x00\x1f\x7f\xff<>&'
    mutated = []
    for _ in range(300):
        body = bytearray(rng.choice(FIXED_BODIES[:1] + FIXED_BODIES[11:28]))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(body) + 1)
            kind = rng.randrange(3)
            if kind == 0:
                body[at:at] = bytes([rng.choice(alphabet)])
            elif kind == 1 and at < len(body):
                del body[at]
            elif at < len(body):
                body[at] = rng.choice(alphabet)
        mutated.append(bytes(body))
    async with httpx.AsyncClient() as http:
        for body in FIXED_BODIES + mutated:
            gin = await http.post(f"{ginpeer}/api/tasks/llm", content=body)
            ours = await http.post(f"{api.url}/api/tasks/llm", content=body)
            if gin.status_code == 200 and ours.status_code == 400:
                # Our one refusal the original lacked: a table outside SYTQ_RECORD_TABLES.
                assert b"is not allowed (SYTQ_RECORD_TABLES)" in ours.content, body
                continue
            _same(gin, ours, body)


async def test_status_list_and_health_match_gin(
    api: RunningApi, ginpeer: str, redis_client: aioredis.Redis
) -> None:
    async with httpx.AsyncClient() as http:

        async def compare(path: str) -> None:
            _same(await http.get(ginpeer + path), await http.get(api.url + path), path)

        # Before any task: the default queue does not exist yet.
        for path in ("/api/tasks/x", "/api/tasks", "/api/tasks?status=pending", "/health", "/healthz/live"):
            await compare(path)
        client = QueueClient(redis_client)
        for n in range(5):
            await client.enqueue(
                "llm:process", b'{"table_name":"valuation_records","id":%d}' % n, task_id=f"p{n}"
            )
        await client.enqueue(
            "llm:process", VALID, task_id="later", process_at=datetime(2030, 1, 2, tzinfo=UTC)
        )
        await client.enqueue("llm:process", VALID, task_id="gone")
        await client.enqueue("llm:process", VALID, task_id="low-1", queue="low")
        await Inspector(redis_client).archive_task("default", "gone")
        for task_id in ("p0", "p4", "later", "gone", "low-1", "unknown", "a%20b", "%E4%B8%AD", "p0%00"):
            await compare(f"/api/tasks/{task_id}")
        queries = [
            "",
            "status=pending",
            "status=pending&limit=2",
            "status=pending&limit=2&offset=2",
            "status=pending&limit=2&offset=3",
            "status=pending&limit=2&offset=4",
            "status=pending&offset=-3&limit=-1",
            "status=pending&limit=500",
            "status=pending&limit=",
            "status=pending&limit=%2B3",
            "status=pending&limit=3&limit=1",
            "status=archived",
            "status=failed",
            "status=retry",
            "status=completed",
            "status=scheduled",
            "status=whatever",
            "status=pending&queue_name=low",
            "status=pending&queue_name=nope",
            "status=pending&queue_name=%20",
            "queue_name=",
            "limit=abc",
            "limit=1e3",
            "limit=%201",
            "limit=99999999999999999999",
            "offset=x&limit=y",
            "offset=-9223372036854775809",
            "limit=%zz&status=pending",
            "status=pending;limit=1",
            "limit=\xe4\xb8\xad",
        ]
        for query in queries:
            await compare(f"/api/tasks?{query}")
        # No route for the path or the method: gin's plain-text 404.
        no_route = (("GET", "/api/tasks/a/b"), ("DELETE", "/api/tasks/p0"), ("PUT", "/api/tasks/llm"))
        for method, path in no_route:
            gin = await http.request(method, ginpeer + path)
            _same(gin, await http.request(method, api.url + path), (method, path))
