"""The two submit contracts callers depend on, checked byte for byte over real HTTP."""

from __future__ import annotations

import json
import re

import httpx
import redis.asyncio as aioredis

from sytq.queue import Inspector, TaskState
from sytq.tasks import TYPE_LLM_CHAT, TYPE_LLM_PROCESS, LLMChatPayload
from tests.api.helpers import queued
from tests.harness.api_fixtures import RunningApi

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


async def test_seed_request_and_response_byte_for_byte(api: RunningApi, redis_client: aioredis.Redis) -> None:
    body = b'{"prompt": "Hello", "model": "deepseek-chat", "callback_url": "http://127.0.0.1:9/cb"}'
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{api.url}/api/v1/tasks/llm", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    match = re.fullmatch(rb'\{"task_id":"(' + UUID.encode() + rb')","status":"enqueued"\}', response.content)
    assert match, response.content
    task_id = match.group(1).decode()

    info = await queued(redis_client, task_id)
    assert info.type == TYPE_LLM_CHAT
    assert info.queue == "default"
    assert info.state == TaskState.PENDING
    assert info.max_retry == 25
    assert info.retention == api.settings.task_retention_seconds
    payload = LLMChatPayload.model_validate_json(info.payload)
    assert payload.model == "deepseek-chat"
    assert [(m.role, m.content) for m in payload.messages] == [("user", "Hello")]
    assert payload.callback_url == "http://127.0.0.1:9/cb"
    assert payload.client_id == "anonymous"


async def test_options_reach_the_queue(api: RunningApi, redis_client: aioredis.Redis) -> None:
    request = {
        "messages": [{"role": "user", "content": "hi"}],
        "system": "be brief",
        "temperature": 0.2,
        "max_tokens": 50,
        "metadata": {"order": 7},
        "queue": "low",
        "delay_seconds": 600,
        "max_retry": 3,
        "timeout_seconds": 30,
    }
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{api.url}/api/v1/tasks/llm", json=request)
    assert response.status_code == 200, response.text
    info = await queued(redis_client, response.json()["task_id"])
    assert (info.queue, info.state, info.max_retry, info.timeout) == ("low", TaskState.SCHEDULED, 3, 30)
    payload = LLMChatPayload.model_validate_json(info.payload)
    assert payload.model == api.settings.llm_default_model
    assert [m.role for m in payload.messages] == ["system", "user"]
    assert payload.parameters.temperature == 0.2 and payload.parameters.max_tokens == 50
    assert payload.metadata == {"order": 7}


async def test_go_original_request_and_envelope(api: RunningApi, redis_client: aioredis.Redis) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{api.url}/api/tasks/llm", content=b'{"table_name": "valuation_records", "id": 123}'
        )
    assert response.status_code == 200
    envelope = rb'\{"code":200,"message":"Success","data":\{"task_id":"(%s)","status":"enqueued"\}\}'
    match = re.fullmatch(envelope % UUID.encode(), response.content)
    assert match, response.content
    info = await queued(redis_client, match.group(1).decode())
    assert info.type == TYPE_LLM_PROCESS
    assert info.queue == "default"
    assert info.max_retry == 25
    # What Go's json.Marshal(LLMPayload{...}) produced, byte for byte.
    assert info.payload == b'{"table_name":"valuation_records","id":123}'


async def test_go_original_errors_keep_its_envelope(api: RunningApi, redis_client: aioredis.Redis) -> None:
    async with httpx.AsyncClient() as http:
        missing = await http.post(f"{api.url}/api/tasks/llm", json={"table_name": "valuation_records"})
        other_table = await http.post(f"{api.url}/api/tasks/llm", json={"table_name": "users", "id": 1})
        not_json = await http.post(f"{api.url}/api/tasks/llm", content=b"{oops")
    for response in (missing, other_table, not_json):
        assert response.status_code == 400
        body = response.json()
        assert set(body) == {"code", "message"} and body["code"] == 400 and body["message"]
    assert "id" in missing.json()["message"]
    assert "users" in other_table.json()["message"]
    inspector = Inspector(redis_client)
    sizes = [(await inspector.queue_stats(q)).size for q in await inspector.queues()]
    assert sum(sizes) == 0


async def test_openapi_documents_every_endpoint(api: RunningApi) -> None:
    async with httpx.AsyncClient() as http:
        schema = (await http.get(f"{api.url}/openapi.json")).json()
    paths = set(schema["paths"])
    assert {
        "/api/v1/tasks/llm",
        "/api/v1/tasks/llm:batch",
        "/api/tasks/llm",
        "/api/v1/tasks/{task_id}",
        "/api/v1/tasks",
        "/api/v1/tasks/{task_id}/cancel",
        "/api/v1/tasks/{task_id}/retry",
        "/api/v1/queues",
        "/api/v1/queues/{queue}/pause",
        "/api/v1/queues/{queue}/resume",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= paths
    assert json.dumps(schema["components"]["securitySchemes"])
