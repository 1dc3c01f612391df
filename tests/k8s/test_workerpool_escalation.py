"""Someone who may only create LLMWorkerPools gains nothing through the controller (issue 12,
point 2): a pool naming a foreign image, another ServiceAccount or another Secret is refused at
admission by the manifests' ValidatingAdmissionPolicy, and with that policy gone the controller
refuses it itself (status condition + Event) and no Deployment with those fields ever exists. A
pool within the policy still gets its workers.

The pool maker is a ServiceAccount with a Role granting create/get on llmworkerpools only, acting
with its own token."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from controller.deployment import POOL_LABEL
from tests.harness.kube import KubeControlPlane
from tests.harness.operator_fixtures import (
    NAMESPACE,
    OperatorEnv,
    admission_policy_absent,
    manifest_pool_policy,
    policy_enforced,
    wait_until,
)

MAKER = "pool-maker"
OTHER = "other-secret"
IMAGE = manifest_pool_policy()["SYTQ_CONTROLLER_POOL_IMAGES"]
COMPLIANT: dict[str, Any] = {
    "image": IMAGE,
    "serviceAccountName": "syt-queue-worker",
    "secrets": {"redisUrl": {"name": "syt-queue-secrets", "key": "SYTQ_REDIS_URL"}},
    "envFrom": [{"configMapRef": {"name": "syt-queue-config"}}],
    "env": [
        {
            "name": "SYTQ_CALLBACK_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "syt-queue-secrets", "key": "k"}},
        }
    ],
}
# name -> (what the pool asks for, the field the refusal names)
ESCALATIONS: dict[str, tuple[dict[str, Any], str]] = {
    "foreign-image": ({"image": "evil.example/miner:1"}, "spec.image"),
    "controller-sa": ({"serviceAccountName": "syt-queue-controller"}, "spec.serviceAccountName"),
    "other-secret": ({"secrets": {"redisUrl": {"name": OTHER, "key": "k"}}}, "spec.secrets.redisUrl.name"),
    "env-secret": (
        {
            "env": [
                {"name": "SYTQ_CALLBACK_SECRET", "valueFrom": {"secretKeyRef": {"name": OTHER, "key": "k"}}}
            ]
        },
        "valueFrom.secretKeyRef.name",
    ),
    "envfrom-secret": ({"envFrom": [{"secretRef": {"name": OTHER}}]}, "secretRef.name"),
    "env-name": ({"env": [{"name": "SYTQ_LLM_BASE_URL", "value": "https://evil.example"}]}, "name"),
}


def pool(name: str, **change: Any) -> dict[str, Any]:
    return {
        "apiVersion": "llm.syt.io/v1alpha1",
        "kind": "LLMWorkerPool",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {**COMPLIANT, **change},
    }


@pytest.fixture(scope="module")
def maker(operator_manifests: KubeControlPlane) -> Path:
    """A kubeconfig of a ServiceAccount that may create and get LLMWorkerPools, nothing else."""
    kube = operator_manifests
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": MAKER, "namespace": NAMESPACE},
        "rules": [{"apiGroups": ["llm.syt.io"], "resources": ["llmworkerpools"], "verbs": ["create", "get"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": MAKER, "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": MAKER},
        "subjects": [{"kind": "ServiceAccount", "name": MAKER, "namespace": NAMESPACE}],
    }
    kube.apply([role, binding])
    return kube.service_account_kubeconfig(NAMESPACE, MAKER)


def create_as(
    kube: KubeControlPlane, kubeconfig: Path, obj: dict[str, Any], *extra: str
) -> subprocess.CompletedProcess[str]:
    return kube.kubectl(
        "create", *extra, "-f", "-", input=json.dumps(obj), kubeconfig=kubeconfig, check=False
    )


@contextmanager
def deployment_watch(kube: KubeControlPlane) -> Iterator[list[dict[str, Any]]]:
    """Every version of every Deployment in the namespace written while the block runs (a kubectl
    watch, known to be live once it has seen a sentinel Deployment created, and complete once it
    has seen that sentinel deleted at the end)."""
    seen: list[dict[str, Any]] = []
    cmd = [str(kube.bin_dir / "kubectl"), f"--kubeconfig={kube.kubeconfig}", "-n", NAMESPACE]
    watch = subprocess.Popen(
        [*cmd, "get", "deployments", "-w", "--output-watch-events", "-o", "json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    events: queue.Queue[dict[str, Any] | None] = queue.Queue()
    sentinel = f"watch-sentinel-{MAKER}"

    def pump() -> None:  # read all the time, so the watch never backs up
        decoder, buffer = json.JSONDecoder(), ""
        for line in watch.stdout or ():
            buffer += line
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break
                buffer = buffer.lstrip()[end:]
                events.put(event)
        events.put(None)

    def read_until(event_type: str) -> None:
        while (event := events.get(timeout=60)) is not None:
            if event["object"]["metadata"]["name"] != sentinel:
                seen.append(event["object"])
            elif event["type"] == event_type:
                return
        raise AssertionError("deployment watch ended")

    threading.Thread(target=pump, daemon=True).start()
    kube.kubectl("-n", NAMESPACE, "create", "deployment", sentinel, f"--image={IMAGE}", "--replicas=0")
    try:
        read_until("ADDED")
        seen.clear()  # what existed before (e.g. left by other tests) is not written in the block
        yield seen
        kube.kubectl("-n", NAMESPACE, "delete", "deployment", sentinel)
        read_until("DELETED")
    finally:
        watch.kill()
        watch.wait()
        kube.kubectl("-n", NAMESPACE, "delete", "deployment", sentinel, "--ignore-not-found")


def ready_condition(env: OperatorEnv, name: str) -> dict[str, Any] | None:
    status = json.loads(env.kubectl("get", "llmworkerpool", name, "-o", "json").stdout).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)


def can_i(kube: KubeControlPlane, kubeconfig: Path, verb: str, resource: str) -> bool:
    proc = kube.kubectl("auth", "can-i", verb, resource, "-n", NAMESPACE, kubeconfig=kubeconfig, check=False)
    return proc.stdout.strip() == "yes"


def test_the_pool_maker_may_create_pools_and_nothing_else(
    operator_manifests: KubeControlPlane, maker: Path
) -> None:
    kube = operator_manifests
    assert can_i(kube, maker, "create", "llmworkerpools.llm.syt.io")
    for verb, resource in [
        ("update", "llmworkerpools.llm.syt.io"),
        ("create", "deployments.apps"),
        ("create", "pods"),
        ("get", "secrets"),
        ("create", "serviceaccounts/token"),
    ]:
        assert not can_i(kube, maker, verb, resource), (verb, resource)


@pytest.mark.parametrize("case", sorted(ESCALATIONS))
def test_admission_refuses_an_escalating_pool(
    operator_manifests: KubeControlPlane, maker: Path, case: str
) -> None:
    kube = operator_manifests
    wait_until(lambda: policy_enforced(kube), 30, "the manifests' admission policy is not enforced")
    change, field = ESCALATIONS[case]
    proc = create_as(kube, maker, pool(f"esc-{case}", **change))
    assert proc.returncode != 0
    assert "ValidatingAdmissionPolicy 'syt-queue-llmworkerpool'" in proc.stderr
    assert field in proc.stderr and "is not an allowed" in proc.stderr, proc.stderr
    assert create_as(kube, maker, pool(f"esc-{case}"), "--dry-run=server").returncode == 0  # compliant: fine


def test_without_admission_the_controller_refuses_and_builds_nothing(
    operator_env: OperatorEnv, maker: Path
) -> None:
    env, kube = operator_env, operator_env.kube
    allowed_images, allowed_accounts = {IMAGE}, {"syt-queue-worker"}
    with deployment_watch(kube) as seen:
        controller = env.start_controller()
        # within the policy: workers as asked, the pool says Ready
        assert create_as(kube, maker, pool("fair")).returncode == 0
        wait_until(lambda: (ready_condition(env, "fair") or {}).get("status") == "True", 30, controller.log)
        with admission_policy_absent(kube):
            for case, (change, _) in ESCALATIONS.items():
                created = create_as(kube, maker, pool(f"esc-{case}", **change))
                assert created.returncode == 0, created.stderr  # nothing stops it at admission now
            for case, (_, field) in ESCALATIONS.items():
                refused = wait_until(
                    lambda c=case: ready_condition(env, f"esc-{c}"),
                    30,
                    controller.log,
                )
                assert (refused["status"], refused["reason"]) == ("False", "PolicyViolation"), refused
                assert field in refused["message"] and "SYTQ_CONTROLLER_POOL_" in refused["message"]
                wait_until(
                    lambda c=case: "PolicyViolation" in env.event_reasons(f"esc-{c}"), 30, controller.log
                )
            # a compliant pool changed to a foreign image (by someone who may update it): the
            # workers stay as they were
            env.kubectl(
                "patch",
                "llmworkerpool",
                "fair",
                "--type=merge",
                "-p",
                '{"spec":{"image":"evil.example/x:1"}}',
            )
            wait_until(
                lambda: (ready_condition(env, "fair") or {}).get("reason") == "PolicyViolation",
                30,
                controller.log,
            )
    # Policy back: a pool admitted without it can still have its metadata changed (kopf's
    # finalizer, so it can be deleted), but not its spec.
    labelled = env.kubectl("label", "llmworkerpool", "esc-foreign-image", "checked=yes", check=False)
    assert labelled.returncode == 0, labelled.stderr
    patch = '{"spec":{"concurrency":2}}'
    respecced = env.kubectl(
        "patch", "llmworkerpool", "esc-foreign-image", "--type=merge", "-p", patch, check=False
    )
    assert respecced.returncode != 0 and 'spec.image: "evil.example/miner:1"' in respecced.stderr

    ours = {"fair", *(f"esc-{case}" for case in ESCALATIONS)}
    built = [d for d in seen if d["metadata"].get("labels", {}).get(POOL_LABEL) in ours]  # the controller's
    assert {d["metadata"]["name"] for d in built} == {"fair-worker"}
    for dep in built:  # every version of it the apiserver ever had
        pod = dep["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] in allowed_images and pod["serviceAccountName"] in allowed_accounts
        assert pod["automountServiceAccountToken"] is False
        refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e]
        refs += [s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s]
        assert set(refs) == {"syt-queue-secrets"}, refs
