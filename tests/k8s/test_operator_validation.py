"""The apiserver itself rejects bad LLMTasks and LLMWorkerPools (CRD schema + CEL rules)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.harness.kube import KubeControlPlane
from tests.harness.operator_fixtures import NAMESPACE

VALID: dict[str, Any] = {
    "apiVersion": "llm.syt.io/v1alpha1",
    "kind": "LLMTask",
    "metadata": {"name": "valid", "namespace": NAMESPACE},
    "spec": {"prompt": "hello"},
}


def with_spec(name: str, **spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(VALID)
    obj["metadata"]["name"] = name
    obj["spec"] = spec
    return obj


def apply(kube: KubeControlPlane, obj: dict[str, Any]) -> tuple[int, str]:
    proc = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj), check=False)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"prompt": "a", "messages": [{"role": "user", "content": "b"}]},
            "exactly one of spec.prompt or spec.messages must be set",
        ),
        ({}, "exactly one of spec.prompt or spec.messages must be set"),
        ({"prompt": "a", "maxRetries": -1}, "spec.maxRetries: Invalid value: -1"),
        ({"prompt": "a", "timeoutSeconds": 0}, "spec.timeoutSeconds: Invalid value: 0"),
        ({"prompt": "a", "colour": "red"}, 'unknown field "spec.colour"'),
        ({"prompt": "a", "parameters": {"temperature": 3}}, "spec.parameters.temperature: Invalid value: 3"),
        (
            {"messages": [{"role": "robot", "content": "x"}]},
            'spec.messages[0].role: Unsupported value: "robot"',
        ),
        ({"messages": [{"role": "system", "content": "x"}]}, "at least one message with role 'user'"),
        ({"prompt": ""}, "spec.prompt: Invalid value"),
        ({"prompt": "a", "callbackUrl": "ftp://x"}, "spec.callbackUrl: Invalid value"),
        ({"prompt": "a", "queue": "bad queue"}, "spec.queue: Invalid value"),
    ],
    ids=[
        "both",
        "neither",
        "negative-retries",
        "zero-timeout",
        "unknown-field",
        "temperature",
        "role",
        "no-user-turn",
        "empty-prompt",
        "callback-scheme",
        "queue-name",
    ],
)
def test_invalid_llmtask_is_rejected_with_a_clear_message(
    operator_manifests: KubeControlPlane, spec: dict[str, Any], expected: str
) -> None:
    code, stderr = apply(operator_manifests, with_spec("invalid", **spec))
    assert code != 0
    assert expected in stderr, stderr
    got = operator_manifests.kubectl("-n", NAMESPACE, "get", "llmtask", "invalid", check=False)
    assert got.returncode != 0  # nothing half-created


def test_spec_is_immutable_once_accepted_but_defaults_are_filled(
    operator_manifests: KubeControlPlane,
) -> None:
    kube = operator_manifests
    name = "immutable"
    kube.kubectl("-n", NAMESPACE, "delete", "llmtask", name, "--ignore-not-found", "--wait=false")
    code, stderr = apply(kube, with_spec(name, prompt="first"))
    assert code == 0, stderr
    try:
        obj = kube.get_json("-n", NAMESPACE, "llmtask", name)
        assert obj["spec"] == {
            "prompt": "first",
            "model": "deepseek-chat",
            "queue": "default",
            "maxRetries": 3,
            "timeoutSeconds": 900,
        }
        code, stderr = apply(kube, with_spec(name, prompt="second"))
        assert code != 0
        assert "spec is immutable once accepted" in stderr, stderr
        # Status and metadata stay writable: that is how the controller reports.
        kube.kubectl("-n", NAMESPACE, "label", "llmtask", name, "team=x")
    finally:
        kube.kubectl(
            "-n",
            NAMESPACE,
            "patch",
            "llmtask",
            name,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
        kube.kubectl("-n", NAMESPACE, "delete", "llmtask", name, "--wait=false", check=False)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"image": "x", "minReplicas": 5, "maxReplicas": 2}, "minReplicas must not exceed spec.maxReplicas"),
        ({"minReplicas": 0}, "spec.image: Required value"),
        ({"image": "x", "queues": []}, "spec.queues: Invalid value"),
        ({"image": "x", "concurrency": 0}, "spec.concurrency: Invalid value: 0"),
    ],
    ids=["min-above-max", "no-image", "no-queues", "zero-concurrency"],
)
def test_invalid_workerpool_is_rejected(
    operator_manifests: KubeControlPlane, spec: dict[str, Any], expected: str
) -> None:
    obj = {
        "apiVersion": "llm.syt.io/v1alpha1",
        "kind": "LLMWorkerPool",
        "metadata": {"name": "bad", "namespace": NAMESPACE},
        "spec": spec,
    }
    code, stderr = apply(operator_manifests, obj)
    assert code != 0
    assert expected in stderr, stderr
