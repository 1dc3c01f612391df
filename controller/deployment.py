"""The worker Deployment an LLMWorkerPool owns (everything but the replica count, which scaling sets)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

POOL_LABEL = "llm.syt.io/pool"
WORKER_PORT_METRICS = 9090
# Workers finish in-flight LLM calls on SIGTERM; the pod's grace period bounds how long they may.
DEFAULT_GRACE_SECONDS = 120
# Kept from the grace period for what follows the wait: cancelling stragglers (5 s), the final
# outcome flush (5 s), closing connections; Kubernetes kills the pod when the grace period ends.
SHUTDOWN_MARGIN_SECONDS = 15
# Where the operator's Redis CA bundle is mounted (the chart points ssl_ca_certs here).
REDIS_CA_DIR = "/etc/sytq/redis-ca"
REDIS_CA_FILE = "ca.crt"


def deployment_name(pool_name: str) -> str:
    return f"{pool_name}-worker"


def queues_setting(queues: list[Mapping[str, Any]]) -> str:
    """``SYTQ_QUEUES`` for the pool's queue list: ``critical=6,default=3``."""
    return ",".join(f"{q['name']}={int(q.get('weight', 1))}" for q in queues)


def pool_queue_names(spec: Mapping[str, Any]) -> list[str]:
    return [str(q["name"]) for q in spec.get("queues") or [{"name": "default"}]]


def shutdown_timeout_for(grace_seconds: int) -> int:
    """``SYTQ_SHUTDOWN_TIMEOUT`` for a pod with this grace period: the wait for calls in flight."""
    return max(1, grace_seconds - SHUTDOWN_MARGIN_SECONDS)


def worker_probes() -> dict[str, Any]:
    """Probes on the worker's health server (sytq.health_server on SYTQ_METRICS_PORT).

    Startup allows for the storage migrations that run before the health server starts; liveness asks
    only whether the process answers (a Redis or database outage must not restart every worker);
    readiness reports Redis and the database.
    """
    return {
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 2,
            "failureThreshold": 150,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "metrics"},
            "periodSeconds": 10,
            "timeoutSeconds": 12,  # the database check itself gives up after 10 s
        },
    }


def _secret_env(env_name: str, ref: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if not ref:
        return []
    return [{"name": env_name, "valueFrom": {"secretKeyRef": {"name": ref["name"], "key": ref["key"]}}}]


@dataclass(frozen=True)
class RedisCaSecret:
    """The operator's Secret holding the Redis CA bundle, and its key."""

    name: str
    key: str


def _mount_redis_ca(pod_spec: dict[str, Any], container: dict[str, Any], ca: RedisCaSecret) -> None:
    pod_spec["volumes"].append(
        {
            "name": "redis-ca",
            "secret": {"secretName": ca.name, "items": [{"key": ca.key, "path": REDIS_CA_FILE}]},
        }
    )
    container["volumeMounts"].append({"name": "redis-ca", "mountPath": REDIS_CA_DIR, "readOnly": True})


def build_deployment(
    pool_name: str,
    namespace: str,
    spec: Mapping[str, Any],
    *,
    replicas: int,
    redis_ca: RedisCaSecret | None = None,
) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": "syt-queue",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": "syt-queue-controller",
        POOL_LABEL: pool_name,
    }
    selector = {"app.kubernetes.io/component": "worker", POOL_LABEL: pool_name}
    secrets = spec.get("secrets") or {}
    grace = int(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))
    env: list[dict[str, Any]] = [
        {"name": "SYTQ_QUEUES", "value": queues_setting(spec.get("queues") or [{"name": "default"}])},
        {"name": "SYTQ_WORKER_CONCURRENCY", "value": str(int(spec.get("concurrency", 10)))},
        {"name": "SYTQ_METRICS_PORT", "value": str(WORKER_PORT_METRICS)},
        {"name": "SYTQ_SHUTDOWN_TIMEOUT", "value": str(shutdown_timeout_for(grace))},
        *_secret_env("DEEPSEEK_API_KEY", secrets.get("deepseekApiKey")),
        *_secret_env("SYTQ_REDIS_URL", secrets.get("redisUrl")),
        *_secret_env("SYTQ_DATABASE_URL", secrets.get("databaseUrl")),
        *[dict(e) for e in spec.get("env") or []],
    ]
    container: dict[str, Any] = {
        "name": "worker",
        "image": spec["image"],
        "args": ["worker"],
        "env": env,
        "ports": [{"name": "metrics", "containerPort": WORKER_PORT_METRICS}],
        **worker_probes(),
        "resources": dict(spec.get("resources") or {}),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.get("envFrom"):
        # Whole ConfigMaps/Secrets (e.g. the chart's config); the explicit env above wins on a clash.
        container["envFrom"] = [dict(source) for source in spec["envFrom"]]
    if spec.get("imagePullPolicy"):
        container["imagePullPolicy"] = spec["imagePullPolicy"]
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": grace,
        # Workers need no Kubernetes API: no token in the pod, whatever its ServiceAccount may do.
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    if redis_ca is not None:
        _mount_redis_ca(pod_spec, container, redis_ca)
    if spec.get("serviceAccountName"):
        pod_spec["serviceAccountName"] = spec["serviceAccountName"]
    template_metadata: dict[str, Any] = {"labels": labels}
    if spec.get("podAnnotations"):
        # e.g. a config checksum, so a changed ConfigMap rolls the workers
        template_metadata["annotations"] = dict(spec["podAnnotations"])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment_name(pool_name), "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": template_metadata, "spec": pod_spec},
        },
    }
