"""Redis dying under submits, and the task/queue read endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
import redis.asyncio as aioredis

from sytq.queue import Inspector
from sytq.storage import LLMOutcome, NewTask, TaskStore
from tests.harness.api_fixtures import RunningApi
from tests.harness.queue_fixtures import wait_until
from tests.harness.services import RedisServer, free_port


@pytest.mark.slow
async def test_redis_killed_during_submits(
    api: RunningApi, redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    acknowledged: list[str] = []
    statuses: list[int] = []
    stop = asyncio.Event()

    async def submitter(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            response = await http.post(f"{api.url}/api/v1/tasks/llm", json={"prompt": "during outage"})
            statuses.append(response.status_code)
            if response.status_code == 200:
                acknowledged.append(response.json()["task_id"])
            else:
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "2"
                assert "Traceback" not in response.text
                await asyncio.sleep(0.05)

    async with httpx.AsyncClient(timeout=15) as http:
        workers = [asyncio.create_task(submitter(http)) for _ in range(8)]
        await wait_until(lambda: len(acknowledged) >= 20, what="submits flowing before the outage")
        redis_server.kill()
        refused_before = statuses.count(503)
        await wait_until(lambda: statuses.count(503) >= refused_before + 8, what="503s during the outage")
        readyz = await http.get(f"{api.url}/readyz")
        redis_server.start()
        recovered_from = len(acknowledged)
        await wait_until(
            lambda: len(acknowledged) > recovered_from + 10, within=30, what="submits after Redis came back"
        )
        stop.set()
        await asyncio.gather(*workers)

    assert refused_before == 0, "a submit was refused before Redis went down"
    assert readyz.status_code == 503 and readyz.json()["redis"] == "down"
    assert set(statuses) <= {200, 503}
    after_restart = acknowledged[recovered_from:]
    # Redis restarted empty (no persistence): what it holds now is exactly what was acknowledged
    # after the restart. A 503'd submit left no orphan task behind.
    fresh = aioredis.Redis.from_url(redis_server.url)
    inspector = Inspector(fresh)
    stats = await inspector.queue_stats("default")
    stored = {t.id for t in await inspector.list_tasks("default", "pending", page_size=100_000)}  # type: ignore[arg-type]
    await fresh.aclose()
    assert stats.pending == len(stored)
    assert stored <= set(acknowledged)
    assert set(after_restart) <= stored


async def test_task_view_merges_queue_and_database(api: RunningApi, redis_client: aioredis.Redis) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        missing = await http.get(f"{api.url}/api/v1/tasks/no-such-task")
        assert missing.status_code == 404
        task_id = (await http.post(f"{api.url}/api/v1/tasks/llm", json={"prompt": "q"})).json()["task_id"]
        view = (await http.get(f"{api.url}/api/v1/tasks/{task_id}")).json()
        assert (view["state"], view["attempts"], view["type"], view["queue"]) == (
            "pending",
            0,
            "llm:chat",
            "default",
        )
        assert view["result"] is None

        # A worker's stored row (as the pipeline writes it) shows up in the same view.
        store = TaskStore.from_url(api.settings.effective_database_url)
        started = await store.begin_attempt(
            NewTask(task_id=task_id, type="llm:chat", queue="default", model="m"), 1
        )
        usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        await store.mark_succeeded(started, LLMOutcome("the answer", None, "stop", usage, 12, "m"))
        await store.close()
        view = (await http.get(f"{api.url}/api/v1/tasks/{task_id}")).json()
        assert view["status"] == "succeeded"
        assert view["result"]["content"] == "the answer" and view["usage"] == usage
        assert view["attempts"] >= 1 and view["finished_at"]

        listed = (await http.get(f"{api.url}/api/v1/tasks", params={"state": "pending", "limit": 10})).json()
        assert [t["task_id"] for t in listed["tasks"]] == [task_id] and listed["next_cursor"] is None
        assert (await http.get(f"{api.url}/api/v1/tasks", params={"state": "bogus"})).status_code == 422

        cancelled = await http.post(f"{api.url}/api/v1/tasks/{task_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "archived"
        assert (await http.post(f"{api.url}/api/v1/tasks/{task_id}/cancel")).status_code == 409
        retried = await http.post(f"{api.url}/api/v1/tasks/{task_id}/retry")
        assert retried.status_code == 200 and retried.json()["state"] == "pending"

        queues = (await http.get(f"{api.url}/api/v1/queues")).json()["queues"]
        assert [(q["queue"], q["pending"]) for q in queues] == [("default", 1)]
        paused = await http.post(f"{api.url}/api/v1/queues/default/pause")
        assert paused.json()["paused"] is True
        resumed = await http.post(f"{api.url}/api/v1/queues/default/resume")
        assert resumed.json()["paused"] is False

        assert (await http.get(f"{api.url}/healthz")).json() == {"status": "ok"}
        ready = await http.get(f"{api.url}/readyz")
        assert ready.status_code == 200 and ready.json() == {
            "status": "ready",
            "redis": "ok",
            "database": "ok",
        }
        metrics = (await http.get(f"{api.url}/metrics")).text
        assert 'sytq_api_tasks_submitted_total{endpoint="llm"}' in metrics


async def test_database_down_queue_still_answers(start_api: Callable[..., RunningApi]) -> None:
    api = start_api(database_url=f"mysql+pymysql://root@127.0.0.1:{free_port()}/gone")
    async with httpx.AsyncClient(timeout=10) as http:
        task_id = (await http.post(f"{api.url}/api/v1/tasks/llm", json={"prompt": "q"})).json()["task_id"]
        view = await http.get(f"{api.url}/api/v1/tasks/{task_id}")
        assert view.status_code == 200 and view.json()["state"] == "pending"
        unknown = await http.get(f"{api.url}/api/v1/tasks/not-there")
        assert unknown.status_code == 503 and unknown.headers["retry-after"]
        ready = await http.get(f"{api.url}/readyz")
        assert (
            ready.status_code == 503 and ready.json()["database"] == "down" and ready.json()["redis"] == "ok"
        )
