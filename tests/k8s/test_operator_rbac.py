"""The controller's Role from manifests/ is enough (the e2e tests run the controller with its
ServiceAccount token) and no broader than needed (checked here with SubjectAccessReviews)."""

from __future__ import annotations

import pytest

from tests.harness.kube import KubeControlPlane
from tests.harness.operator_fixtures import NAMESPACE

CONTROLLER = f"system:serviceaccount:{NAMESPACE}:syt-queue-controller"
API = f"system:serviceaccount:{NAMESPACE}:syt-queue-api"
WORKER = f"system:serviceaccount:{NAMESPACE}:syt-queue-worker"

ALLOWED = [
    (CONTROLLER, "watch", "llmtasks.llm.syt.io", NAMESPACE),
    (CONTROLLER, "patch", "llmtasks.llm.syt.io/status", NAMESPACE),
    (CONTROLLER, "delete", "llmtasks.llm.syt.io", NAMESPACE),
    (CONTROLLER, "patch", "llmworkerpools.llm.syt.io/status", NAMESPACE),
    (CONTROLLER, "create", "deployments.apps", NAMESPACE),
    (CONTROLLER, "patch", "deployments.apps/scale", NAMESPACE),
    (CONTROLLER, "create", "events", NAMESPACE),
    (CONTROLLER, "patch", "kopfpeerings.kopf.dev", NAMESPACE),
    (API, "create", "llmtasks.llm.syt.io", NAMESPACE),
    (API, "get", "llmtasks.llm.syt.io", NAMESPACE),
]
DENIED = [
    (CONTROLLER, "get", "secrets", NAMESPACE),
    (CONTROLLER, "list", "pods", NAMESPACE),
    (CONTROLLER, "delete", "deployments.apps", NAMESPACE),
    (CONTROLLER, "create", "llmtasks.llm.syt.io", NAMESPACE),
    (CONTROLLER, "update", "llmtasks.llm.syt.io", NAMESPACE),
    (CONTROLLER, "list", "llmtasks.llm.syt.io", "default"),
    (CONTROLLER, "create", "deployments.apps", "default"),
    (CONTROLLER, "list", "customresourcedefinitions.apiextensions.k8s.io", ""),
    (CONTROLLER, "create", "roles.rbac.authorization.k8s.io", NAMESPACE),
    (API, "delete", "llmtasks.llm.syt.io", NAMESPACE),
    (API, "list", "llmtasks.llm.syt.io", NAMESPACE),  # it reads back only what it created
    (API, "patch", "llmtasks.llm.syt.io/status", NAMESPACE),
    (API, "get", "secrets", NAMESPACE),
    (WORKER, "get", "llmtasks.llm.syt.io", NAMESPACE),
    (WORKER, "get", "configmaps", NAMESPACE),
]


def can_i(kube: KubeControlPlane, who: str, verb: str, resource: str, namespace: str) -> bool:
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    proc = kube.kubectl("auth", "can-i", verb, resource, *scope, f"--as={who}", check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stderr
    return answer == "yes"


@pytest.mark.parametrize(("who", "verb", "resource", "namespace"), ALLOWED)
def test_what_each_component_needs_is_granted(
    operator_manifests: KubeControlPlane, who: str, verb: str, resource: str, namespace: str
) -> None:
    assert can_i(operator_manifests, who, verb, resource, namespace)


@pytest.mark.parametrize(("who", "verb", "resource", "namespace"), DENIED)
def test_nothing_more_is_granted(
    operator_manifests: KubeControlPlane, who: str, verb: str, resource: str, namespace: str
) -> None:
    assert not can_i(operator_manifests, who, verb, resource, namespace)
