"""LLMWorkerPool: the controller owns a worker Deployment and sizes it from queue depth."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis

from sytq.k8s_resources import LLMTASK_FINALIZER
from sytq.queue import EnqueueRequest, QueueClient
from tests.harness.operator_fixtures import NAMESPACE, OperatorEnv, manifest_pool_policy, wait_until

QUEUE = "scale-q"
IMAGE = manifest_pool_policy()["SYTQ_CONTROLLER_POOL_IMAGES"]  # what the manifests' pool policy allows


def pool(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "llm.syt.io/v1alpha1",
        "kind": "LLMWorkerPool",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"image": IMAGE, "serviceAccountName": "syt-queue-worker", **spec},
    }


def deployment(env: OperatorEnv, name: str) -> dict[str, Any] | None:
    got = env.kubectl("get", "deployment", name, "-o", "json", check=False)
    return json.loads(got.stdout) if got.returncode == 0 else None


def replicas(env: OperatorEnv, name: str) -> int | None:
    dep = deployment(env, name)
    return None if dep is None else int(dep["spec"]["replicas"])


async def enqueue(url: str, count: int) -> None:
    client = aioredis.Redis.from_url(url)
    requests = [
        EnqueueRequest(
            type="llm:chat",
            queue=QUEUE,
            payload=json.dumps(
                {"model": "deepseek-chat", "messages": [{"role": "user", "content": f"scale {i}"}]}
            ).encode(),
        )
        for i in range(count)
    ]
    await QueueClient(client).enqueue_many(requests)
    await client.aclose()


def test_pool_scales_to_max_under_backlog_and_back_to_zero_when_drained(operator_env: OperatorEnv) -> None:
    env = operator_env
    controller = env.start_controller()
    env.apply(
        pool(
            "scaler",
            queues=[{"name": QUEUE, "weight": 2}],
            concurrency=7,
            minReplicas=0,
            maxReplicas=4,
            targetBacklogPerReplica=50,
            scaleDownStabilizationSeconds=3,
        )
    )
    wait_until(
        lambda: replicas(env, "scaler-worker") == 0,
        30,
        lambda: f"Deployment at min; log:\n{controller.log()}",
    )

    dep = deployment(env, "scaler-worker")
    assert dep is not None
    owner = dep["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner.get("controller")) == ("LLMWorkerPool", "scaler", True)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env_vars = {e["name"]: e.get("value") for e in container["env"]}
    assert container["args"] == ["worker"] and container["image"] == IMAGE
    assert env_vars["SYTQ_QUEUES"] == f"{QUEUE}=2" and env_vars["SYTQ_WORKER_CONCURRENCY"] == "7"
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True

    asyncio.run(enqueue(env.redis_url, 500))
    wait_until(
        lambda: replicas(env, "scaler-worker") == 4, 30, lambda: f"scaled to max; log:\n{controller.log()}"
    )
    status = env.kubectl("get", "llmworkerpool", "scaler", "-o", "json").stdout
    status_obj = json.loads(status)["status"]
    assert status_obj["queueDepth"] == 500 and status_obj["replicas"] == 4
    assert status_obj["desiredReplicas"] == 4  # 500 / 50 = 10, capped at maxReplicas
    assert status_obj["lastScaleTime"]
    table = env.kubectl("get", "llmworkerpools", "scaler").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "MIN",
        "MAX",
        "DESIRED",
        "REPLICAS",
        "QUEUE-DEPTH",
        "IN-FLIGHT",
        "AGE",
    ]
    assert table[1].split()[:7] == ["scaler", "0", "4", "4", "4", "500", "0"]

    env.start_stub()
    env.start_worker(queues=f"{QUEUE}=1", concurrency=100)
    wait_until(
        lambda: replicas(env, "scaler-worker") == 0, 60, lambda: f"back to zero; log:\n{controller.log()}"
    )
    final = json.loads(env.kubectl("get", "llmworkerpool", "scaler", "-o", "json").stdout)["status"]
    assert final["queueDepth"] == 0 and final["replicas"] == 0
    expected = {"DeploymentCreated", "ScaledUp", "ScaledDown"}
    assert expected <= env.events_once_posted("scaler", expected)


def test_scale_down_waits_for_the_stabilization_window(operator_env: OperatorEnv) -> None:
    env = operator_env
    controller = env.start_controller()
    env.apply(
        pool(
            "steady",
            queues=[{"name": QUEUE}],
            minReplicas=1,
            maxReplicas=3,
            targetBacklogPerReplica=10,
            scaleDownStabilizationSeconds=600,
        )
    )
    asyncio.run(enqueue(env.redis_url, 25))
    wait_until(
        lambda: replicas(env, "steady-worker") == 3, 30, lambda: f"scaled up; log:\n{controller.log()}"
    )
    import redis

    redis.Redis.from_url(env.redis_url).flushall()  # the backlog vanishes at once
    wait_until(
        lambda: (
            json.loads(env.kubectl("get", "llmworkerpool", "steady", "-o", "json").stdout)["status"].get(
                "queueDepth"
            )
            == 0
        ),
        30,
        "depth 0 seen",
    )
    assert replicas(env, "steady-worker") == 3  # held within the 600 s window
    env.kubectl(
        "patch",
        "llmworkerpool",
        "steady",
        "--type=merge",
        "-p",
        '{"spec":{"scaleDownStabilizationSeconds":0}}',
    )
    wait_until(
        lambda: replicas(env, "steady-worker") == 1, 30, lambda: f"down to min; log:\n{controller.log()}"
    )


def test_callbacks_waiting_keep_a_pool_from_zero(operator_env: OperatorEnv) -> None:
    """Workers also deliver callbacks from their own queue: a pool idle on its LLM queues but with
    callbacks waiting must keep a replica, or the callbacks wait for the next LLM task."""
    env = operator_env
    controller = env.start_controller()
    env.apply(
        pool(
            "deliverer",
            queues=[{"name": QUEUE}],
            minReplicas=0,
            maxReplicas=2,
            targetBacklogPerReplica=50,
            scaleDownStabilizationSeconds=0,
        )
    )
    wait_until(
        lambda: replicas(env, "deliverer-worker") == 0, 30, lambda: f"idle at zero; log:\n{controller.log()}"
    )

    async def enqueue_callback() -> None:
        client = aioredis.Redis.from_url(env.redis_url)
        request = EnqueueRequest(type="callback:deliver", queue="callbacks", payload=b'{"task_id":"x"}')
        await QueueClient(client).enqueue_many([request])
        await client.aclose()

    asyncio.run(enqueue_callback())
    wait_until(
        lambda: replicas(env, "deliverer-worker") == 1,
        30,
        lambda: f"woken by a callback; log:\n{controller.log()}",
    )
    import redis

    redis.Redis.from_url(env.redis_url).delete("asynq:{callbacks}:pending")
    wait_until(
        lambda: replicas(env, "deliverer-worker") == 0, 30, lambda: f"back to zero; log:\n{controller.log()}"
    )


def test_a_pool_carries_no_finalizer_and_is_deleted_without_its_controller(operator_env: OperatorEnv) -> None:
    """``helm uninstall`` deletes the controller and the chart's pool together: nothing may be left
    waiting for a controller that is gone. A pool made by an older controller loses its finalizer."""
    env = operator_env
    controller = env.start_controller()
    env.apply(pool("orphan", queues=[{"name": QUEUE, "weight": 1}], minReplicas=0, maxReplicas=2))
    older = pool("older", queues=[{"name": QUEUE, "weight": 1}], minReplicas=0, maxReplicas=2)
    older["metadata"]["finalizers"] = [LLMTASK_FINALIZER]  # what the controller used to put on
    env.apply(older)

    def polled(name: str) -> dict[str, Any]:
        return dict(json.loads(env.kubectl("get", "llmworkerpool", name, "-o", "json").stdout))

    # status.replicas is written by the autoscale timer: it has run for both pools
    wait_until(
        lambda: all("replicas" in polled(n).get("status", {}) for n in ("orphan", "older")),
        30,
        lambda: f"both pools polled; log:\n{controller.log()}",
    )
    assert not polled("orphan")["metadata"].get("finalizers")
    wait_until(
        lambda: not polled("older")["metadata"].get("finalizers"),
        30,
        lambda: f"the older pool's finalizer taken off; log:\n{controller.log()}",
    )
    assert deployment(env, "orphan-worker") is not None

    controller.stop()
    for name in ("orphan", "older"):
        deleted = env.kubectl("delete", "llmworkerpool", name, "--timeout=20s", check=False)
        assert deleted.returncode == 0, deleted.stderr
        gone = env.kubectl("get", "llmworkerpool", name, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stdout
