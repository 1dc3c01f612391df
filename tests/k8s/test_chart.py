"""charts/syt-queue: lint, template with default and other values, install into the apiserver."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.kube import KubeControlPlane
from tests.harness.operator_fixtures import MANIFESTS

CHART = Path(__file__).resolve().parents[2] / "charts" / "syt-queue"
NON_DEFAULT = [
    "--set",
    "keda.enabled=true",
    "--set",
    "workerPool.enabled=false",
    "--set",
    "ingress.enabled=true",
    "--set",
    "ingress.className=nginx",
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "secrets.existingSecret=my-secrets",
    "--set",
    "api.resourceMode=true",
    "--set",
    "controller.watchNamespaces={team-a,team-b}",
    "--set",
    "api.service.type=NodePort",
    "--set",
    "api.service.nodePort=30080",
]


def render(kube: KubeControlPlane, *args: str) -> list[dict[str, Any]]:
    out = kube.helm("template", "rel", str(CHART), "--namespace", "sytq", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_helm_lint_is_clean(kube: KubeControlPlane) -> None:
    proc = kube.helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_chart_crds_are_the_manifests_crds() -> None:
    for crd in (CHART / "crds").iterdir():
        assert crd.resolve().parent == MANIFESTS.resolve(), crd


def test_default_values_render_a_complete_labelled_release(kube: KubeControlPlane) -> None:
    objects = render(kube)
    kinds = Counter(o["kind"] for o in objects)
    assert kinds == Counter(
        {
            "ServiceAccount": 3,
            "Deployment": 2,
            "Role": 1,
            "RoleBinding": 1,
            "ConfigMap": 1,
            "Secret": 1,
            "Service": 1,
            "KopfPeering": 1,
            "LLMWorkerPool": 1,
        }
    )
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "rel"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/name"] == "syt-queue"
        assert labels["helm.sh/chart"] == "syt-queue-0.1.0"
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]
    assert config["SYTQ_CONTROLLER_NAMESPACES"] == "sytq"
    assert (
        config["SYTQ_CONTROLLER_PEERING"]
        == next(o for o in objects if o["kind"] == "KopfPeering")["metadata"]["name"]
    )


def test_non_default_values_render_the_optional_objects(kube: KubeControlPlane) -> None:
    objects = render(kube, *NON_DEFAULT)
    kinds = Counter(o["kind"] for o in objects)
    assert kinds["ScaledObject"] == 1 and kinds["Ingress"] == 1 and kinds["ServiceMonitor"] == 1
    assert kinds["Secret"] == 0 and kinds["LLMWorkerPool"] == 0
    assert kinds["KopfPeering"] == 2 and kinds["Role"] == 3  # one per watched namespace + the API's
    scaled = next(o for o in objects if o["kind"] == "ScaledObject")
    lists = [t["metadata"]["listName"] for t in scaled["spec"]["triggers"]]
    assert lists == ["asynq:{critical}:pending", "asynq:{default}:pending", "asynq:{low}:pending"]
    text = json.dumps(objects)
    assert "my-secrets" in text and "rel-syt-queue-secrets" not in text
    service = next(o for o in objects if o["kind"] == "Service")
    assert service["spec"]["ports"][0]["nodePort"] == 30080


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "workerPool.minReplicas=-1"], "/workerPool/minReplicas"),
        (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set", "api.replica=2"], "additional properties 'replica' not allowed"),
        (["--set", "secrets.redisUrl="], "secrets.redisUrl is required"),
    ],
    ids=["negative-min", "pull-policy", "typo", "no-redis"],
)
def test_bad_values_are_refused_with_a_clear_message(
    kube: KubeControlPlane, args: list[str], expected: str
) -> None:
    proc = kube.helm("template", "rel", str(CHART), *args, check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr


OPTIONAL_OBJECTS = [
    "--set", "keda.enabled=true", "--set", "workerPool.enabled=false", "--set", "ingress.enabled=true",
    "--set", "serviceMonitor.enabled=true", "--set", "secrets.existingSecret=my-secrets",
]  # fmt: skip


def register_stand_in_crd(kube: KubeControlPlane, group: str, kind: str, plural: str, version: str) -> None:
    """KEDA and the Prometheus Operator are not installed here: an open-schema CRD of the same
    group/version/kind lets the apiserver store their objects (their own validation is not run)."""
    kube.apply({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [{"name": version, "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    })  # fmt: skip
    kube.kubectl("wait", "--for=condition=established", "--timeout=30s", f"crd/{plural}.{group}")


@pytest.mark.parametrize(
    "values",
    [[], ["--set", "api.resourceMode=true", "--set", "workerPool.minReplicas=1"], OPTIONAL_OBJECTS],
    ids=["default", "resource-mode", "keda-ingress-servicemonitor"],
)
def test_helm_install_into_the_apiserver(operator_manifests: KubeControlPlane, values: list[str]) -> None:
    kube = operator_manifests
    if values is OPTIONAL_OBJECTS:
        register_stand_in_crd(kube, "keda.sh", "ScaledObject", "scaledobjects", "v1alpha1")
        register_stand_in_crd(kube, "monitoring.coreos.com", "ServiceMonitor", "servicemonitors", "v1")
    namespace = f"chart-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(namespace)
    release = "sytq"
    kube.helm("install", release, str(CHART), "--namespace", namespace, *values, "--wait=false")
    manifest = kube.helm("get", "manifest", release, "--namespace", namespace).stdout
    for obj in (d for d in yaml.safe_load_all(manifest) if d):
        kube.kubectl("get", obj["kind"], obj["metadata"]["name"], "-n", namespace)  # stored as rendered
    status = json.loads(kube.helm("status", release, "--namespace", namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    assert "kubectl -n" in status["info"]["notes"]
