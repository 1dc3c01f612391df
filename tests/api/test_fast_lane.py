"""The submit fast lane answers exactly as the full FastAPI app does, for good and bad requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi.routing import APIRoute

from api import routes_legacy, routes_submit
from api.app import create_app, create_asgi_app
from api.fast_lane import SubmitFastLane
from api.submitter import QueueSubmitter
from sytq.queue import QueueClient, QueueError
from sytq.settings import Settings
from tests.api.helpers import key_entry
from tests.harness.raw_http import answers, closed, exchange, masked, post, serving
from tests.harness.services import RedisServer, free_port
from tests.unit.test_direct_http import CountingProtocol

KEY = "fast-lane-key"
GOOD = {"Authorization": f"Bearer {KEY}"}
JSON = {**GOOD, "Content-Type": "application/json"}

# (method, path, headers, body): every answer must be the same from both apps.
CASES: list[tuple[str, dict[str, str], bytes]] = [
    ("/api/v1/tasks/llm", JSON, b'{"prompt": "hi", "model": "deepseek-chat"}'),
    ("/api/v1/tasks/llm", GOOD, b'{"prompt": "no content type"}'),
    ("/api/v1/tasks/llm", {}, b'{"prompt": "no key"}'),
    ("/api/v1/tasks/llm", {"Authorization": "Bearer wrong"}, b'{"prompt": "bad key"}'),
    ("/api/v1/tasks/llm", JSON, b'{"prompt": "p", "metadata": {"x": NaN}}'),
    ("/api/v1/tasks/llm", JSON, b'{"prompt": 5}'),
    ("/api/v1/tasks/llm", JSON, b"not json"),
    ("/api/v1/tasks/llm", JSON, b'{"prompt": "p", "queue": "nobody-serves-this"}'),
    ("/api/v1/tasks/llm", JSON, b'{"prompt": "p", "callback_url": "http://169.254.169.254/x"}'),
    ("/api/v1/tasks/llm", JSON, b'{"prompt": "' + b"x" * 70_000 + b'"}'),
    ("/api/v1/tasks/llm:batch", JSON, b'{"tasks": [{"prompt": "a"}, {"prompt": "b"}]}'),
    ("/api/v1/tasks/llm:batch", JSON, b'{"tasks": []}'),
    ("/api/tasks/llm", GOOD, b'{"table_name": "valuation_records", "id": 1}'),
    ("/api/tasks/llm", GOOD, b'{"table_name": "valuation_records"}'),
    ("/api/tasks/llm", GOOD, b'{"table_name": "users", "id": 1}'),
    ("/api/tasks/llm", {}, b'{"table_name": "valuation_records", "id": 1}'),
]


@pytest.fixture
def settings(redis_server: RedisServer, redis_client: aioredis.Redis) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        database_url="sqlite://",
        api_keys=key_entry("php", KEY, "submit|read"),
        id_secret="test-id-secret",
        api_max_body_bytes=65_536,
    )


async def test_fast_lane_serves_the_functions_fastapi_registered(settings: Settings) -> None:
    served = create_asgi_app(settings)
    assert isinstance(served, SubmitFastLane)
    registered = {
        (route.path, method): route.endpoint
        for router in (routes_submit.router, routes_legacy.router)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert set(served.routes) == {"/api/v1/tasks/llm", "/api/v1/tasks/llm:batch", "/api/tasks/llm"}
    for path, function in served.routes.items():
        assert registered[(path, "POST")] is function


@pytest.mark.parametrize(("path", "headers", "body"), CASES, ids=[f"case{i}" for i in range(len(CASES))])
async def test_fast_lane_answers_as_the_full_app(
    settings: Settings, path: str, headers: dict[str, str], body: bytes
) -> None:
    answers = []
    for app in (create_app(settings), create_asgi_app(settings)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            response = await http.post(path, content=body, headers=headers)
        answers.append((response.status_code, sorted(response.headers.items()), masked(response.content)))
    full, fast = answers
    assert fast == full


@pytest.mark.parametrize("path", ["/api/v1/tasks/llm", "/api/tasks/llm", "/api/v1/tasks/llm:batch"])
async def test_a_body_growing_past_the_cap_is_refused_alike(settings: Settings, path: str) -> None:
    """No Content-Length, chunks past api_max_body_bytes: the same 413 from both apps."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(70):
            yield b"y" * 1000
        yield b'"}'

    answers = []
    for app in (create_app(settings), create_asgi_app(settings)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            response = await http.post(path, content=chunks(), headers=GOOD)
        answers.append((response.status_code, sorted(response.headers.items()), response.content))
    full, fast = answers
    assert fast == full
    assert fast[0] == 413


# sytq api's HTTP protocol serves these routes without an ASGI cycle: the same bytes on the wire.


async def _answers(settings: Settings, protocol: Any, *, pipelined: bool) -> bytes:
    requests = [post(path, body, headers) for path, headers, body in CASES]
    path, headers, body = CASES[0]
    last = closed(post(path, body, headers))  # ends the pipelined exchange
    async with serving(create_asgi_app(settings), protocol, lifespan="on") as port:
        if pipelined:
            return masked(await exchange(port, b"".join([*requests, last])))
        return b"".join([masked(await exchange(port, closed(request))) for request in requests])


async def test_each_submit_case_answers_as_uvicorns_protocol(settings: Settings) -> None:
    CountingProtocol.direct = CountingProtocol.routed = 0
    ours = await _answers(settings, CountingProtocol, pipelined=False)
    assert CountingProtocol.direct == len(CASES) - 1  # all but the body over the cap (uvicorn's path: 413)
    # A known caller's single submits that need nothing awaited before their enqueue (two v1, three
    # record) are answered by the route's instant form; the rest by the route.
    assert CountingProtocol.direct - CountingProtocol.routed == 5
    theirs = await _answers(settings, "httptools", pipelined=False)
    assert ours == theirs
    assert len(answers(ours)) == len(CASES)
    assert answers(ours).count(b"HTTP/1.1 200 OK") == 4


async def test_pipelined_submits_answer_in_order_as_uvicorns_protocol(settings: Settings) -> None:
    ours = await _answers(settings, CountingProtocol, pipelined=True)
    theirs = await _answers(settings, "httptools", pipelined=True)
    assert ours == theirs
    assert len(answers(ours)) == len(CASES) + 1


@pytest.mark.parametrize(
    ("path", "status", "ending"),
    [
        ("/api/tasks/llm", 500, b'{"code":500,"message":"Failed to enqueue task"}'),
        ("/api/v1/tasks/llm", 503, b"}"),
    ],
)
async def test_a_submit_redis_refuses_answers_as_uvicorns_protocol(
    settings: Settings, path: str, status: int, ending: bytes
) -> None:
    """The instant form's enqueue fails (nothing listens at the Redis address): the route's answer
    (the original's 500; the seed's 503 through the app's handler)."""
    unreachable = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    _, headers, body = next(case for case in CASES if case[0] == path)
    CountingProtocol.direct = CountingProtocol.routed = 0
    results = []
    for protocol in (CountingProtocol, "httptools"):
        async with serving(create_asgi_app(unreachable), protocol, lifespan="on") as port:
            results.append(masked(await exchange(port, closed(post(path, body, headers)))))
    ours, theirs = results
    assert ours == theirs
    assert CountingProtocol.direct == 1
    assert CountingProtocol.routed == (1 if status == 503 else 0)  # the handler answers from a task
    assert ours.startswith(b"HTTP/1.1 %d " % status)
    assert b"retry-after: 2\r\n" in ours.lower()
    assert ours.endswith(ending)


@pytest.mark.parametrize("path", ["/api/tasks/llm", "/api/v1/tasks/llm"])
async def test_a_rate_limited_submit_is_answered_by_the_route(settings: Settings, path: str) -> None:
    """A rate limit has to be awaited before the enqueue: the route answers, and the limit holds."""
    limited = settings.model_copy(update={"api_rate_limit_per_minute": 1})
    _, headers, body = next(case for case in CASES if case[0] == path)
    CountingProtocol.direct = CountingProtocol.routed = 0
    async with serving(create_asgi_app(limited), CountingProtocol, lifespan="on") as port:
        first = await exchange(port, closed(post(path, body, headers)))
        second = await exchange(port, closed(post(path, body, headers)))
    assert first.startswith(b"HTTP/1.1 200 ") and second.startswith(b"HTTP/1.1 429 ")
    assert CountingProtocol.direct == CountingProtocol.routed == 2


class _RefusingSubmitter(QueueSubmitter):
    """Refuses an llm:process task before queuing it (raises instead of returning its future)."""

    def submit_process(
        self, task_id: str, table_name: str, record_id: int, owner: str
    ) -> asyncio.Future[str]:
        raise QueueError("refused before it was queued")


async def test_a_record_submit_refused_before_its_enqueue_is_the_originals_500(settings: Settings) -> None:
    path, headers, body = next(case for case in CASES if case[0] == "/api/tasks/llm")
    lane = create_asgi_app(settings)
    assert isinstance(lane, SubmitFastLane)
    async with serving(lane, CountingProtocol, lifespan="on") as port:
        state = lane.app.state.sytq
        state.submitter = _RefusingSubmitter(QueueClient(state.redis))
        CountingProtocol.direct = CountingProtocol.routed = 0
        answer = await exchange(port, closed(post(path, body, headers)))
    assert CountingProtocol.direct == 1 and CountingProtocol.routed == 0
    assert answer.startswith(b"HTTP/1.1 500 ")
    assert answer.endswith(b'{"code":500,"message":"Failed to enqueue task"}')
