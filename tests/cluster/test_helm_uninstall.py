"""`helm uninstall` on the real cluster removes the controller and the chart's pool together:
nothing of the release may be left Terminating, waiting for a controller that is gone."""

from __future__ import annotations

import pytest

from tests.harness.cluster import KubeCluster
from tests.harness.kube_cluster_fixtures import HostServices, chart_values, helm_install, llmtask

NAMESPACE = "sytq-uninstall"
RELEASE = "gone"

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]


def test_helm_uninstall_leaves_nothing_terminating(
    kube_cluster: KubeCluster, cluster_image: str, cluster_services: HostServices
) -> None:
    cluster = kube_cluster
    cluster.create_namespace(NAMESPACE)
    cluster_services.wire(cluster, NAMESPACE)
    values = chart_values(cluster_image, cluster_services, database="sytq_uninstall")
    release = helm_install(cluster, RELEASE, NAMESPACE, values)
    namespace = ("-n", NAMESPACE)
    try:
        # a task run end to end first, so the pool's autoscale timer and the mirror have both run
        cluster.apply(llmtask("before-uninstall", "one task before the uninstall", namespace=NAMESPACE))

        def succeeded() -> bool:
            task = cluster.get_json("llmtask", "before-uninstall", *namespace)
            return bool(task.get("status", {}).get("phase") == "Succeeded")

        cluster.wait_for("the LLMTask Succeeded", succeeded, timeout=180)
        pools = cluster.get_json("llmworkerpools", *namespace)["items"]
        assert [p["metadata"]["name"] for p in pools] == ["default"]
        assert "replicas" in pools[0].get("status", {}), pools[0].get("status")  # the timer ran
        assert release.ready_pods("llm.syt.io/pool=default")

        # the documented order: LLMTasks first, while the controller runs; then the release
        cluster.kubectl("delete", "llmtasks", "--all", *namespace, "--timeout=60s", timeout=90)
        cluster.helm("uninstall", RELEASE, *namespace, "--wait", "--timeout=120s", timeout=150)

        def leftovers() -> list[str]:
            found = cluster.get_json("llmworkerpools,llmtasks,deployments,pods", *namespace)["items"]
            return [f"{o['kind']}/{o['metadata']['name']}" for o in found]

        cluster.wait_for("no pool, task, Deployment or pod left", lambda: not leftovers(), timeout=180)
        cluster.kubectl("delete", "namespace", NAMESPACE, "--timeout=120s", timeout=150)
        gone = cluster.kubectl("get", "namespace", NAMESPACE, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stdout
    finally:
        leftover = cluster.kubectl("get", "namespace", NAMESPACE, check=False)
        if leftover.returncode == 0:
            cluster.helm("uninstall", RELEASE, *namespace, "--timeout=60s", check=False, timeout=90)
            cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
