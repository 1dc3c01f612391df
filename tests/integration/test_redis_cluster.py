"""The queue engine on a real Redis Cluster: three masters, three replicas (redis-server processes).

Queues are chosen so that they live on different masters: every script must touch one slot, the
multi-queue fetch must reach them all, and the global keys, the inspector and the task-event channel
must work across slots.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from sytq import redis_keys as keys
from sytq.idempotency import IdempotencyKeyReused, IdempotencyStore
from sytq.lease_lock import LeaseLock
from sytq.llm.limiter import SharedLimiter
from sytq.queue import TASK_EVENTS_CHANNEL, Inspector, QueueClient, Task, subscribe
from sytq.queue.redis_ops import RedisOps
from sytq.ratelimit import RateLimiter
from sytq.redis_connect import connect, is_cluster, parse_cluster_url
from sytq.settings import ConfigError, Settings
from sytq.storage import TaskStore
from tests.api.helpers import key_entry
from tests.harness.llm_fixtures import PipelineEnv, StubLLMProcess, WorkerProcess, wait_final
from tests.harness.queue_fixtures import running_server, wait_until
from tests.harness.redis_cluster import RedisClusterDeployment
from tests.harness.redis_tls import Security

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

API_KEY = "cluster-test-key"


def test_cluster_url_is_parsed_with_credentials_tls_and_ipv6() -> None:
    target = parse_cluster_url("rediss+cluster://app:s%40cret@10.0.0.1:7000,[::1]:7001,node-c/")
    assert target.nodes == (("10.0.0.1", 7000), ("::1", 7001), ("node-c", 6379))
    assert (target.username, target.password, target.ssl) == ("app", "s@cret", True)
    assert not parse_cluster_url("redis+cluster://h:1").ssl


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis+cluster://:pw@h:7000/1", "only database 0"),
        ("redis+cluster://h:7000?db=1", "unknown Cluster URL parameter"),
        ("rediss+cluster://h:7000?ssl_cert_reqs=maybe", "none, optional or required"),
        ("rediss+cluster://h:7000?ssl_check_hostname=perhaps", "true or false"),
        ("redis+cluster://:pw@h:port", "bad address"),
        ("redis+cluster://:pw@/", "at least one host"),
    ],
)
def test_bad_cluster_urls_are_config_errors(url: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint) as caught:
        connect(url)
    assert ":pw@" not in str(caught.value)


async def test_connect_opens_a_cluster_client(cluster_client: aioredis.Redis) -> None:
    assert is_cluster(cluster_client)
    await cluster_client.set("sytq:test:{a}", "1")
    await cluster_client.set("sytq:test:{b}", "2")
    assert await cluster_client.get("sytq:test:{a}") == b"1"


async def test_a_connection_cap_applies_per_node_unless_callers_would_wait(
    cluster: RedisClusterDeployment,
) -> None:
    capped, waiting = (
        connect(cluster.url, max_connections=7),
        connect(cluster.url, max_connections=7, wait_for_connection=5),
    )
    try:
        await capped.ping()
        await waiting.ping()
        assert {n.max_connections for n in capped.get_nodes()} == {7}  # type: ignore[attr-defined]
        assert min(n.max_connections for n in waiting.get_nodes()) > 7  # type: ignore[attr-defined]
    finally:
        await capped.aclose()
        await waiting.aclose()


async def test_tasks_of_queues_on_every_master_are_enqueued_run_and_inspected(
    cluster: RedisClusterDeployment, cluster_client: aioredis.Redis
) -> None:
    queues = cluster.queues_on_every_master("spread")
    assert len({cluster.master_of(keys.pending_key(q)).port for q in queues}) == 3
    client, inspector = QueueClient(cluster_client), Inspector(cluster_client)
    events: list[bytes] = []
    subscribed = asyncio.Event()
    listener = asyncio.create_task(
        subscribe(cluster_client, TASK_EVENTS_CHANNEL, events.append, on_subscribed=subscribed.set)
    )
    ran: list[tuple[str, str]] = []

    async def handler(task: Task) -> None:
        ran.append((task.queue, task.id))

    try:
        await asyncio.wait_for(subscribed.wait(), 10)
        infos = [await client.enqueue("noop", b"", queue=q, retention=600) for q in queues for _ in range(4)]
        assert set(await inspector.queues()) >= set(queues)
        async with running_server(cluster_client, {"noop": handler}, queues=dict.fromkeys(queues, 1),
                                  publish_events=True) as server:  # fmt: skip
            await wait_until(lambda: len(ran) == len(infos), within=20)
            await wait_until(lambda: len(events) >= len(infos), within=10)
            servers = await inspector.servers()
            assert any(s.id == server.server_id for s in servers)
        assert sorted(ran) == sorted((i.queue, i.id) for i in infos)
        for queue in queues:
            stats = await inspector.queue_stats(queue)
            assert (stats.pending, stats.active, stats.completed, stats.processed_today) == (0, 0, 4, 4)
        found = await inspector.find_task(infos[-1].id)
        assert found.queue == infos[-1].queue
        assert {json.loads(e)["task_id"] for e in events} >= {i.id for i in infos}
    finally:
        listener.cancel()


async def test_dequeue_takes_queues_in_order_and_stops_at_the_batch_size(
    cluster: RedisClusterDeployment, cluster_client: aioredis.Redis
) -> None:
    queues = cluster.queues_on_every_master("order")
    client, ops = QueueClient(cluster_client), RedisOps(cluster_client)
    for queue in queues:
        for _ in range(3):
            await client.enqueue("noop", b"", queue=queue)
    rows = await ops.dequeue(queues, 5, 2_000_000_000)
    taken = [queues[int(rows[i])] for i in range(0, len(rows), 3)]
    assert taken == [queues[0]] * 3 + [queues[1]] * 2
    stats = [await Inspector(cluster_client).queue_stats(q) for q in queues]
    assert [(s.pending, s.active) for s in stats] == [(0, 3), (1, 2), (3, 0)]


def test_waiting_for_replicas_is_refused_on_a_cluster() -> None:
    with pytest.raises(ValueError, match="not supported on a Redis Cluster"):
        Settings(redis_url="redis+cluster://h:7000", redis_wait_replicas=1)
    assert Settings(redis_url="redis+sentinel://h:1/m", redis_wait_replicas=1).redis_wait_replicas == 1


async def test_pipeline_submit_to_stored_result_through_a_master_kill(
    cluster: RedisClusterDeployment,
    pipeline_env: PipelineEnv,
    stub_llm: StubLLMProcess,
    start_api: Callable[..., Any],
) -> None:
    """API -> cluster -> worker -> MariaDB row, while the master of the ``default`` queue is killed.

    Without WAIT, a submit the dead master answered but had not replicated may be lost (docs/redis.md):
    only submits answered in the last second before the kill may be missing; all others finish once."""
    stub_llm.configure(latency="0.02")
    settings = pipeline_env.settings.model_copy(update={"redis_url": cluster.url})
    api = start_api(redis_url=cluster.url, api_keys=key_entry("php", API_KEY, "submit|read"))
    tag = uuid.uuid4().hex[:12]
    worker = WorkerProcess(settings)
    store = TaskStore.from_url(settings.effective_database_url)
    acknowledged: list[tuple[float, str]] = []
    statuses: list[int] = []
    try:
        async with httpx.AsyncClient(
            base_url=api.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
        ) as http:
            first = await http.post("/api/v1/tasks/llm", json={"prompt": f"cluster {tag} <first>"})
            assert first.status_code == 200, first.text
            record = await wait_final(store, first.json()["task_id"], within=60)
            assert record.status == "succeeded" and record.content
            view = (await http.get(f"/api/v1/tasks/{record.task_id}")).json()
            assert view["result"]["content"] == record.content

            async def submitter(lane: int, until: float) -> None:
                n = 0
                while time.monotonic() < until:
                    n += 1
                    answer = await http.post(
                        "/api/v1/tasks/llm", json={"prompt": f"cluster {tag} <{lane}-{n}>"}
                    )
                    statuses.append(answer.status_code)
                    if answer.status_code == 200:
                        acknowledged.append((time.monotonic(), answer.json()["task_id"]))
                    else:
                        assert answer.headers.get("retry-after"), answer.text
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.01)

            lanes = [asyncio.create_task(submitter(lane, time.monotonic() + 120)) for lane in range(4)]
            try:
                await wait_until(
                    lambda: len(acknowledged) >= 40,
                    within=60,
                    interval=0.05,
                    what="40 submits before the kill",
                )
                master = cluster.master_of(keys.pending_key("default"))
                killed_at = time.monotonic()
                await asyncio.to_thread(cluster.kill_master, master)
                after_failover = len(acknowledged)
                await wait_until(
                    lambda: len(acknowledged) >= after_failover + 40,
                    within=60,
                    interval=0.05,
                    what="submits resume",
                )
            finally:
                for lane in lanes:
                    lane.cancel()
                await asyncio.gather(*lanes, return_exceptions=True)

        assert set(statuses) <= {200, 503}, sorted(set(statuses))
        must_finish = [task_id for at, task_id in acknowledged if at < killed_at - 1.0 or at > killed_at]
        records = [await wait_final(store, task_id, within=120) for task_id in must_finish]
        assert {r.status for r in records} == {"succeeded"}
        by_prompt = stub_llm.stats()["by_prompt"]
        assert max(n for prompt, n in by_prompt.items() if tag in prompt) == 1
    finally:
        assert worker.stop() == 0
        await store.close()
        cluster.restore()


async def test_idempotency_rate_limit_llm_limiter_and_lease_keys_work_across_slots(
    cluster_client: aioredis.Redis,
) -> None:
    store = IdempotencyStore(cluster_client, ttl_seconds=60, secret=b"s")
    claims = [await store.claim(f"client-{i}", "key", "fp") for i in range(6)]  # keys on several masters
    assert all(c.fresh for c in claims)
    assert not (await store.claim("client-0", "key", "fp")).fresh
    with pytest.raises(IdempotencyKeyReused):
        await store.claim("client-1", "key", "other body")

    limiter = RateLimiter(cluster_client, per_minute=2)
    tag = uuid.uuid4().hex
    for client in (f"{tag}-a", f"{tag}-b"):  # a batch over the limit is refused and given back
        assert [(await limiter.hit(client, units)).allowed for units in (3, 2)] == [False, True]

    shared = SharedLimiter(cluster_client, f"p-{tag}", max_in_flight=1, requests_per_minute=10)
    async with shared.slot("m1"), shared.slot("m2"):  # two models: two slots of the cluster's
        assert (await shared.in_flight("m1"), await shared.in_flight("m2")) == (1, 1)
    assert await shared.in_flight("m1") == 0

    key = f"sytq:test-lease:{tag}"
    first, second = LeaseLock(cluster_client, key, 30), LeaseLock(cluster_client, key, 30)
    assert (await first.acquire(), await second.acquire()) == (True, False)
    await first.release()
    assert await second.acquire()


@pytest.fixture(scope="module")
def secure_cluster() -> Iterator[RedisClusterDeployment]:
    deployment = RedisClusterDeployment(masters=3, replicas=1, security=Security.create())
    yield deployment
    deployment.close()


async def test_engine_runs_on_a_cluster_with_tls_and_an_acl_user(
    secure_cluster: RedisClusterDeployment,
) -> None:
    assert secure_cluster.url.startswith("rediss+cluster://app:")
    client = connect(secure_cluster.url, socket_connect_timeout=1.0, socket_timeout=2.0)
    wrong = connect(secure_cluster.url.replace("s3cret", "wrong"), socket_connect_timeout=1.0)
    try:
        with pytest.raises(redis_errors.RedisClusterException, match="invalid username-password"):
            await wrong.ping()
        queues = secure_cluster.queues_on_every_master("tls")
        infos = [await QueueClient(client).enqueue("noop", b"", queue=q) for q in queues]
        ran: list[str] = []

        async def handler(task: Task) -> None:
            ran.append(task.id)

        async with running_server(client, {"noop": handler}, queues=dict.fromkeys(queues, 1)):
            # TLS handshakes are slow on a loaded machine.
            await wait_until(lambda: len(ran) == len(infos), within=60)
        assert sorted(ran) == sorted(i.id for i in infos)
    finally:
        await client.aclose()
        await wrong.aclose()
