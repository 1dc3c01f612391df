"""Secure defaults over real HTTP: tenant isolation, HTTP Basic users, keyed idempotency ids,
batches against the rate limit, and queue names outside SYTQ_QUEUES."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis.asyncio as aioredis

from api.ownership import owner_of
from sytq.queue import Inspector
from sytq.tasks import OWNER_HEADER
from tests.api.helpers import bearer, key_entry
from tests.harness.api_fixtures import RunningApi

KEYS = ",".join(
    [
        key_entry("tenant-a", "a-secret", "submit|read"),
        key_entry("tenant-b", "b-secret", "submit|read"),
        key_entry("ops", "ops-secret", "admin"),
    ]
)
USERS = key_entry("php", "php-password", "submit|read")  # the same entry format, hashing the password
PROMPT = {"prompt": "hi"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


A, B, ADMIN, PHP = bearer("a-secret"), bearer("b-secret"), bearer("ops-secret"), basic("php", "php-password")


@pytest.fixture
def tenants(start_api: Callable[..., RunningApi]) -> RunningApi:
    return start_api(api_keys=KEYS, basic_auth_users=USERS)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def _submit(http: httpx.AsyncClient, api: RunningApi, headers: dict[str, str]) -> str:
    answer = await http.post(f"{api.url}/api/v1/tasks/llm", json=PROMPT, headers=headers)
    assert answer.status_code == 200, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


async def test_a_tenant_reads_lists_cancels_and_retries_only_its_own_tasks(
    tenants: RunningApi, http: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    mine = await _submit(http, tenants, A)
    theirs = await _submit(http, tenants, B)
    assert owner_of(await Inspector(redis_client).find_task(mine)) == "tenant-a"
    tasks = f"{tenants.url}/api/v1/tasks"

    assert (await http.get(f"{tasks}/{mine}", headers=A)).status_code == 200
    hidden = await http.get(f"{tasks}/{theirs}", headers=A)
    missing = await http.get(f"{tasks}/no-such-task", headers=A)
    # Not yours reads exactly like does not exist: no existence leak.
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace(theirs, "X") == missing.json()["detail"].replace(
        "no-such-task", "X"
    )

    listed_a = (await http.get(tasks, headers=A)).json()["tasks"]
    listed_admin = (await http.get(tasks, headers=ADMIN)).json()["tasks"]
    assert [t["task_id"] for t in listed_a] == [mine]
    assert {t["task_id"] for t in listed_admin} == {mine, theirs}

    assert (await http.post(f"{tasks}/{theirs}/cancel", headers=A)).status_code == 404
    assert (await Inspector(redis_client).find_task(theirs)).state == "pending"
    assert (await http.post(f"{tasks}/{mine}/cancel", headers=A)).json()["state"] == "archived"
    assert (await http.post(f"{tasks}/{theirs}/cancel", headers=B)).status_code == 200
    # Retrying an archived task: the owner may, another tenant gets 404, an admin may any.
    assert (await http.post(f"{tasks}/{mine}/retry", headers=B)).status_code == 404
    assert (await http.post(f"{tasks}/{mine}/retry", headers=A)).json()["state"] == "pending"
    assert (await http.post(f"{tasks}/{theirs}/retry", headers=ADMIN)).json()["state"] == "pending"


async def test_tasks_without_an_owner_are_for_admins_except_on_the_originals_routes(
    tenants: RunningApi, http: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    from sytq.queue import QueueClient

    # As a Go asynq client or the asynq CLI would enqueue them: no owner recorded.
    chat = await QueueClient(redis_client).enqueue("llm:chat", b'{"model":"m"}', task_id="from-go")
    url = f"{tenants.url}/api/v1/tasks/{chat.id}"
    assert (await http.get(url, headers=A)).status_code == 404
    assert (await http.get(url, headers=ADMIN)).status_code == 200
    # What the Go original's API enqueued before the switch: every login saw it there, and a PHP
    # app polling it through the original's route must keep seeing it.
    record = await QueueClient(redis_client).enqueue(
        "llm:process", b'{"table_name":"valuation_records","id":5}', task_id="from-go-api"
    )
    polled = await http.get(f"{tenants.url}/api/tasks/{record.id}", headers=PHP)
    assert polled.status_code == 200 and polled.json()["data"]["status"] == "pending"
    listed = await http.get(f"{tenants.url}/api/tasks?status=pending", headers=A)
    assert record.id in [t["task_id"] for t in listed.json()["data"]["tasks"]]
    assert (await http.get(f"{tenants.url}/api/v1/tasks/{record.id}", headers=PHP)).status_code == 404


async def test_basic_auth_users_submit_and_own_their_tasks(
    tenants: RunningApi, http: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    mine = await _submit(http, tenants, PHP)
    assert (await http.get(f"{tenants.url}/api/v1/tasks/{mine}", headers=PHP)).status_code == 200
    assert (await http.get(f"{tenants.url}/api/v1/tasks/{mine}", headers=A)).status_code == 404
    legacy = await http.post(
        f"{tenants.url}/api/tasks/llm", json={"table_name": "valuation_records", "id": 7}, headers=PHP
    )
    assert legacy.status_code == 200, legacy.text
    record_task = legacy.json()["data"]["task_id"]
    queued = await Inspector(redis_client).find_task(record_task)
    assert queued.headers[OWNER_HEADER] == "php"
    assert queued.payload == b'{"table_name":"valuation_records","id":7}'  # the original's bytes, unchanged
    assert (await http.get(f"{tenants.url}/api/v1/tasks/{record_task}", headers=PHP)).status_code == 200
    # The original's read routes: its own task for its owner; for another tenant the original's
    # answer for an unknown id, and no trace of it in the list.
    status = await http.get(f"{tenants.url}/api/tasks/{record_task}", headers=PHP)
    assert status.status_code == 200 and status.json()["data"]["task_id"] == record_task
    foreign = await http.get(f"{tenants.url}/api/tasks/{record_task}", headers=A)
    unknown = await http.get(f"{tenants.url}/api/tasks/no-such-id", headers=A)
    assert foreign.status_code == unknown.status_code == 500 and foreign.content == unknown.content
    listed = {
        who: [
            t["task_id"]
            for t in (await http.get(f"{tenants.url}/api/tasks?status=pending", headers=h)).json()["data"][
                "tasks"
            ]
        ]
        for who, h in (("php", PHP), ("a", A), ("admin", ADMIN))
    }
    assert record_task in listed["php"] and record_task in listed["admin"] and record_task not in listed["a"]
    wrong = await http.get(f"{tenants.url}/api/v1/tasks/{mine}", headers=basic("php", "nope"))
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer, Basic realm="Authorization Required"'


async def test_the_original_routes_refuse_a_login_as_gin_basic_auth_did(
    tenants: RunningApi, http: httpx.AsyncClient
) -> None:
    """gin.BasicAuth (v1.10, the original's): 401, ``WWW-Authenticate: Basic realm="Authorization
    Required"`` (the original never passed its configured realm to gin), and an empty body."""
    url = f"{tenants.url}/api/tasks/llm"
    body = {"table_name": "valuation_records", "id": 1}
    for headers in (
        {},
        basic("php", "wrong"),
        basic("nobody", "php-password"),
        {"Authorization": "Basic %%%"},
    ):
        refused = await http.post(url, json=body, headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"] == 'Basic realm="Authorization Required"'
        assert refused.content == b""
    assert (await http.post(url, json=body, headers=PHP)).status_code == 200


async def test_idempotency_ids_are_keyed_by_the_server_secret_and_the_tenant(
    start_api: Callable[..., RunningApi], http: httpx.AsyncClient
) -> None:
    api = start_api(api_keys=KEYS, id_secret="one-secret")
    other_deployment = start_api(api_keys=KEYS, id_secret="another-secret")
    key = {"Idempotency-Key": "order-1"}
    a = await _submit(http, api, A | key)
    b = await _submit(http, api, B | key)
    assert a != b  # one key from two tenants: two tasks
    assert await _submit(http, api, A | key) == a
    # Not the old, public derivation (uuid5 of a constant namespace), so nobody can predict it.
    old = uuid.uuid5(uuid.UUID("5b7e2f0a-4c1d-4f8e-9a63-2f1d7c9e0b11"), "tenant-a\x00order-1")
    assert a != str(old)
    assert await _submit(http, other_deployment, A | {"Idempotency-Key": "order-2"}) != await _submit(
        http, api, A | {"Idempotency-Key": "order-2"}
    )


async def test_a_batch_counts_each_task_against_the_rate_limit(
    start_api: Callable[..., RunningApi], http: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    api = start_api(api_keys=KEYS, api_rate_limit_per_minute=10)
    url = f"{api.url}/api/v1/tasks/llm:batch"
    batch = {"tasks": [PROMPT] * 8}
    assert (await http.post(url, json=batch, headers=A)).status_code == 200
    over = await http.post(url, json=batch, headers=A)
    assert over.status_code == 429 and over.headers["retry-after"]
    # Two of the ten are left (the refused batch gave its tasks back, its request still counted one).
    assert (await http.post(url, json={"tasks": [PROMPT]}, headers=A)).status_code == 200
    too_big = await http.post(url, json={"tasks": [PROMPT] * 11}, headers=B)
    assert too_big.status_code == 422 and "split the batch" in too_big.text
    assert sum([(await Inspector(redis_client).queue_stats("default")).pending]) == 9


async def test_a_queue_outside_sytq_queues_is_refused_unless_dynamic(
    start_api: Callable[..., RunningApi], http: httpx.AsyncClient
) -> None:
    fixed = start_api(queues="critical=2,default=1")
    url = f"{fixed.url}/api/v1/tasks/llm"
    assert (await http.post(url, json={**PROMPT, "queue": "critical"})).status_code == 200
    refused = await http.post(url, json={**PROMPT, "queue": "typo-queue"})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "queue"]
    assert "not served" in refused.text
    batch = await http.post(f"{fixed.url}/api/v1/tasks/llm:batch", json={"tasks": [{**PROMPT, "queue": "x"}]})
    assert batch.status_code == 422 and batch.json()["detail"][0]["loc"] == ["body", "tasks", 0, "queue"]
    bad_name = await http.post(url, json={**PROMPT, "queue": "a/b"})
    assert bad_name.status_code == 422
    dynamic = start_api(queues="default=1", dynamic_queues=True)
    assert (
        await http.post(f"{dynamic.url}/api/v1/tasks/llm", json={**PROMPT, "queue": "any"})
    ).status_code == 200
