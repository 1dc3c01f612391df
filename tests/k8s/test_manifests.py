"""manifests/: what `kubectl apply -f manifests/` installs, checked statically and on the apiserver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from sytq.settings import Settings
from tests.harness.kube import KubeControlPlane
from tests.harness.operator_fixtures import MANIFESTS, NAMESPACE

CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_objects() -> list[dict[str, Any]]:
    files = sorted(MANIFESTS.glob("*.yaml")) + sorted((MANIFESTS / "custom").glob("*.yaml"))
    return [obj for f in files for obj in load(f)]


def test_every_object_is_namespaced_and_labelled() -> None:
    objects = all_objects()
    assert len(objects) >= 20
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] not in CLUSTER_SCOPED:
            assert meta.get("namespace") == NAMESPACE, meta
        labels = meta.get("labels", {})
        assert "app.kubernetes.io/name" in labels or "app.kubernetes.io/part-of" in labels, meta
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]  # least privilege


def test_pods_run_hardened_and_use_real_subcommands() -> None:
    deployments = [o for o in all_objects() if o["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"syt-queue-api", "syt-queue-controller"}
    for dep in deployments:
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["args"][0] in ("api", "controller")
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert (
            dep["spec"]["selector"]["matchLabels"].items()
            <= dep["spec"]["template"]["metadata"]["labels"].items()
        )


def test_configmap_and_secret_keys_are_real_settings() -> None:
    known = {f"SYTQ_{name.upper()}" for name in Settings.model_fields} | {"DEEPSEEK_API_KEY"}
    for obj in all_objects():
        if obj["kind"] == "ConfigMap":
            assert set(obj["data"]) <= known, set(obj["data"]) - known
        if obj["kind"] == "Secret":
            assert set(obj["stringData"]) <= known, set(obj["stringData"]) - known


def test_the_unedited_secret_template_starts_nothing() -> None:
    """Applied as shipped, the API and worker refuse to start (no open API, no known secret)."""
    (secret,) = [o for o in all_objects() if o["kind"] == "Secret"]
    for name in ("SYTQ_API_KEYS", "SYTQ_CALLBACK_SECRET"):
        with pytest.raises(pydantic.ValidationError, match="REPLACE-ME"):
            Settings(**{name.removeprefix("SYTQ_").lower(): secret["stringData"][name]})


def test_everything_is_accepted_by_the_apiserver(operator_manifests: KubeControlPlane) -> None:
    kube = operator_manifests
    # The session fixture ran the documented install; every object must now exist as written.
    kube.kubectl("get", "-f", str(MANIFESTS))
    kube.kubectl("get", "-f", str(MANIFESTS / "custom" / "kopf-peering.yaml"))
    for path in (MANIFESTS / "custom" / "default-workerpool.yaml", MANIFESTS / "examples" / "llmtask.yaml"):
        kube.kubectl("apply", "--dry-run=server", "-f", str(path))
    table = kube.kubectl(
        "get", "crd", "llmtasks.llm.syt.io", "-o", "jsonpath={.spec.names.shortNames}"
    ).stdout
    assert "llmt" in table


def test_dockerfile_is_multi_stage_non_root_with_the_sytq_entrypoint() -> None:
    """No Docker here, so the Dockerfile is checked by reading it (hack/kind-up.sh builds it)."""
    text = (MANIFESTS.parent / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) >= 2 and stages[-1].endswith("AS runtime")
    assert "COPY --from=build" in text
    user = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user and not user[-1].split()[1].startswith(("root", "0"))
    assert 'ENTRYPOINT ["sytq"]' in text
    ignored = (MANIFESTS.parent / ".dockerignore").read_text().split()
    assert ".git" in ignored and "tests" in ignored


def test_kind_up_script_parses_and_documents_itself() -> None:
    import subprocess

    script = MANIFESTS.parent / "hack" / "kind-up.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    head = script.read_text().splitlines()[:12]
    assert any("Needs:" in line for line in head) and any("--down" in line for line in head)
