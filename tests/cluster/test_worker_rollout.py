"""A rolling update of a pool's worker Deployment under load on the real cluster: the pods are
replaced while 20 s calls are in flight and new tasks keep arriving, and no call is made twice."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.harness.kube_cluster_fixtures import (
    RELEASE_NAMESPACE,
    HostServices,
    Release,
    apply_pool,
    delete_quietly,
    deploy_stub_llm,
    llmtask,
    stub_calls_by_prompt,
)

NAMESPACE = RELEASE_NAMESPACE
POOL = "rolling"
DEPLOYMENT = f"{POOL}-worker"
SELECTOR = f"llm.syt.io/pool={POOL}"
STUB = "rolling-llm"
LATENCY_SECONDS = 20  # each call to the stub: the rollout replaces pods with calls in flight
REPLICAS = 2
CONCURRENCY = 3
STREAM_TASKS = 24  # at most, created one per poll while the rollout runs

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]


def test_rolling_the_worker_deployment_under_load_calls_each_prompt_once(
    helm_release: Release, cluster_services: HostServices
) -> None:
    cluster = helm_release.cluster
    names: list[str] = []

    def submit() -> None:
        name = f"rolling-call-{len(names):03d}"  # fixed width: no prompt contains another
        names.append(name)
        cluster.apply(llmtask(name, _prompt(name), queue=POOL))

    def statuses() -> dict[str, dict[str, Any]]:
        tasks = cluster.get_json("llmtasks", "-n", NAMESPACE)["items"]
        return {t["metadata"]["name"]: t.get("status", {}) for t in tasks if t["metadata"]["name"] in names}

    try:
        stub_url = deploy_stub_llm(helm_release, STUB, str(LATENCY_SECONDS))
        apply_pool(
            helm_release,
            POOL,
            stub_url,
            queues=[{"name": POOL, "weight": 1}],
            minReplicas=REPLICAS,
            maxReplicas=REPLICAS,
            concurrency=CONCURRENCY,
        )
        old_pods = cluster.wait_for(
            f"{REPLICAS} worker pods Ready",
            lambda: (ready := helm_release.ready_pods(SELECTOR)) and len(ready) == REPLICAS and ready,
            timeout=180,
        )
        old_names = {p["metadata"]["name"] for p in old_pods}
        # every slot of both old pods busy: each pod is stopped with calls in flight
        for _ in range(REPLICAS * CONCURRENCY):
            submit()
        cluster.wait_for(
            "every slot of the old pods in flight",
            lambda: [s.get("phase") for s in statuses().values()] == ["Running"] * len(names),
            timeout=90,
        )

        # How a user rolls a pool's pods: change its pod template (the controller owns the
        # Deployment's template and would undo a `kubectl rollout restart` on its next update).
        rolled_at = str(time.time_ns())
        patch = {"spec": {"podAnnotations": {"example.com/rolled-at": rolled_at}}}
        cluster.kubectl(
            "patch", "llmworkerpool", POOL, "-n", NAMESPACE, "--type=merge", "-p", json.dumps(patch)
        )

        def old_pods_gone() -> bool:
            return not old_names & {p["metadata"]["name"] for p in helm_release.pods(SELECTOR)}

        def rollout_done() -> bool:
            if len(names) < REPLICAS * CONCURRENCY + STREAM_TASKS:
                submit()  # the steady stream: one new task per poll until the old pods are gone
            deployment = cluster.get_json("deployment", DEPLOYMENT, "-n", NAMESPACE)
            template = deployment["spec"]["template"]["metadata"].get("annotations") or {}
            status = deployment.get("status", {})
            return (
                template.get("example.com/rolled-at") == rolled_at
                and status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
                and status.get("updatedReplicas") == REPLICAS
                and status.get("availableReplicas") == REPLICAS
                and status.get("replicas") == REPLICAS
                and old_pods_gone()
            )

        started = time.monotonic()
        cluster.wait_for(
            "the rollout to finish and the old pods to end", rollout_done, timeout=180, interval=2.0
        )
        rollout_seconds = time.monotonic() - started
        rollout = cluster.kubectl(
            "rollout", "status", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE, "--timeout=5s"
        )
        assert "successfully rolled out" in rollout.stdout, rollout.stdout
        new_names = {p["metadata"]["name"] for p in helm_release.ready_pods(SELECTOR)}
        assert len(new_names) == REPLICAS and not new_names & old_names
        print(f"rollout of {REPLICAS} pods under load in {rollout_seconds:.1f}s, {len(names)} tasks")

        cluster.wait_for(
            "every task Succeeded",
            lambda: [s.get("phase") for s in statuses().values()] == ["Succeeded"] * len(names),
            timeout=180,
            interval=1.0,
        )
        final = statuses()
        assert sorted(final) == sorted(names)
        by_prompt = stub_calls_by_prompt(helm_release, STUB)
        for name, status in final.items():
            # one attempt, one call at the provider, one stored row: nothing cancelled and re-billed
            assert status["attempts"] == 1, (name, status)
            calls = sum(n for prompt, n in by_prompt.items() if _prompt(name) in prompt)
            assert calls == 1, (name, calls)
            row = cluster_services.mariadb.fetch_one(
                "SELECT COUNT(*) AS n, MAX(status) AS status FROM sytq_llm_tasks WHERE task_id = %s",
                "sytq_helm",
                status["taskId"],
            )
            assert row == {"n": 1, "status": "succeeded"}, (name, status, row)
    finally:
        delete_quietly(helm_release, "llmworkerpool", POOL)
        delete_quietly(helm_release, "deployment,service", STUB)
        delete_quietly(helm_release, "llmtasks", *names)


def _prompt(name: str) -> str:
    return f"rolled call {name}"
