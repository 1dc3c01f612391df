"""hack/kind-up.sh without Docker or kind: its --dry-run plan, checked step by step, and the parts
that do not need a kind cluster run for real against the test apiserver (the demo backends'
YAML, the script's exact helm flags rendered by the chart, with and without a Deepseek key).
Creating the kind cluster and loading the image stay unchecked here: kind needs Docker."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.kube import REPO_ROOT, KubeControlPlane

SCRIPT = REPO_ROOT / "hack" / "kind-up.sh"
KIND_CONFIG = REPO_ROOT / "kind-config.yaml"
SCRIPT_NS = "syt-queue"


def dry_run(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_API_KEY", "IMAGE", "CLUSTER")}
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=30, env={**clean, **env}
    )


class Plan:
    """The --dry-run output: one command per line, plus the here-document applied with kubectl."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.commands: list[list[str]] = []
        self.heredoc = ""
        lines = iter(script.splitlines())
        for line in lines:
            if line.endswith("<<'YAML'"):
                self.commands.append(shlex.split(line.removesuffix("<<'YAML'")))
                self.heredoc = "\n".join(iter(lambda: next(lines), "YAML"))
            elif line and line != "set -euo pipefail":
                self.commands.append(shlex.split(line))

    def one(self, *prefix: str) -> list[str]:
        found = [c for c in self.commands if c[: len(prefix)] == list(prefix)]
        assert len(found) == 1, f"expected one {' '.join(prefix)!r} step in:\n{self.script}"
        return found[0]

    def index(self, *prefix: str) -> int:
        return self.commands.index(self.one(*prefix))


@pytest.fixture(scope="module")
def plan() -> Plan:
    run = dry_run()
    assert run.returncode == 0, run.stderr
    return Plan(run.stdout)


def _set_values(helm: list[str]) -> dict[str, str]:
    pairs = [helm[i + 1] for i, arg in enumerate(helm) if arg == "--set"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_script_and_its_plan_are_valid_bash(plan: Plan) -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    checked = subprocess.run(["bash", "-n"], input=plan.script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_plan_builds_loads_installs_and_submits_in_order(plan: Plan) -> None:
    steps = [
        ("kind", "create", "cluster"),
        ("kubectl", "config", "use-context"),
        ("docker", "build"),
        ("kind", "load", "docker-image"),
        ("kubectl", "-n", SCRIPT_NS, "apply", "-f", "-"),
        ("kubectl", "-n", SCRIPT_NS, "rollout", "status"),
        ("helm", "upgrade", "--install"),
        ("kubectl", "-n", SCRIPT_NS, "apply", "-f", str(REPO_ROOT / "manifests/examples/llmtask.yaml")),
        ("kubectl", "-n", SCRIPT_NS, "wait"),
        ("curl",),
    ]
    assert [plan.index(*step) for step in steps] == sorted(plan.index(*step) for step in steps)
    create = plan.one("kind", "create", "cluster")
    assert create[create.index("--config") + 1] == str(KIND_CONFIG)
    build = plan.one("docker", "build")
    assert build[-1] == str(REPO_ROOT) and (REPO_ROOT / "Dockerfile").is_file()
    image = build[build.index("-t") + 1]
    assert plan.one("kind", "load", "docker-image")[3] == image == "syt-queue:dev"
    # the example LLMTask lives in the namespace the script installs into
    example = yaml.safe_load((REPO_ROOT / "manifests/examples/llmtask.yaml").read_text())
    assert example["metadata"]["namespace"] == SCRIPT_NS
    assert plan.one("kubectl", "-n", SCRIPT_NS, "wait")[4] == f"llmtask/{example['metadata']['name']}"


def test_plan_uses_the_node_port_kind_maps_to_localhost(plan: Plan) -> None:
    values = _set_values(plan.one("helm", "upgrade", "--install"))
    kind = yaml.safe_load(KIND_CONFIG.read_text())
    mappings = [m for node in kind["nodes"] for m in node.get("extraPortMappings", [])]
    assert values["api.service.type"] == "NodePort"
    api_mapping = next(m for m in mappings if m["containerPort"] == int(values["api.service.nodePort"]))
    assert f"http://localhost:{api_mapping['hostPort']}/" in " ".join(plan.one("curl"))


def _render(kube: KubeControlPlane, helm: list[str]) -> dict[str, list[dict[str, Any]]]:
    """``helm template`` with the plan's own ``helm upgrade --install`` arguments."""
    args = helm[helm.index("--install") + 1 :]
    for flag, has_value in (("--wait", False), ("--timeout", True)):
        i = args.index(flag)
        del args[i : i + 1 + has_value]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all(kube.helm("template", *args).stdout):
        if doc:
            by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def test_the_deepseek_key_never_shows_in_the_plan_and_turns_the_stub_off(
    kube: KubeControlPlane, tmp_path: Path
) -> None:
    secret = "sk-test-0123456789abcdef"
    run = dry_run(DEEPSEEK_API_KEY=secret, IMAGE="registry.local:5000/team/sytq:v2")
    assert run.returncode == 0, run.stderr
    assert secret not in run.stdout + run.stderr
    keyed = Plan(run.stdout)
    helm = keyed.one("helm", "upgrade", "--install")
    values = _set_values(helm)
    assert "config.SYTQ_LLM_BASE_URL" not in values and "stubLLM.enabled" not in values
    assert (values["image.repository"], values["image.tag"]) == ("registry.local:5000/team/sytq", "v2")
    # the plan names a placeholder for the key file; render with a real one
    key_file = tmp_path / "key"
    key_file.write_text(secret)
    i = helm.index("--set-file") + 1
    name, _ = helm[i].split("=", 1)
    helm[i] = f"{name}={key_file}"
    by_kind = _render(kube, helm)
    assert [s for s in by_kind["Secret"] if s["stringData"].get("DEEPSEEK_API_KEY") == secret]
    assert not [d for d in by_kind["Deployment"] if d["metadata"]["name"].endswith("-stub-llm")]
    (config,) = by_kind["ConfigMap"]
    assert config["data"]["SYTQ_LLM_BASE_URL"] == "https://api.deepseek.com"


def test_unknown_arguments_are_refused() -> None:
    run = subprocess.run(["bash", str(SCRIPT), "--dryrun"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2
    assert "unknown argument '--dryrun'" in run.stderr


def _in_namespace(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    objects = [d for d in docs if d and d["kind"] != "Namespace"]
    for obj in objects:
        assert obj["metadata"].get("namespace", SCRIPT_NS) == SCRIPT_NS
        obj["metadata"]["namespace"] = namespace
    return objects


def test_demo_backends_are_accepted_by_the_apiserver(
    plan: Plan, kube: KubeControlPlane, kube_namespace: str
) -> None:
    docs = list(yaml.safe_load_all(plan.heredoc))
    named = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert named >= {("Namespace", SCRIPT_NS), ("Deployment", "redis"), ("Deployment", "mysql")}
    kube.apply(_in_namespace(docs, kube_namespace))
    for name in ("redis", "mysql"):
        kube.get_json("-n", kube_namespace, "service", name)
    helm_values = _set_values(plan.one("helm", "upgrade", "--install"))
    for name, port in (("redis", 6379), ("mysql", 3306)):
        assert f"{name}.{SCRIPT_NS}.svc:{port}" in " ".join(helm_values.values())


def test_helm_flags_render_a_keyless_release_whose_workers_call_its_stub(
    plan: Plan, operator_manifests: KubeControlPlane, kube_namespace: str
) -> None:
    kube = operator_manifests
    by_kind = _render(kube, plan.one("helm", "upgrade", "--install"))

    node_ports = [p.get("nodePort") for s in by_kind["Service"] for p in s["spec"]["ports"]]
    assert 30080 in node_ports
    for deployment in by_kind["Deployment"]:  # the stub LLM's too: from the image kind loaded
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert (container["image"], container["imagePullPolicy"]) == ("syt-queue:dev", "Never")
    (stub,) = [d for d in by_kind["Deployment"] if d["metadata"]["name"].endswith("-stub-llm")]
    (stub_service,) = [s for s in by_kind["Service"] if s["metadata"]["name"] == stub["metadata"]["name"]]
    (config,) = by_kind["ConfigMap"]
    stub_port = stub_service["spec"]["ports"][0]["port"]
    stub_url = f"http://{stub_service['metadata']['name']}.{SCRIPT_NS}.svc:{stub_port}"
    assert config["data"]["SYTQ_LLM_BASE_URL"] == stub_url
    (pool,) = by_kind["LLMWorkerPool"]
    assert (pool["spec"]["image"], pool["spec"]["minReplicas"]) == ("syt-queue:dev", 1)
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in pool["spec"]["envFrom"]

    # the pool as rendered is accepted by the real CRD schema and stored unchanged
    pool["metadata"]["namespace"] = kube_namespace
    kube.apply(pool)
    stored = kube.get_json("-n", kube_namespace, "llmworkerpool", pool["metadata"]["name"])["spec"]
    assert (stored["envFrom"], stored["env"]) == (pool["spec"]["envFrom"], pool["spec"]["env"])
