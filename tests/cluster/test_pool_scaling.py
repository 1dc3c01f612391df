"""An LLMWorkerPool on the real cluster scales with its queue: from zero pods to several when tasks
arrive (the pods really start and drain the queue), and back to zero once it is empty."""

from __future__ import annotations

import time

import pytest

from tests.harness.kube_cluster_fixtures import Release, apply_pool, delete_quietly, deploy_stub_llm

TASKS = 300
BATCH = 100
PER_REPLICA = 100  # targetBacklogPerReplica: 300 queued -> 3 replicas
MAX_REPLICAS = 3

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]


def test_a_pool_scales_from_zero_to_its_backlog_and_back(helm_release: Release) -> None:
    cluster = helm_release.cluster
    selector = "llm.syt.io/pool=burst"
    try:
        # 1 s per call, 10 calls in flight per pod: one pod would need 30 s for the burst
        stub_url = deploy_stub_llm(helm_release, "burst-llm", "1")
        apply_pool(
            helm_release,
            "burst",
            stub_url,
            queues=[{"name": "burst", "weight": 1}],
            minReplicas=0,
            maxReplicas=MAX_REPLICAS,
            targetBacklogPerReplica=PER_REPLICA,
            scaleDownStabilizationSeconds=5,
            concurrency=10,
        )
        cluster.wait_for(
            "the pool's Deployment at 0 replicas",
            lambda: _replicas(helm_release) == 0,
            timeout=120,
        )
        assert not helm_release.pods(selector)

        started = time.monotonic()
        task_ids: list[str] = []
        for offset in range(0, TASKS, BATCH):
            body = {
                "tasks": [{"prompt": f"burst {i}", "queue": "burst"} for i in range(offset, offset + BATCH)]
            }
            status, answer = helm_release.api("POST", "/api/v1/tasks/llm:batch", body, timeout=60)
            assert status in (200, 201, 202), answer
            task_ids += [item["task_id"] for item in answer["results"] if item["status"] == "enqueued"]
        assert len(task_ids) == TASKS

        ready = cluster.wait_for(
            f"{MAX_REPLICAS} worker pods Ready",
            lambda: len(helm_release.ready_pods(selector)) >= MAX_REPLICAS or None,
            timeout=180,
            interval=0.5,
        )
        print(f"0 -> {MAX_REPLICAS} Ready worker pods in {time.monotonic() - started:.1f}s ({ready})")

        def all_done() -> bool:
            code, answer = helm_release.api("GET", "/api/v1/queues")
            stats = [q for q in answer["queues"] if q["queue"] == "burst"] if code == 200 else []
            return bool(stats) and stats[0]["pending"] == 0 and stats[0]["active"] == 0

        cluster.wait_for("the burst queue drained", all_done, timeout=240, interval=1.0)
        for task_id in task_ids[:: TASKS // 10]:  # a sample: each really answered
            code, view = helm_release.api("GET", f"/api/v1/tasks/{task_id}")
            assert code == 200 and view["state"] == "completed", view

        cluster.wait_for("back to zero replicas", lambda: _replicas(helm_release) == 0, timeout=180)
        cluster.wait_for("the pods terminated", lambda: not helm_release.pods(selector), timeout=180)
    finally:
        delete_quietly(helm_release, "llmworkerpool", "burst")
        delete_quietly(helm_release, "deployment,service", "burst-llm")


def _replicas(release: Release) -> int | None:
    proc = release.cluster.kubectl(
        "get",
        "deployment",
        "burst-worker",
        "-n",
        release.namespace,
        "-o",
        "jsonpath={.spec.replicas}",
        check=False,
    )
    return int(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None
