"""A worker pod killed outright (`kubectl delete pod --grace-period=0 --force`) with calls in flight:
its tasks are recovered by the pool's next pod once their leases end, and each finishes once, with
one stored row."""

from __future__ import annotations

import pytest

from tests.harness.kube_cluster_fixtures import (
    RELEASE_NAMESPACE,
    HostServices,
    Release,
    apply_pool,
    delete_quietly,
    deploy_stub_llm,
    llmtask,
)

NAMESPACE = RELEASE_NAMESPACE
TASKS = 3

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]


def test_tasks_of_a_force_deleted_worker_pod_finish_once(
    helm_release: Release, cluster_services: HostServices
) -> None:
    cluster = helm_release.cluster
    try:
        stub_url = deploy_stub_llm(helm_release, "kill-llm", "5")
        apply_pool(
            helm_release,
            "killed",
            stub_url,
            queues=[{"name": "killed", "weight": 1}],
            minReplicas=1,
            maxReplicas=1,
        )
        pods = cluster.wait_for(
            "the pool's pod Ready", lambda: helm_release.ready_pods("llm.syt.io/pool=killed"), timeout=180
        )
        victim = pods[0]["metadata"]["name"]
        names = [f"killed-call-{i}" for i in range(TASKS)]
        cluster.apply([llmtask(name, f"call {name}", queue="killed") for name in names])

        def statuses() -> list[dict[str, object]]:
            tasks = cluster.get_json("llmtasks", "-n", NAMESPACE)["items"]
            return [t.get("status", {}) for t in tasks if t["metadata"]["name"] in names]

        cluster.wait_for(
            "every call in flight", lambda: [s.get("phase") for s in statuses()] == ["Running"] * TASKS
        )
        cluster.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--grace-period=0", "--force")

        # recovered after the lease (30 s + 5 s grace) by the Deployment's replacement pod
        cluster.wait_for(
            "every task Succeeded",
            lambda: [s.get("phase") for s in statuses()] == ["Succeeded"] * TASKS,
            timeout=180,
            interval=1.0,
        )
        for status in statuses():
            row = cluster_services.mariadb.fetch_one(
                "SELECT COUNT(*) AS n, MAX(status) AS status FROM sytq_llm_tasks WHERE task_id = %s",
                "sytq_helm",
                status["taskId"],
            )
            assert row == {"n": 1, "status": "succeeded"}, (status, row)
    finally:
        delete_quietly(helm_release, "llmworkerpool", "killed")
        delete_quietly(helm_release, "deployment,service", "kill-llm")
        delete_quietly(helm_release, "llmtasks", "--all")
