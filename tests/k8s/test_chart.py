"""charts/syt-queue: lint, template with default and other values, install into the apiserver."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.deployment import build_deployment
from sytq_cli.main import build_parser
from tests.harness.kube import KubeControlPlane
from tests.harness.operator_fixtures import (
    MANIFESTS,
    NAMESPACE,
    OperatorEnv,
    admission_policy_absent,
    policy_enforced,
    wait_until,
)

CHART = Path(__file__).resolve().parents[2] / "charts" / "syt-queue"
ADMIN = f"ops:{hashlib.sha256(b'ops-key').hexdigest()}:admin"
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
            "Deployment": 3,  # api, controller, stub LLM (no key given)
            "Role": 1,
            "RoleBinding": 1,
            "ConfigMap": 1,
            "Secret": 2,  # settings, and the generated admin key (no keys given)
            "Service": 3,  # api, controller (metrics), stub LLM
            "KopfPeering": 1,
            "LLMWorkerPool": 1,
            "ValidatingAdmissionPolicy": 1,
            "ValidatingAdmissionPolicyBinding": 1,
            "PodDisruptionBudget": 2,  # api, controller
        }
    )
    budgets = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PodDisruptionBudget"}
    for component in ("api", "controller"):
        budget = budgets[f"rel-syt-queue-{component}"]
        assert budget["maxUnavailable"] == 1
        assert budget["selector"]["matchLabels"]["app.kubernetes.io/component"] == component
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


def named(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


def stub_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["metadata"]["name"].endswith("-stub-llm")]


def test_keyless_install_runs_the_stub_llm_and_the_workers_get_the_release_config(
    kube: KubeControlPlane,
) -> None:
    objects = render(kube)
    config = named(objects, "ConfigMap")
    stub = named(objects, "Deployment", "rel-syt-queue-stub-llm")
    service = named(objects, "Service", "rel-syt-queue-stub-llm")
    pod = stub["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    args = build_parser().parse_args(container["args"])  # a command `sytq` really accepts
    assert (args.command, args.host, args.latency) == ("stub-llm", "0.0.0.0", "0")
    assert container["image"] == named(objects, "LLMWorkerPool")["spec"]["image"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # the Service selects the stub's pods and the workers' base URL names that Service and port
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert container["ports"] == [{"name": "http", "containerPort": args.port}]
    port = service["spec"]["ports"][0]["port"]
    assert config["data"]["SYTQ_LLM_BASE_URL"] == f"http://rel-syt-queue-stub-llm.sytq.svc:{port}"
    # the pool loads that ConfigMap and rolls its pods when it changes, like the API does
    pool = named(objects, "LLMWorkerPool")["spec"]
    assert pool["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    api_checksum = named(objects, "Deployment", "rel-syt-queue-api")["spec"]["template"]["metadata"]
    assert pool["podAnnotations"] == {"checksum/config": api_checksum["annotations"]["checksum/config"]}


@pytest.mark.parametrize(
    ("args", "llm_url"),
    [
        (["--set", "secrets.deepseekApiKey=sk-x"], "https://api.deepseek.com"),
        (["--set", "secrets.existingSecret=mine"], "https://api.deepseek.com"),
        (["--set", "config.SYTQ_LLM_BASE_URL=http://vllm:8000/v1"], "http://vllm:8000/v1"),
        (["--set", "stubLLM.enabled=false"], "https://api.deepseek.com"),
    ],
    ids=["key", "existing-secret", "own-endpoint", "stub-off"],
)
def test_a_key_an_own_secret_or_endpoint_turns_the_auto_stub_off(
    kube: KubeControlPlane, args: list[str], llm_url: str
) -> None:
    objects = render(kube, *args)
    assert stub_objects(objects) == []
    assert named(objects, "ConfigMap")["data"]["SYTQ_LLM_BASE_URL"] == llm_url


def test_stub_can_be_forced_on_with_its_latency_and_extra_worker_env(kube: KubeControlPlane) -> None:
    extra = [
        "stubLLM.enabled=true", "secrets.deepseekApiKey=sk-x", "stubLLM.latency=0.2", "stubLLM.port=9000",
        "workerPool.extraEnv[0].name=SYTQ_LLM_STREAM", "workerPool.extraEnvFrom[0].secretRef.name=more",
    ]  # fmt: skip
    flags = [arg for value in extra for arg in ("--set", value)]
    objects = render(kube, *flags, "--set-string", "workerPool.extraEnv[0].value=true")
    assert {o["kind"] for o in stub_objects(objects)} == {"Deployment", "Service"}
    stub = named(objects, "Deployment", "rel-syt-queue-stub-llm")["spec"]["template"]["spec"]
    args = build_parser().parse_args(stub["containers"][0]["args"])
    assert (args.port, args.latency) == (9000, "0.2")
    assert named(objects, "ConfigMap")["data"]["SYTQ_LLM_BASE_URL"].endswith("-stub-llm.sytq.svc:9000")
    pool = named(objects, "LLMWorkerPool")["spec"]
    assert pool["envFrom"][1:] == [{"secretRef": {"name": "more"}}]
    assert pool["env"][-1] == {"name": "SYTQ_LLM_STREAM", "value": "true"}
    # what the values add to the pool is on the pool policy's lists, and nothing else is
    config = named(objects, "ConfigMap")["data"]
    assert config["SYTQ_CONTROLLER_POOL_SECRETS"] == "rel-syt-queue-secrets,more"
    assert config["SYTQ_CONTROLLER_POOL_ENV"] == "SYTQ_CALLBACK_SECRET,SYTQ_LLM_STREAM"
    assert config["SYTQ_CONTROLLER_POOL_IMAGES"] == pool["image"]
    assert config["SYTQ_CONTROLLER_POOL_SERVICE_ACCOUNTS"] == pool["serviceAccountName"]
    assert config["SYTQ_CONTROLLER_POOL_CONFIG_MAPS"] == pool["envFrom"][0]["configMapRef"]["name"]


def test_pool_policy_values_extend_the_lists_and_the_admission_policy_can_be_left_out(
    kube: KubeControlPlane,
) -> None:
    values = [
        "images={reg.local/sytq:*}",
        "secrets={llm-keys}",
        "env={SYTQ_LOG_LEVEL}",
        "serviceAccounts={w2}",
    ]
    objects = render(kube, *(arg for value in values for arg in ("--set", f"workerPool.policy.{value}")))
    config = named(objects, "ConfigMap")["data"]
    assert config["SYTQ_CONTROLLER_POOL_IMAGES"] == "ghcr.io/syt-io/syt-queue:0.1.0,reg.local/sytq:*"
    assert config["SYTQ_CONTROLLER_POOL_SECRETS"] == "rel-syt-queue-secrets,llm-keys"
    assert config["SYTQ_CONTROLLER_POOL_SERVICE_ACCOUNTS"] == "rel-syt-queue-worker,w2"
    assert config["SYTQ_CONTROLLER_POOL_ENV"] == "SYTQ_CALLBACK_SECRET,SYTQ_LOG_LEVEL"
    # the admission policy carries the same lists as literals (no ConfigMap to look up)
    binding = named(objects, "ValidatingAdmissionPolicyBinding")["spec"]
    assert binding["policyName"] == "sytq-rel-syt-queue-llmworkerpool" and "paramRef" not in binding
    policy = named(objects, "ValidatingAdmissionPolicy")["spec"]
    variables = {v["name"]: v["expression"] for v in policy["variables"]}
    assert "paramKind" not in policy
    for name, key in [("images", "IMAGES"), ("secrets", "SECRETS"), ("envNames", "ENV")]:
        assert json.loads(variables[name]) == config[f"SYTQ_CONTROLLER_POOL_{key}"].split(",")
    without = render(kube, "--set", "workerPool.policy.admissionPolicy=false")
    assert not [o for o in without if o["kind"].startswith("ValidatingAdmissionPolicy")]


def test_non_default_values_render_the_optional_objects(kube: KubeControlPlane) -> None:
    objects = render(kube, *NON_DEFAULT)
    kinds = Counter(o["kind"] for o in objects)
    assert kinds["ScaledObject"] == 1 and kinds["Ingress"] == 1 and kinds["ServiceMonitor"] == 2
    assert kinds["Secret"] == 0 and kinds["LLMWorkerPool"] == 0
    assert kinds["KopfPeering"] == 2 and kinds["Role"] == 3  # one per watched namespace + the API's
    scaled = next(o for o in objects if o["kind"] == "ScaledObject")
    lists = [t["metadata"]["listName"] for t in scaled["spec"]["triggers"]]
    assert lists == [
        "asynq:{critical}:pending",
        "asynq:{default}:pending",
        "asynq:{low}:pending",
        "asynq:{callbacks}:pending",
    ]
    text = json.dumps(objects)
    assert "my-secrets" in text and "rel-syt-queue-secrets" not in text
    service = next(o for o in objects if o["kind"] == "Service")
    assert service["spec"]["ports"][0]["nodePort"] == 30080


def test_keda_on_sentinel_uses_the_redis_sentinel_trigger(kube: KubeControlPlane) -> None:
    objects = render(
        kube,
        *NON_DEFAULT,
        "--set", "keda.sentinel.addresses=sentinel-0:26379\\,sentinel-1:26379",
        "--set", "keda.sentinel.master=mymaster",
    )  # fmt: skip
    scaled = next(o for o in objects if o["kind"] == "ScaledObject")
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis-sentinel"}
    assert triggers[0]["metadata"]["addresses"] == "sentinel-0:26379,sentinel-1:26379"
    assert triggers[0]["metadata"]["sentinelMaster"] == "mymaster"
    assert "address" not in triggers[0]["metadata"]
    assert triggers[1]["metadata"]["listName"] == "asynq:{default}:pending"


# Field names from KEDA 2.x's docs (scalers redis-lists, redis-sentinel-lists, redis-cluster-lists): the
# repository has no KEDA CRD schema to validate against, and KEDA's CRDs leave trigger metadata open.
LIST_METADATA = {"listName", "listLength", "activationListLength", "enableTLS", "unsafeSsl"}
KEDA_TRIGGER_METADATA = {
    "redis": {"address", *LIST_METADATA},
    "redis-sentinel": {"addresses", "sentinelMaster", *LIST_METADATA},
    "redis-cluster": {"addresses", *LIST_METADATA},
}
AUTH_PARAMETERS = {"username", "password", "tls", "ca", "cert", "key", "keyPassword"}
KEDA_AUTH_PARAMETERS = {
    "redis": AUTH_PARAMETERS,
    "redis-sentinel": {"sentinelUsername", "sentinelPassword", *AUTH_PARAMETERS},
    "redis-cluster": AUTH_PARAMETERS,
}
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
TOPOLOGIES = {
    "redis": ("rediss://app:s3cret%2Fp%40w@redis:6380/0?ssl_ca_certs=/ca.pem", {}),
    "redis-sentinel": (
        "rediss+sentinel://app:s3cret%2Fp%40w@s0:26379,s1:26379/mymaster/0"
        "?ssl_ca_certs=/ca.pem&sentinel_username=watch&sentinel_password=p%3Dq",
        {"sentinel": {"addresses": "s0:26379,s1:26379", "master": "mymaster"}},
    ),
    "redis-cluster": (
        "rediss+cluster://app:s3cret%2Fp%40w@r0:6379,r1:6379/?ssl_ca_certs=/ca.pem",
        {"cluster": {"addresses": "r0:6379,r1:6379"}},
    ),
}


def render_values(kube: KubeControlPlane, tmp_path: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    path = tmp_path / f"values-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return render(kube, "-f", str(path))


def keda_objects(objects: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    triggers = next(o for o in objects if o["kind"] == "ScaledObject")["spec"]["triggers"]
    auth = next((o for o in objects if o["kind"] == "TriggerAuthentication"), None)
    return triggers, auth


def assert_documented_by_keda(
    trigger_type: str, triggers: list[dict[str, Any]], auth: dict[str, Any] | None
) -> None:
    for trigger in triggers:
        assert trigger["type"] == trigger_type
        assert set(trigger["metadata"]) <= KEDA_TRIGGER_METADATA[trigger_type]
        assert set(trigger) <= {"type", "metadata", "authenticationRef"}
    if auth is not None:
        assert (auth["apiVersion"], set(auth["spec"]) - {"secretTargetRef", "env"}) == (
            "keda.sh/v1alpha1",
            set(),
        )
        refs = [*auth["spec"].get("secretTargetRef", []), *auth["spec"].get("env", [])]
        assert {r["parameter"] for r in refs} <= KEDA_AUTH_PARAMETERS[trigger_type]
        assert all(set(r) == {"parameter", "name", "key"} for r in auth["spec"].get("secretTargetRef", []))


@pytest.mark.parametrize("secured", [False, True], ids=["plain", "tls-acl"])
@pytest.mark.parametrize("trigger_type", list(TOPOLOGIES))
def test_keda_triggers_log_in_and_use_tls_as_the_redis_url_does(
    kube: KubeControlPlane, tmp_path: Path, trigger_type: str, secured: bool
) -> None:
    url, topology = TOPOLOGIES[trigger_type]
    if not secured:  # the same deployment without TLS or credentials
        url = url.replace("rediss", "redis", 1).replace("app:s3cret%2Fp%40w@", "").partition("?")[0]
    keda: dict[str, Any] = {"enabled": True, **topology, "tls": {"ca": CA_PEM} if secured else {}}
    objects = render_values(
        kube, tmp_path, {"keda": keda, "workerPool": {"enabled": False}, "secrets": {"redisUrl": url}}
    )
    triggers, auth = keda_objects(objects)
    assert_documented_by_keda(trigger_type, triggers, auth)
    secret = next(
        o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "rel-syt-queue-secrets"
    )
    worker = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "rel-syt-queue-worker"
    )
    env = {e["name"]: e.get("value") for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    if not secured:
        assert auth is None
        assert all("authenticationRef" not in t and "enableTLS" not in t["metadata"] for t in triggers)
        assert not [k for k in secret["stringData"] if k.startswith("KEDA_")]
        assert "KEDA_REDIS_TLS" not in env
        return
    assert auth is not None
    assert (
        {t["authenticationRef"]["name"] for t in triggers}
        == {auth["metadata"]["name"]}
        == {"rel-syt-queue-redis"}
    )
    # with a CA, TLS is switched on in the TriggerAuthentication: KEDA refuses enableTLS beside it
    assert all("enableTLS" not in t["metadata"] and "unsafeSsl" not in t["metadata"] for t in triggers)
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    expected = {"username": "app", "password": "s3cret/p@w", "ca": CA_PEM}
    if trigger_type == "redis-sentinel":
        expected |= {"sentinelUsername": "watch", "sentinelPassword": "p=q"}
    assert {p: secret["stringData"][r["key"]] for p, r in refs.items()} == expected
    assert {r["name"] for r in refs.values()} == {"rel-syt-queue-secrets"}
    assert auth["spec"]["env"] == [{"parameter": "tls", "name": "KEDA_REDIS_TLS", "containerName": "worker"}]
    assert env["KEDA_REDIS_TLS"] == "enable"


@pytest.mark.parametrize(
    ("query", "metadata"),
    [("", {"enableTLS": "true"}), ("?ssl_cert_reqs=none", {"enableTLS": "true", "unsafeSsl": "true"})],
    ids=["system-cas", "unsafe"],
)
def test_keda_tls_without_a_ca_goes_in_the_trigger_metadata(
    kube: KubeControlPlane, tmp_path: Path, query: str, metadata: dict[str, str]
) -> None:
    values = {"keda": {"enabled": True}, "secrets": {"redisUrl": f"rediss://:pw@redis:6380/0{query}"}}
    triggers, auth = keda_objects(render_values(kube, tmp_path, values))
    assert_documented_by_keda("redis", triggers, auth)
    assert all({k: t["metadata"].get(k) for k in metadata} == metadata for t in triggers)
    assert all("unsafeSsl" not in t["metadata"] for t in triggers) == (not query)
    assert auth is not None and [r["parameter"] for r in auth["spec"]["secretTargetRef"]] == ["password"]
    assert "env" not in auth["spec"]


def test_keda_with_an_existing_secret_uses_the_keys_named(kube: KubeControlPlane, tmp_path: Path) -> None:
    keda = {
        "enabled": True, "sentinel": {"addresses": "s0:26379", "master": "m"},
        "auth": {"usernameKey": "redis-user", "passwordKey": "redis-pw",
                 "sentinelPasswordKey": "sentinel-pw"},
        "tls": {"caKey": "ca.crt"},
    }  # fmt: skip
    objects = render_values(kube, tmp_path, {"keda": keda, "secrets": {"existingSecret": "mine"}})
    triggers, auth = keda_objects(objects)
    assert_documented_by_keda("redis-sentinel", triggers, auth)
    assert auth is not None
    assert sorted((r["parameter"], r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]) == [
        ("ca", "mine", "ca.crt"),
        ("password", "mine", "redis-pw"),
        ("sentinelPassword", "mine", "sentinel-pw"),
        ("username", "mine", "redis-user"),
    ]
    assert auth["spec"]["env"][0]["parameter"] == "tls"
    assert not any(o["kind"] == "Secret" for o in objects)


CLUSTER_AND_SENTINEL = [
    "--set", "keda.enabled=true", "--set", "keda.cluster.addresses=r:6379",
    "--set", "keda.sentinel.addresses=s:26379", "--set", "keda.sentinel.master=m",
]  # fmt: skip


def test_keda_on_a_cluster_uses_the_redis_cluster_trigger(kube: KubeControlPlane) -> None:
    objects = render(kube, *NON_DEFAULT, "--set", "keda.cluster.addresses=redis-0:6379\\,redis-1:6379")
    triggers = next(o for o in objects if o["kind"] == "ScaledObject")["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis-cluster"}
    assert triggers[0]["metadata"]["addresses"] == "redis-0:6379,redis-1:6379"
    assert "address" not in triggers[0]["metadata"]
    assert triggers[1]["metadata"]["listName"] == "asynq:{default}:pending"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "keda.enabled=true", "--set", "keda.sentinel.addresses=s:26379"], "keda.sentinel.master"),
        (["--set", "keda.cluster.addresses=redis-0"], "/keda/cluster/addresses"),
        (CLUSTER_AND_SENTINEL, "exclude each other"),
        (["--set", "keda.sentinel.addresses=no-port"], "/keda/sentinel/addresses"),
        (["--set", "workerPool.minReplicas=-1"], "/workerPool/minReplicas"),
        (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set", "api.replica=2"], "additional properties 'replica' not allowed"),
        (["--set", "secrets.redisUrl="], "secrets.redisUrl is required"),
        (["--set", "stubLLM.enabled=maybe"], "/stubLLM/enabled"),
        (["--set", "workerPool.extraEnv[0].name=A", "--set", "workerPool.extraEnv[0].value=true"], "/value"),
        (["--set", "ingress.enabled=true"], "ingress.enabled exposes the API: set secrets.apiKeys"),
        (
            [
                "--set",
                "ingress.enabled=true",
                "--set",
                "api.authDisabled=true",
                "--set",
                f"secrets.apiKeys={ADMIN}",
            ],
            "api.authDisabled=true is refused with an Ingress",
        ),
        (["--set", "secrets.apiKeys=php:plaintext-key:submit"], "/secrets/apiKeys"),
        (
            ["--set", "api.authDisabled=true", "--set", f"secrets.apiKeys={ADMIN}"],
            "api.authDisabled=true contradicts",
        ),
        (["--set", "config.SYTQ_CONTROLLER_POOL_IMAGES=x"], "set workerPool.policy instead"),
        (["--set", "workerPool.policy.images={a b}"], "/workerPool/policy/images/0"),
        (
            ["--set", "keda.enabled=true", "--set", "secrets.redisUrl=rediss://r:6380/0?ssl_ca_certs=/ca"],
            "give KEDA the same CA as keda.tls.ca",
        ),
        (
            [
                "--set",
                "keda.enabled=true",
                "--set",
                "secrets.redisUrl=rediss://r:6380/0?ssl_cert_reqs=none",
                "--set",
                "keda.tls.ca=PEM",
            ],
            "choose one",
        ),
        (
            ["--set", "keda.enabled=true", "--set", "keda.auth.passwordKey=pw"],
            "keys of secrets.existingSecret",
        ),
        (
            ["--set", "keda.enabled=true", "--set", "secrets.existingSecret=s", "--set", "keda.tls.ca=PEM"],
            "name its key in keda.tls.caKey",
        ),
        (["--set", "keda.enabled=true", "--set", "keda.tls.unsafeSsl=true"], "keda.tls.unsafeSsl needs TLS"),
        (["--set", "keda.enabled=true", "--set", "secrets.redisUrl=redis://:p%C3%A9@r:6379/0"], "non-ASCII"),
    ],
    ids=[
        "sentinel-no-master",
        "sentinel-no-port",
        "cluster-no-port",
        "cluster-and-sentinel",
        "negative-min",
        "pull-policy",
        "typo",
        "no-redis",
        "stub-mode",
        "env-not-a-string",
        "ingress-without-keys",
        "ingress-without-auth",
        "plaintext-key",
        "keys-and-no-auth",
        "pool-policy-in-config",
        "pool-image-with-space",
        "keda-url-ca-not-given",
        "keda-unsafe-and-ca",
        "keda-auth-keys-without-existing-secret",
        "keda-ca-with-existing-secret",
        "keda-unsafe-without-tls",
        "keda-non-ascii-password",
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    kube: KubeControlPlane, args: list[str], expected: str
) -> None:
    proc = kube.helm("template", "rel", str(CHART), *args, check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr


REDIS_CA_PATH = "/etc/sytq/redis-ca/ca.crt"


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each rendered Deployment's pod spec, by component."""
    templates = [o["spec"]["template"] for o in objects if o["kind"] == "Deployment"]
    return {t["metadata"]["labels"]["app.kubernetes.io/component"]: t["spec"] for t in templates}


def secret_data(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The release Secret's stringData (not the admin-key Secret)."""
    (found,) = [o for o in objects if o["kind"] == "Secret" and "SYTQ_REDIS_URL" in o.get("stringData", {})]
    return dict(found["stringData"])


def redis_ca_mounts(pod: dict[str, Any]) -> list[dict[str, Any]]:
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    return [
        {**mount, "secret": volumes[mount["name"]]["secret"]}
        for container in pod["containers"]
        for mount in container.get("volumeMounts", [])
        if mount["name"] == "redis-ca"
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rediss://u:p@redis:6380/0", f"rediss://u:p@redis:6380/0?ssl_ca_certs={REDIS_CA_PATH}"),
        ("rediss+sentinel://s1:26379/m?ssl_check_hostname=true", f"rediss+sentinel://s1:26379/m?ssl_check_hostname=true&ssl_ca_certs={REDIS_CA_PATH}"),
        (f"rediss://redis:6380/0?ssl_ca_certs={REDIS_CA_PATH}", f"rediss://redis:6380/0?ssl_ca_certs={REDIS_CA_PATH}"),
    ],
    ids=["added", "appended", "already-named"],
)  # fmt: skip
def test_redis_ca_secret_is_mounted_in_every_redis_pod_and_named_in_the_url(
    kube: KubeControlPlane, tmp_path: Path, url: str, expected: str
) -> None:
    ca = {"name": "redis-ca-bundle", "key": "ca.pem"}
    secret_volume = {"secretName": "redis-ca-bundle", "items": [{"key": "ca.pem", "path": "ca.crt"}]}
    mount = {"name": "redis-ca", "mountPath": "/etc/sytq/redis-ca", "readOnly": True, "secret": secret_volume}
    for keda in (False, True):
        values = {
            "redisTLS": {"caSecret": ca},
            "secrets": {"redisUrl": url},
            "keda": {"enabled": keda},
            "workerPool": {"enabled": not keda},
        }
        objects = render_values(kube, tmp_path, values)
        assert secret_data(objects)["SYTQ_REDIS_URL"] == expected
        pods = pod_specs(objects)
        for component in ("api", "controller", *(["worker"] if keda else [])):
            assert redis_ca_mounts(pods[component]) == [mount], component
        config = named(objects, "ConfigMap")["data"]
        # pool workers: the controller mounts this Secret (tests/k8s/test_operator_units.py)
        assert config["SYTQ_CONTROLLER_POOL_REDIS_CA_SECRET"] == "redis-ca-bundle"
        assert config["SYTQ_CONTROLLER_POOL_REDIS_CA_KEY"] == "ca.pem"
        # a pool still may not name the CA Secret itself: it is not added to the pool policy
        assert "redis-ca-bundle" not in config["SYTQ_CONTROLLER_POOL_SECRETS"].split(",")
        if keda:
            triggers, auth = keda_objects(objects)
            assert auth is not None
            assert {"parameter": "ca", "name": "redis-ca-bundle", "key": "ca.pem"} in auth["spec"][
                "secretTargetRef"
            ]
            assert "enableTLS" not in triggers[0]["metadata"]
    without = render(kube)
    assert all(redis_ca_mounts(pod) == [] for pod in pod_specs(without).values())
    assert "SYTQ_CONTROLLER_POOL_REDIS_CA_SECRET" not in named(without, "ConfigMap")["data"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rediss://r:6380/0?ssl_ca_certs=/o/ca.pem", "ssl_ca_certs=/o/ca.pem, but redisTLS.caSecret is"),
        ("redis://r:6379/0", "redisTLS.caSecret needs TLS"),
    ],
    ids=["other-ca-path", "plain-redis"],
)  # fmt: skip
def test_redis_ca_secret_refuses_a_url_it_cannot_serve(
    kube: KubeControlPlane, url: str, expected: str
) -> None:
    args = ["--set", "redisTLS.caSecret.name=ca", "--set-string", f"secrets.redisUrl={url}"]
    proc = kube.helm("template", "rel", str(CHART), *args, check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr


NO_STUB_RESOURCE_MODE = [
    "--set", "api.resourceMode=true", "--set", "workerPool.minReplicas=1", "--set", "stubLLM.enabled=false",
]  # fmt: skip
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
    [[], NO_STUB_RESOURCE_MODE, OPTIONAL_OBJECTS],
    ids=["default", "resource-mode-no-stub", "keda-ingress-servicemonitor"],
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
    # the release's admission policy refuses a pool outside its ConfigMap's lists, and lets the
    # release's own pool through
    wait_until(lambda: policy_enforced(kube, namespace), 30, "the release's admission policy is not enforced")
    for obj in (d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "LLMWorkerPool"):
        obj["metadata"]["namespace"] = namespace
        kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(obj))
    notes = status["info"]["notes"]
    assert "kubectl -n" in notes
    stub_url = f"http://{release}-syt-queue-stub-llm.{namespace}.svc:8081"
    if not values:  # keyless: the notes say the answers are canned and where from
        assert f"the workers call the release's stub LLM at {stub_url}" in notes
        kube.kubectl("get", "deployment,service", f"{release}-syt-queue-stub-llm", "-n", namespace)
    else:
        assert "stub LLM at" not in notes
    if "stubLLM.enabled=false" in values:  # no key and no stub: said plainly
        assert "WARNING: no Deepseek API key and no stub LLM" in notes


@pytest.fixture
def without_pool_admission(operator_env: OperatorEnv) -> Iterator[OperatorEnv]:
    """The manifests' pool admission policy, bound to syt-queue with the manifests' names, unbound."""
    with admission_policy_absent(operator_env.kube):
        yield operator_env


def test_controller_gives_the_chart_pool_workers_the_release_config(
    without_pool_admission: OperatorEnv,
) -> None:
    """The chart's pool through the real controller: the worker Deployment it builds loads the
    release's ConfigMap (whose LLM URL is the stub's Service), and a pool without the new fields
    gets a Deployment without them."""
    env = without_pool_admission
    objects = render(env.kube, "--namespace", NAMESPACE, "--set", "workerPool.name=chart-pool")
    config, pool = named(objects, "ConfigMap"), named(objects, "LLMWorkerPool")
    bare_spec = {key: pool["spec"][key] for key in ("image", "serviceAccountName")}
    plain = {"apiVersion": pool["apiVersion"], "kind": "LLMWorkerPool", "metadata": {"name": "plain-pool"},
             "spec": bare_spec}  # fmt: skip
    for obj in (config, pool, plain):
        obj["metadata"]["namespace"] = NAMESPACE
    # the release's pool policy (from its ConfigMap) is the controller's
    policy = {k: v for k, v in config["data"].items() if k.startswith("SYTQ_CONTROLLER_POOL_")}
    env.kube.apply([config, pool, plain])
    controller = env.start_controller(**policy)
    try:

        def deployment(name: str) -> dict[str, Any] | None:
            got = env.kubectl("get", "deployment", name, "-o", "json", check=False)
            return json.loads(got.stdout) if got.returncode == 0 else None

        built = wait_until(lambda: deployment("chart-pool-worker"), 30, controller.log)
        bare = wait_until(lambda: deployment("plain-pool-worker"), 30, controller.log)
        template = built["spec"]["template"]
        (container,) = template["spec"]["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        assert template["metadata"]["annotations"] == pool["spec"]["podAnnotations"]
        # what a keyless worker pod would load from that ConfigMap, as stored in the apiserver
        stored = json.loads(env.kubectl("get", "configmap", config["metadata"]["name"], "-o", "json").stdout)
        assert stored["data"]["SYTQ_LLM_BASE_URL"] == f"http://rel-syt-queue-stub-llm.{NAMESPACE}.svc:8081"
        # the pool's own settings are explicit env, which Kubernetes puts above envFrom
        names = {e["name"] for e in container["env"]}
        assert {"SYTQ_QUEUES", "SYTQ_WORKER_CONCURRENCY", "SYTQ_CALLBACK_SECRET"} <= names

        (bare_container,) = bare["spec"]["template"]["spec"]["containers"]
        assert "envFrom" not in bare_container and "annotations" not in bare["spec"]["template"]["metadata"]
        # fields dropped from the pool (e.g. by a helm upgrade) leave the pods too
        patch = [{"op": "remove", "path": f"/spec/{field}"} for field in ("envFrom", "podAnnotations", "env")]
        env.kubectl("patch", "llmworkerpool", "chart-pool", "--type=json", "-p", json.dumps(patch))

        def updated_container() -> dict[str, Any] | None:
            dep = deployment("chart-pool-worker")
            got: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0] if dep else {}
            return got if "envFrom" not in got else None

        container = wait_until(updated_container, 30, controller.log)
        assert "SYTQ_CALLBACK_SECRET" not in {e["name"] for e in container["env"]}
        rolled = deployment("chart-pool-worker")
        assert rolled is not None and "annotations" not in rolled["spec"]["template"]["metadata"]

        # and as built: the same container fields as before envFrom/podAnnotations existed
        plain_template = build_deployment("p", NAMESPACE, plain["spec"], replicas=0)["spec"]["template"]
        assert set(plain_template["metadata"]) == {"labels"}
        assert set(plain_template["spec"]["containers"][0]) == {
            "name", "image", "args", "env", "ports", "resources", "securityContext", "volumeMounts",
            "startupProbe", "livenessProbe", "readinessProbe",
        }  # fmt: skip
    finally:
        # pools first: while they exist, the running controller would build their Deployments again
        env.kubectl(
            "delete", "llmworkerpool", "chart-pool", "plain-pool", "--ignore-not-found", "--timeout=60s"
        )
        env.kubectl("delete", "deployment", "chart-pool-worker", "plain-pool-worker", "--ignore-not-found")
        env.kubectl("delete", "configmap", config["metadata"]["name"], "--ignore-not-found")


def test_apiserver_refuses_an_env_from_entry_naming_two_sources(
    operator_manifests: KubeControlPlane, kube_namespace: str
) -> None:
    bad = {
        "apiVersion": "llm.syt.io/v1alpha1", "kind": "LLMWorkerPool",
        "metadata": {"name": "bad", "namespace": kube_namespace},
        "spec": {"image": "i", "envFrom": [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]},
    }  # fmt: skip
    proc = operator_manifests.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0
    assert "each envFrom entry names exactly one of configMapRef or secretRef" in proc.stderr


def _secret_data(kube: KubeControlPlane, namespace: str, name: str) -> dict[str, str]:
    found = json.loads(kube.kubectl("get", "secret", name, "-n", namespace, "-o", "json").stdout)
    return {k: base64.b64decode(v).decode() for k, v in found["data"].items()}


def test_a_keyless_install_generates_an_admin_key_and_callback_secret_kept_on_upgrade(
    operator_manifests: KubeControlPlane,
) -> None:
    kube = operator_manifests
    namespace = f"chart-{uuid.uuid4().hex[:8]}"
    kube.create_namespace(namespace)
    kube.helm("install", "sytq", str(CHART), "--namespace", namespace, "--wait=false")
    settings = _secret_data(kube, namespace, "sytq-syt-queue-secrets")
    admin_key = _secret_data(kube, namespace, "sytq-syt-queue-admin-key")["api-key"]
    assert len(settings["SYTQ_CALLBACK_SECRET"]) >= 32 and len(admin_key) >= 32
    # The API holds only the key's hash, with the admin scope.
    assert settings["SYTQ_API_KEYS"] == f"admin:{hashlib.sha256(admin_key.encode()).hexdigest()}:admin"
    notes = json.loads(kube.helm("status", "sytq", "--namespace", namespace, "-o", "json").stdout)["info"][
        "notes"
    ]
    assert "sytq-syt-queue-admin-key" in notes and "Authorization: Bearer" in notes
    kube.helm(
        "upgrade", "sytq", str(CHART), "--namespace", namespace, "--set", "api.replicas=1", "--wait=false"
    )
    assert _secret_data(kube, namespace, "sytq-syt-queue-secrets") == settings
    assert _secret_data(kube, namespace, "sytq-syt-queue-admin-key")["api-key"] == admin_key
    # Keys given later replace the generated one, and no plain-text key Secret is left rendered.
    kube.helm("upgrade", "sytq", str(CHART), "--namespace", namespace, "--set", f"secrets.apiKeys={ADMIN}")
    after = _secret_data(kube, namespace, "sytq-syt-queue-secrets")
    assert (
        after["SYTQ_API_KEYS"] == ADMIN and after["SYTQ_CALLBACK_SECRET"] == settings["SYTQ_CALLBACK_SECRET"]
    )
    assert (
        kube.kubectl("get", "secret", "sytq-syt-queue-admin-key", "-n", namespace, check=False).returncode
        != 0
    )


def test_controller_mounts_the_chart_redis_ca_into_pool_workers(without_pool_admission: OperatorEnv) -> None:
    """redisTLS.caSecret through the real controller: the pool's worker Deployment, as the apiserver
    stores it, mounts that Secret read-only at the path the chart puts into the Redis URL."""
    env = without_pool_admission
    objects = render(
        env.kube, "--namespace", NAMESPACE, "--set", "workerPool.name=ca-pool",
        "--set", "secrets.redisUrl=rediss://redis:6380/0", "--set", "redisTLS.caSecret.name=redis-tls",
    )  # fmt: skip
    config, pool = named(objects, "ConfigMap"), named(objects, "LLMWorkerPool")
    for obj in (config, pool):
        obj["metadata"]["namespace"] = NAMESPACE
    policy = {k: v for k, v in config["data"].items() if k.startswith("SYTQ_CONTROLLER_POOL_")}
    env.kube.apply([config, pool])
    controller = env.start_controller(**policy)
    try:

        def pod_spec() -> dict[str, Any] | None:
            got = env.kubectl("get", "deployment", "ca-pool-worker", "-o", "json", check=False)
            return json.loads(got.stdout)["spec"]["template"]["spec"] if got.returncode == 0 else None

        pod = wait_until(pod_spec, 30, controller.log)
        volume = next(v for v in pod["volumes"] if v["name"] == "redis-ca")
        assert volume["secret"]["secretName"] == "redis-tls"
        assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        (container,) = pod["containers"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "redis-ca")
        assert mount == {"name": "redis-ca", "mountPath": "/etc/sytq/redis-ca", "readOnly": True}
        assert f"{mount['mountPath']}/ca.crt" == REDIS_CA_PATH
    finally:
        env.kubectl("delete", "llmworkerpool", "ca-pool", "--ignore-not-found", "--timeout=60s")
        env.kubectl("delete", "deployment", "ca-pool-worker", "--ignore-not-found")
        env.kubectl("delete", "configmap", config["metadata"]["name"], "--ignore-not-found")
