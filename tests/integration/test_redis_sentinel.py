"""Redis behind Sentinel: the master is killed under a steady load of submits and processing.

One master, two replicas, three Sentinels (real redis-server processes). The API writes with
``redis_wait_replicas=1``, so a submit is answered 200 only once a replica holds it: after the
failover every acknowledged task must finish exactly once, the API must answer nothing but 200s and
503s, and the worker must carry on against the new master without a restart.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from sytq.queue import Inspector
from sytq.redis_connect import connect, parse_sentinel_url
from sytq.settings import ConfigError
from sytq.storage import TaskStore
from tests.api.helpers import key_entry
from tests.harness.llm_fixtures import PipelineEnv, StubLLMProcess, WorkerProcess, wait_final
from tests.harness.queue_fixtures import wait_until
from tests.harness.sentinel import MASTER_NAME, SentinelDeployment

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

API_KEY = "sentinel-test-key"


@pytest.fixture(scope="module")
def sentinel_deployment() -> Iterator[SentinelDeployment]:
    deployment = SentinelDeployment()
    yield deployment
    deployment.close()


def test_sentinel_url_is_parsed_with_credentials_db_and_ipv6() -> None:
    target = parse_sentinel_url(
        "redis+sentinel://app:s%40cret@10.0.0.1:26379,[::1]:26380,sentinel-c/mymaster/3?sentinel_password=sp"
    )
    assert target.sentinels == (("10.0.0.1", 26379), ("::1", 26380), ("sentinel-c", 26379))
    assert (target.master, target.db, target.username, target.password) == ("mymaster", 3, "app", "s@cret")
    assert target.sentinel_kwargs == {"password": "sp"}
    assert not target.ssl
    assert parse_sentinel_url("rediss+sentinel://h:1/m").ssl


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis+sentinel://h:1", "path is /<master-name>"),
        ("redis+sentinel://h:1/m/x", "is a number"),
        ("redis+sentinel://h:port/m", "bad address"),
        ("redis+sentinel://h:1/m?color=red", "unknown Sentinel URL parameter"),
        ("redis+sentinel://:pw@/m", "at least one host"),
    ],
)
def test_bad_sentinel_urls_are_config_errors(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint) as caught:
        connect(url)
    assert "pw" not in str(caught.value) or ":***@" in str(caught.value)


async def test_client_follows_the_master_through_a_failover(sentinel_deployment: SentinelDeployment) -> None:
    client = connect(sentinel_deployment.url, socket_connect_timeout=1.0, socket_timeout=2.0)
    try:
        await client.set("before", "1")
        old = sentinel_deployment.master_port()
        assert (await client.info("server"))["tcp_port"] == old
        await client.execute_command("WAIT", 2, 1000)
        sentinel_deployment.server_on(old).kill()
        new = await asyncio.to_thread(sentinel_deployment.wait_failover, old)
        await _until_ok(lambda: client.set("after", "2"), within=30)
        assert (await client.info("server"))["tcp_port"] == new
        assert await client.get("before") == b"1"  # replicated before the kill, so kept
    finally:
        await client.aclose()
        sentinel_deployment.restore()


async def test_failover_under_load_loses_no_acknowledged_task(
    sentinel_deployment: SentinelDeployment,
    pipeline_env: PipelineEnv,
    stub_llm: StubLLMProcess,
    start_api: Callable[..., Any],
) -> None:
    stub_llm.configure(latency="0.05")
    settings = pipeline_env.settings.model_copy(update={"redis_url": sentinel_deployment.url})
    api = start_api(
        redis_url=sentinel_deployment.url,
        api_keys=key_entry("php", API_KEY, "submit|read"),
        redis_wait_replicas=1,
        redis_wait_timeout_ms=500,
    )
    tag = uuid.uuid4().hex[:12]
    worker = WorkerProcess(settings)
    store = TaskStore.from_url(settings.effective_database_url)
    acknowledged: list[str] = []
    statuses: list[int] = []
    killed_at: list[float] = []
    try:
        async with httpx.AsyncClient(
            base_url=api.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
        ) as http:

            async def submitter(lane: int, until: float) -> None:
                n = 0
                while time.monotonic() < until:
                    n += 1
                    answer = await http.post(
                        "/api/v1/tasks/llm", json={"prompt": f"sentinel {tag} <{lane}-{n}>"}
                    )
                    statuses.append(answer.status_code)
                    if answer.status_code == 200:
                        acknowledged.append(answer.json()["task_id"])
                    else:
                        assert answer.headers.get("retry-after"), answer.text
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.01)

            async def killer() -> None:
                await wait_until(
                    lambda: len(acknowledged) >= 40,
                    within=60,
                    interval=0.05,
                    what="40 submits before the kill",
                )
                old = sentinel_deployment.master_port()
                sentinel_deployment.server_on(old).kill()
                killed_at.append(time.monotonic())
                await asyncio.to_thread(sentinel_deployment.wait_failover, old)

            until = time.monotonic() + 120
            lanes = [asyncio.create_task(submitter(lane, until)) for lane in range(4)]
            await killer()
            # Load continues until 40 more submits were acknowledged by the new master.
            after_failover = len(acknowledged)
            await wait_until(
                lambda: len(acknowledged) >= after_failover + 40,
                within=60,
                interval=0.05,
                what="submits resume",
            )
            for lane in lanes:
                lane.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)

        assert set(statuses) <= {200, 503}, sorted(set(statuses))
        records = [await wait_final(store, task_id, within=120) for task_id in acknowledged]
        assert {r.status for r in records} == {"succeeded"}
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT COUNT(*) FROM sytq_llm_tasks WHERE task_id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": acknowledged},
            ).scalar_one()
        assert rows == len(acknowledged)
        # A dequeue or acknowledgement the old master had not replicated is redone on the new one,
        # so a task in flight at the kill may be called again (at-least-once); no other task is.
        by_prompt = stub_llm.stats()["by_prompt"]
        calls = [n for prompt, n in by_prompt.items() if tag in prompt]
        assert max(calls) <= 2
        held = settings.worker_concurrency + settings.effective_worker_prefetch
        assert sum(1 for n in calls if n == 2) <= held
        redis = connect(sentinel_deployment.url)
        try:
            inspector = Inspector(redis)
            states = {(await inspector.get_task("default", t)).state for t in acknowledged}
        finally:
            await redis.aclose()
        assert states == {"completed"}
    finally:
        assert worker.stop() == 0
        await store.close()
        sentinel_deployment.restore()


async def _until_ok(action: Callable[[], Any], within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            await action()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_master_name_is_what_the_url_names(sentinel_deployment: SentinelDeployment) -> None:
    assert parse_sentinel_url(sentinel_deployment.url).master == MASTER_NAME
