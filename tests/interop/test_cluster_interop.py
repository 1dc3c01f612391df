"""Go asynq (RedisClusterClientOpt) and our engine on the same real Redis Cluster, both directions.

The queues are spread so that each lives on a different master of the three.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sytq.queue import Inspector, QueueClient, Task, TaskState
from tests.harness.redis_cluster import RedisClusterDeployment
from tests.interop.conftest import AsynqProbe, eventually, our_server


@pytest.fixture
def go_on_cluster(asynqprobe_binary: Path, cluster: RedisClusterDeployment) -> AsynqProbe:
    return AsynqProbe(asynqprobe_binary, cluster.url)


async def test_go_cluster_client_tasks_run_on_our_server(
    cluster: RedisClusterDeployment, cluster_client: aioredis.Redis, go_on_cluster: AsynqProbe
) -> None:
    queues = cluster.queues_on_every_master("gotoours")
    go_tasks = await go_on_cluster.enqueue_ok(
        *({"type": "noop", "payload": f"from go {q} {i}".encode(), "queue": q, "retention": 600}
          for q in queues for i in range(3))
    )  # fmt: skip
    ran: dict[str, bytes] = {}

    async def handler(task: Task) -> None:
        ran[task.id] = task.payload
        await task.write_result(b"ours:" + task.payload)

    async with our_server(cluster_client, {"noop": handler}, queues=dict.fromkeys(queues, 1)) as server:
        await eventually(lambda: len(ran) == len(go_tasks))
        seen_by_go = {s["id"]: s for s in await go_on_cluster.servers()}  # asynq:servers, on one master
        assert seen_by_go[server.server_id]["queues"] == dict.fromkeys(queues, 1)
    assert ran == {t["id"]: t["payload"] for t in go_tasks}
    for task in go_tasks:
        go_view = await eventually(lambda t=task: _completed(go_on_cluster, t["queue"], t["id"]))
        assert go_view["result"] == b"ours:" + task["payload"]
    stats = await go_on_cluster.stats(queues[0])
    assert stats["processed"] >= 3


async def _completed(go: AsynqProbe, queue: str, task_id: str) -> dict[str, object] | None:
    task = await go.task(queue, task_id)
    return task if task["state"] == "completed" else None


async def test_our_tasks_run_on_go_cluster_server(
    cluster: RedisClusterDeployment, cluster_client: aioredis.Redis, go_on_cluster: AsynqProbe
) -> None:
    queues = cluster.queues_on_every_master("ourstogo")
    client = QueueClient(cluster_client)
    sent = [await client.enqueue("noop", f"ours {q} {i}".encode(), queue=q, retention=600)
            for q in queues for i in range(3)]  # fmt: skip
    weights = ",".join(f"{q}=1" for q in queues)
    async with go_on_cluster.serve("--queues", weights, "--count", str(len(sent))) as go:
        events = await go.wait_for(lambda events: any(e["event"] == "stopped" for e in events))
    ran = {e["id"]: e for e in events if e["event"] == "handled"}
    assert sorted(ran) == sorted(t.id for t in sent)
    inspector = Inspector(cluster_client)
    for task in sent:
        assert (ran[task.id]["queue"], ran[task.id]["payload"]) == (task.queue, task.payload)
        info = await inspector.get_task(task.queue, task.id)
        assert (info.state, info.result) == (TaskState.COMPLETED, b"go:" + task.payload)
    assert set(queues) <= set(await inspector.queues())
