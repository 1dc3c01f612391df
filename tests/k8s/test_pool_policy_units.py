"""The controller's LLMWorkerPool policy (controller/pool_policy.py) as pure functions; the same
rules at admission and through the real controller are in test_workerpool_escalation.py."""

from __future__ import annotations

from typing import Any

import pytest

from controller.deployment import RedisCaSecret, build_deployment
from controller.pool_policy import PoolPolicy, violations
from sytq.settings import Settings

POLICY = PoolPolicy.from_settings(
    Settings(
        controller_pool_images="registry.local/sytq:1.0, registry.local/team/*",
        controller_pool_service_accounts="sytq-worker",
        controller_pool_secrets="sytq-secrets",
        controller_pool_config_maps="sytq-config",
        controller_pool_env="SYTQ_CALLBACK_SECRET,SYTQ_LOG_LEVEL",
    )
)
COMPLIANT: dict[str, Any] = {
    "image": "registry.local/sytq:1.0",
    "serviceAccountName": "sytq-worker",
    "secrets": {"redisUrl": {"name": "sytq-secrets", "key": "SYTQ_REDIS_URL"}},
    "env": [
        {"name": "SYTQ_CALLBACK_SECRET", "valueFrom": {"secretKeyRef": {"name": "sytq-secrets", "key": "k"}}},
        {"name": "SYTQ_LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "sytq-config", "key": "k"}}},
    ],
    "envFrom": [{"configMapRef": {"name": "sytq-config"}}, {"secretRef": {"name": "sytq-secrets"}}],
    "podAnnotations": {"checksum/config": "abc"},
}


def test_a_compliant_pool_has_no_violations() -> None:
    assert violations(COMPLIANT, POLICY) == []
    assert violations({**COMPLIANT, "image": "registry.local/team/sytq@sha256:00"}, POLICY) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image": "evil.example/miner:1"}, "spec.image: 'evil.example/miner:1'"),
        ({"image": "registry.local/sytq:1.0-evil"}, "spec.image"),  # exact names are exact
        ({"serviceAccountName": "sytq-controller"}, "spec.serviceAccountName: 'sytq-controller'"),
        ({"serviceAccountName": None}, "spec.serviceAccountName: 'default'"),
        (
            {"secrets": {"databaseUrl": {"name": "other", "key": "k"}}},
            "spec.secrets.databaseUrl.name: 'other'",
        ),
        ({"env": [{"name": "SYTQ_LLM_BASE_URL", "value": "https://evil"}]}, "spec.env[0].name"),
        (
            {"env": [{"name": "SYTQ_LOG_LEVEL", "valueFrom": {"secretKeyRef": {"name": "x", "key": "k"}}}]},
            "spec.env[0].valueFrom.secretKeyRef.name: 'x'",
        ),
        (
            {
                "env": [
                    {"name": "SYTQ_LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}
                ]
            },
            "spec.env[0].valueFrom.configMapKeyRef.name: 'x'",
        ),
        ({"envFrom": [{"secretRef": {"name": "x"}}]}, "spec.envFrom[0].secretRef.name: 'x'"),
        ({"envFrom": [{"configMapRef": {"name": "x"}}]}, "spec.envFrom[0].configMapRef.name: 'x'"),
        (
            {"podAnnotations": {"container.apparmor.security.beta.kubernetes.io/worker": "unconfined"}},
            "spec.podAnnotations",
        ),
    ],
)
def test_each_refused_field_is_named(change: dict[str, Any], field: str) -> None:
    spec = {k: v for k, v in {**COMPLIANT, **change}.items() if v is not None}
    (found,) = violations(spec, POLICY)
    assert found.startswith(field), found
    assert "is not" in found or "reserved" in found


def test_empty_settings_allow_nothing() -> None:
    nothing = PoolPolicy.from_settings(Settings())
    refused = violations(COMPLIANT, nothing)
    assert sorted(v.split(":")[0] for v in refused) == sorted(
        [
            "spec.image",
            "spec.serviceAccountName",
            "spec.secrets.redisUrl.name",
            "spec.env[0].name",
            "spec.env[0].valueFrom.secretKeyRef.name",
            "spec.env[1].name",
            "spec.env[1].valueFrom.configMapKeyRef.name",
            "spec.envFrom[0].configMapRef.name",
            "spec.envFrom[1].secretRef.name",
        ]
    )


def test_worker_pods_mount_no_service_account_token() -> None:
    pod = build_deployment("p", "ns", COMPLIANT, replicas=0)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "sytq-worker"


def test_the_operators_redis_ca_secret_gives_pools_no_secret_of_their_own() -> None:
    settings = Settings(
        controller_pool_images="registry.local/sytq:1.0",
        controller_pool_service_accounts="sytq-worker",
        controller_pool_secrets="sytq-secrets",
        controller_pool_config_maps="sytq-config",
        controller_pool_env="SYTQ_CALLBACK_SECRET,SYTQ_LOG_LEVEL",
        controller_pool_redis_ca_secret="redis-ca",
    )
    policy = PoolPolicy.from_settings(settings)
    # naming the CA Secret (or any other) in the pool's own fields is still refused
    for change, field in (
        ({"envFrom": [{"secretRef": {"name": "redis-ca"}}]}, "spec.envFrom[0].secretRef.name: 'redis-ca'"),
        ({"secrets": {"redisUrl": {"name": "redis-ca", "key": "ca.crt"}}}, "spec.secrets.redisUrl.name"),
    ):
        (found,) = violations({**COMPLIANT, **change}, policy)
        assert found.startswith(field), found
    # a pool cannot bring volumes of its own: only the operator's CA Secret is mounted
    hostile = {**COMPLIANT, "volumes": [{"name": "x", "secret": {"secretName": "cloud-admin"}}]}
    pod = build_deployment("p", "ns", hostile, replicas=0, redis_ca=RedisCaSecret("redis-ca", "ca.crt"))
    volumes = pod["spec"]["template"]["spec"]["volumes"]
    assert [v.get("secret", {}).get("secretName") for v in volumes] == [None, "redis-ca"]
