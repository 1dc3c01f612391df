"""The chart on a real single-node cluster: `helm install` with our image, pods Running and Ready,
the API answering through its Service, the example LLMTask run by a worker pod, and an
LLMWorkerPool's Deployment and pods garbage-collected with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.harness.kube_cluster_fixtures import (
    RELEASE_NAMESPACE,
    Release,
    pod_ready,
    worker_tasks_processed,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "llmtask.yaml"
NAMESPACE = RELEASE_NAMESPACE

# Builds the image and starts the cluster when first needed (minutes when cold).
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]


@pytest.fixture
def release(helm_release: Release) -> Release:
    return helm_release


@pytest.mark.parametrize("component", ["api", "controller", "worker", "stub-llm"])
def test_helm_install_runs_every_component_in_ready_pods(release: Release, component: str) -> None:
    pods = release.pods(f"app.kubernetes.io/component={component}")
    assert pods, f"no {component} pod"
    for pod in pods:
        assert pod_ready(pod), json.dumps(pod["status"], indent=1)
        statuses = pod["status"]["containerStatuses"]
        assert all(s["ready"] and "running" in s["state"] for s in statuses)
        assert pod["spec"]["nodeName"] == "sytq-node"
        assert pod["status"]["podIP"].startswith("10.244.0.")


def test_api_answers_through_its_service_and_a_worker_pod_runs_the_task(release: Release) -> None:
    status, body = release.api("GET", "/readyz")
    assert status == 200, body
    status, accepted = release.api("POST", "/api/v1/tasks/llm", {"prompt": "hello from the cluster test"})
    assert status in (200, 201, 202), accepted
    task_id = accepted["task_id"] if "task_id" in accepted else accepted["id"]

    def finished() -> dict[str, object] | None:
        code, view = release.api("GET", f"/api/v1/tasks/{task_id}")
        return view if code == 200 and view.get("state") in ("completed", "succeeded", "archived") else None

    view = release.cluster.wait_for(f"task {task_id} to finish", finished, timeout=120)
    assert view["state"] in ("completed", "succeeded"), view


def test_example_llmtask_succeeds_on_a_worker_pod(release: Release) -> None:
    cluster = release.cluster
    name = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]
    processed_before = worker_tasks_processed(release)
    cluster.kubectl("apply", "-f", str(EXAMPLE))

    def succeeded() -> dict[str, object] | None:
        task = cluster.get_json("llmtask", name, "-n", NAMESPACE)
        return task if task.get("status", {}).get("phase") == "Succeeded" else None

    task = cluster.wait_for(f"LLMTask {name} Succeeded", succeeded, timeout=120)
    assert task["status"]["usage"]["totalTokens"] > 0
    listed = cluster.kubectl("get", "llmtasks", "-n", NAMESPACE).stdout
    assert name in listed and "Succeeded" in listed
    # the only workers are the pool's pods: their own counter says one of them ran it
    assert worker_tasks_processed(release) > processed_before


def test_deleting_a_pool_garbage_collects_its_deployment_and_pods(release: Release) -> None:
    cluster = release.cluster
    pool = cluster.get_json("llmworkerpool", "default", "-n", NAMESPACE)
    spec = {**pool["spec"], "minReplicas": 1, "maxReplicas": 1}
    cluster.apply(
        {
            "apiVersion": "llm.syt.io/v1alpha1",
            "kind": "LLMWorkerPool",
            "metadata": {"name": "doomed", "namespace": NAMESPACE},
            "spec": spec,
        }
    )
    selector = "llm.syt.io/pool=doomed"
    cluster.wait_for("the doomed pool's pod Ready", lambda: release.ready_pods(selector), timeout=180)
    deployment = cluster.get_json("deployment", "doomed-worker", "-n", NAMESPACE)
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("LLMWorkerPool", "doomed")

    cluster.kubectl("delete", "llmworkerpool", "doomed", "-n", NAMESPACE, "--wait=false")

    def collected() -> bool:
        gone = cluster.kubectl("get", "deployment", "doomed-worker", "-n", NAMESPACE, check=False)
        return gone.returncode != 0 and not release.pods(selector)

    cluster.wait_for("the Deployment and pods to be garbage-collected", collected, timeout=180)
    assert release.ready_pods("llm.syt.io/pool=default"), "the release's own pool was touched"
