"""Stopping a worker pod on the real cluster: its calls in flight finish within the pod's grace
period instead of being cancelled and paid for again by another worker."""

from __future__ import annotations

import time

import pytest

from tests.harness.kube_cluster_fixtures import (
    RELEASE_NAMESPACE,
    Release,
    apply_pool,
    delete_quietly,
    deploy_stub_llm,
    llmtask,
    stub_calls_by_prompt,
)

NAMESPACE = RELEASE_NAMESPACE
LATENCY_SECONDS = 20  # each call to the slow stub; far above the worker's old 8 s shutdown wait
TASKS = 3

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]


def test_a_stopped_worker_pod_finishes_its_calls_in_flight(helm_release: Release) -> None:
    cluster = helm_release.cluster
    try:
        stub_url = deploy_stub_llm(helm_release, "slow-llm", str(LATENCY_SECONDS))
        queues = [{"name": "slow", "weight": 1}]
        apply_pool(helm_release, "slow", stub_url, queues=queues, minReplicas=1, maxReplicas=1)
        pods = cluster.wait_for(
            "the slow pool's pod Ready", lambda: helm_release.ready_pods("llm.syt.io/pool=slow"), timeout=180
        )
        worker = pods[0]["metadata"]["name"]
        names = [f"slow-call-{i}" for i in range(TASKS)]
        cluster.apply([llmtask(name, f"slow call {name}", queue="slow") for name in names])

        def phases() -> list[str]:
            tasks = cluster.get_json("llmtasks", "-n", NAMESPACE)["items"]
            return [t.get("status", {}).get("phase", "") for t in tasks if t["metadata"]["name"] in names]

        cluster.wait_for("every call in flight", lambda: phases() == ["Running"] * TASKS, timeout=60)
        stopped_at = time.monotonic()
        cluster.kubectl("delete", "pod", worker, "-n", NAMESPACE, "--wait=false")

        cluster.wait_for("every task Succeeded", lambda: phases() == ["Succeeded"] * TASKS, timeout=150)
        by_prompt = stub_calls_by_prompt(helm_release, "slow-llm")
        for name in names:
            status = cluster.get_json("llmtask", name, "-n", NAMESPACE)["status"]
            # one attempt and one call at the provider: the call was not cancelled by the shutdown
            # and paid for again elsewhere (a shutdown's cancel puts the task back without counting
            # an attempt, so only the provider's count shows a second call)
            assert status["attempts"] == 1, status
            calls = sum(n for prompt, n in by_prompt.items() if f"slow call {name}" in prompt)
            assert calls == 1, (name, calls)

        def pod_gone() -> bool:
            return cluster.kubectl("get", "pod", worker, "-n", NAMESPACE, check=False).returncode != 0

        cluster.wait_for("the stopped pod gone", pod_gone, timeout=150)
        # it stayed until its calls had answered, not a moment beyond the grace period
        assert time.monotonic() - stopped_at < 120
    finally:
        delete_quietly(helm_release, "llmworkerpool", "slow")
        delete_quietly(helm_release, "deployment,service", "slow-llm")
        delete_quietly(helm_release, "llmtasks", "--all")
