"""Two controller replicas on the real cluster: killing the active one (kopf peering) hands the
work to the standby, which brings a new LLMTask to Succeeded."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.kube_cluster_fixtures import RELEASE_NAMESPACE, Release, delete_quietly, llmtask

NAMESPACE = RELEASE_NAMESPACE
CONTROLLER = "deployment/syt-queue-controller"
SELECTOR = "app.kubernetes.io/component=controller"

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]


def _active_controller(release: Release, pod_names: list[str]) -> str | None:
    """The pod whose peering entry has the highest priority (kopf pauses the others), once both
    replicas have announced themselves."""
    peering: dict[str, Any] = release.cluster.get_json("kopfpeering", "syt-queue", "-n", NAMESPACE)
    peers = peering.get("status") or {}
    owners = {name: entry["priority"] for name in pod_names for pid, entry in peers.items() if name in pid}
    return max(owners, key=lambda name: owners[name]) if len(owners) == len(pod_names) else None


def test_killing_the_active_controller_hands_over_to_the_standby(helm_release: Release) -> None:
    cluster = helm_release.cluster
    try:
        cluster.kubectl("scale", CONTROLLER, "--replicas=2", "-n", NAMESPACE)
        pods = cluster.wait_for(
            "two controller pods Ready",
            lambda: (ready := helm_release.ready_pods(SELECTOR)) and len(ready) == 2 and ready,
            timeout=180,
        )
        names = [p["metadata"]["name"] for p in pods]
        active = cluster.wait_for(
            "both replicas in the peering", lambda: _active_controller(helm_release, names), timeout=60
        )
        cluster.kubectl("delete", "pod", active, "-n", NAMESPACE, "--grace-period=0", "--force")

        cluster.apply(llmtask("after-failover", "still served?"))

        def succeeded() -> bool:
            task = cluster.get_json("llmtask", "after-failover", "-n", NAMESPACE)
            return bool(task.get("status", {}).get("phase") == "Succeeded")

        # the standby resumes once the killed peer's entry expires (20 s lifetime)
        cluster.wait_for("the LLMTask Succeeded after the failover", succeeded, timeout=120, interval=1.0)
    finally:
        cluster.kubectl("scale", CONTROLLER, "--replicas=1", "-n", NAMESPACE, check=False)
        delete_quietly(helm_release, "llmtask", "after-failover")
        # the release as the other tests expect it: one controller pod, Ready
        cluster.wait_for(
            "one controller pod again",
            lambda: len(helm_release.pods(SELECTOR)) == 1 == len(helm_release.ready_pods(SELECTOR)),
            timeout=120,
        )
