"""The plain manifests on the real cluster, installed the way docs/operator.md tells a user
(21-secret.yaml and the ConfigMap edited, `kubectl apply -f manifests/`, then `manifests/custom/`):
API and controller pods Running and Ready, the API answering through its Service, the example
LLMTask run by a pod of the default pool, and `kubectl delete -f` removing everything again.

The manifests' names are fixed (namespace syt-queue, the CRDs) and the Helm release of the other
tests uses the same namespace and CRDs, so this module runs before any test that installs the
chart (tests/cluster/conftest.py) and its last test deletes what it applied."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.cluster import KubeCluster
from tests.harness.kube import REPO_ROOT
from tests.harness.kube_cluster_fixtures import (
    API_KEY,
    HostServices,
    Release,
    api_keys_setting,
    deploy_stub_llm,
    pod_ready,
    worker_tasks_processed,
)

MANIFESTS = REPO_ROOT / "manifests"
EXAMPLE = MANIFESTS / "examples" / "llmtask.yaml"
NAMESPACE = "syt-queue"  # fixed in every manifest
CRD_LABEL = "app.kubernetes.io/part-of=syt-queue"
STUB = "stub-llm"

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]


def _manifest_image() -> str:
    api = yaml.safe_load((MANIFESTS / "30-api.yaml").read_text().split("\n---\n")[0])
    return str(api["spec"]["template"]["spec"]["containers"][0]["image"])


def _edited_copy(target: Path, services: HostServices) -> Path:
    """manifests/ as a user edits it: 21-secret.yaml with the real connection strings and keys,
    the ConfigMap's provider URL pointing at the stub LLM (no provider is reachable here)."""
    shutil.copytree(MANIFESTS, target, ignore=shutil.ignore_patterns("examples"))
    secret_file = target / "21-secret.yaml"
    secret = yaml.safe_load(secret_file.read_text())
    secret["stringData"] = {
        "DEEPSEEK_API_KEY": "sk-stub",
        "SYTQ_REDIS_URL": services.redis_url_in_cluster(db=3),
        "SYTQ_DATABASE_URL": services.database_url_in_cluster("sytq_manifests"),
        "SYTQ_CALLBACK_SECRET": "manifests-test-callback-secret-0123456789",
        "SYTQ_API_KEYS": api_keys_setting(API_KEY),
    }
    secret_file.write_text(yaml.safe_dump(secret))
    config_file = target / "20-configmap.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["data"]["SYTQ_LLM_BASE_URL"] = f"http://{STUB}:8081"
    config_file.write_text(yaml.safe_dump(config))
    return target


def _delete_all(cluster: KubeCluster, manifests: Path, check: bool) -> None:
    """The documented order: tasks and pools while the controller still runs to release their
    finalizers, then the rest."""
    namespace = ("-n", NAMESPACE)
    quietly = ("--ignore-not-found", "--timeout=120s")
    cluster.kubectl("delete", "llmtasks", "--all", *namespace, *quietly, check=check, timeout=150)
    cluster.kubectl("delete", "-f", str(manifests / "custom"), *quietly, check=check, timeout=150)
    cluster.kubectl("delete", "-f", str(manifests), *quietly, check=check, timeout=150)


@pytest.fixture(scope="module")
def manifests_dir(
    kube_cluster: KubeCluster, cluster_image: str, cluster_services: HostServices, tmp_path_factory: Any
) -> Iterator[Path]:
    cluster = kube_cluster
    releases = cluster.helm("list", "-n", NAMESPACE, "-q").stdout.split()
    assert not releases, f"a Helm release {releases} holds namespace {NAMESPACE}: run this module first"
    # The image under the name the manifests use, as a registry mirror or `kind load` would provide it.
    cluster.ctr("images", "tag", "--force", cluster_image, _manifest_image())
    manifests = _edited_copy(tmp_path_factory.mktemp("sytq") / "manifests", cluster_services)
    cluster.kubectl("apply", "-f", str(manifests / "00-namespace.yaml"))
    cluster_services.wire(cluster, NAMESPACE)  # Redis and MariaDB: the user's, outside the manifests
    try:
        yield manifests
    finally:
        if cluster.kubectl("get", "namespace", NAMESPACE, check=False).returncode == 0:
            _delete_all(cluster, manifests, check=False)


@pytest.fixture(scope="module")
def installed(kube_cluster: KubeCluster, manifests_dir: Path) -> Release:
    cluster = kube_cluster
    install = Release(cluster, "syt-queue", NAMESPACE, values={})  # Service syt-queue-api, as in the chart
    deploy_stub_llm(install, STUB, "0.2", image=_manifest_image())
    cluster.kubectl("apply", "-f", str(manifests_dir))
    cluster.kubectl("wait", "--for", "condition=established", "crd", "-l", CRD_LABEL, "--timeout=60s")
    # Right after the first apply the admission policy may not see its ConfigMap yet and refuses
    # every pool ("no params found"): the docs say to apply manifests/custom/ again.
    cluster.wait_for(
        "manifests/custom/ applied",
        lambda: cluster.kubectl("apply", "-f", str(manifests_dir / "custom"), check=False).returncode == 0,
        timeout=60,
        interval=1.0,
    )

    def deployments_ready() -> bool:
        deployments = cluster.get_json("deployments", "-n", NAMESPACE)["items"]
        wanted = {f"syt-queue-{c}" for c in ("api", "controller")}
        ready = {
            d["metadata"]["name"]
            for d in deployments
            if (d.get("status", {}).get("readyReplicas") or 0) >= d["spec"]["replicas"]
        }
        return wanted <= ready

    cluster.wait_for("the manifests' API and controller Ready", deployments_ready, timeout=240)
    return install


@pytest.mark.parametrize("component", ["api", "controller"])
def test_manifests_run_api_and_controller_in_ready_pods(installed: Release, component: str) -> None:
    pods = installed.pods(f"app.kubernetes.io/component={component}")
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]  # the manifests' two replicas
    for pod in pods:
        assert pod_ready(pod), pod["status"]
        assert all(s["ready"] and "running" in s["state"] for s in pod["status"]["containerStatuses"])
        assert pod["spec"]["containers"][0]["image"] == _manifest_image()


def test_the_manifests_api_answers_through_its_service(installed: Release) -> None:
    status, body = installed.api("GET", "/readyz")
    assert status == 200, body
    status, body = installed.api("GET", "/api/v1/queues")
    assert status == 200 and isinstance(body["queues"], list), body


def test_example_llmtask_succeeds_on_a_pod_of_the_default_pool(installed: Release) -> None:
    cluster = installed.cluster
    name = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]
    cluster.kubectl("apply", "-f", str(EXAMPLE))  # as shipped, unedited

    def succeeded() -> dict[str, Any] | None:
        task = cluster.get_json("llmtask", name, "-n", NAMESPACE)
        return task if task.get("status", {}).get("phase") == "Succeeded" else None

    # the default pool has minReplicas 0: the backlog brings up its first pod
    task = cluster.wait_for(f"LLMTask {name} Succeeded", succeeded, timeout=240, interval=1.0)
    assert task["status"]["attempts"] == 1 and task["status"]["usage"]["totalTokens"] > 0, task["status"]
    listed = cluster.kubectl("get", "llmtasks", "-n", NAMESPACE).stdout
    assert name in listed and "Succeeded" in listed, listed
    # The pool's pods are the only workers: their own counter says one of them ran it (read once
    # the pod is Ready: a worker takes tasks before its readiness probe has passed).
    cluster.wait_for(
        "a default-pool pod counting the task", lambda: worker_tasks_processed(installed, "default") >= 1
    )


def test_kubectl_delete_removes_everything_the_manifests_applied(
    installed: Release, manifests_dir: Path
) -> None:
    cluster = installed.cluster
    try:
        _delete_all(cluster, manifests_dir, check=True)
    except Exception:
        logs = cluster.kubectl(
            "logs",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/component=controller",
            "--tail=80",
            "--prefix",
            check=False,
        )
        print(logs.stdout[-12000:], logs.stderr[-2000:])
        print(
            cluster.kubectl("get", "llmtasks,llmworkerpools", "-A", "-o", "yaml", check=False).stdout[-6000:]
        )
        raise

    def gone() -> bool:
        namespace = cluster.kubectl("get", "namespace", NAMESPACE, check=False)
        crds = cluster.kubectl("get", "crd", "-l", CRD_LABEL, "-o", "name").stdout.strip()
        policy = cluster.kubectl(
            "get", "validatingadmissionpolicy", "syt-queue-llmworkerpool", check=False
        ).returncode
        return namespace.returncode != 0 and not crds and policy != 0

    cluster.wait_for("namespace, CRDs and admission policy gone", gone, timeout=120)
    leftovers = cluster.kubectl("get", "pods", "-A", "-o", "wide").stdout
    assert f"\n{NAMESPACE} " not in leftovers, leftovers
    assert "Terminating" not in cluster.kubectl("get", "namespaces").stdout
