"""Fixtures for tests on the single-node Kubernetes cluster (tests/harness/cluster.py): the cluster
(``kube_cluster``; ``cluster`` is the Redis Cluster of tests/harness/cluster_fixtures.py), our image
imported into its containerd, Redis and MariaDB for its pods, and a Helm release of the chart.

Redis and MariaDB run on this host (the suite's own servers, also listening on the bridge address
10.244.0.1) and pods reach them by name through a Service without selector and its Endpoints, the
way a cluster reaches a managed database outside it: no database image to build or import, no pod
to start, and the tests read the same servers directly. Redis requires a password and MariaDB has
a user for the pod network only, since the bridge address is reachable by every pod.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.cluster import HOST_IP, POD_CIDR, KubeCluster
from tests.harness.image_fixtures import buildah
from tests.harness.kube import REPO_ROOT
from tests.harness.services import MariaDBServer, RedisServer

CHART = REPO_ROOT / "charts" / "syt-queue"
RELEASE_NAMESPACE = "syt-queue"  # manifests/examples/llmtask.yaml's namespace
RELEASE_NAME = "syt-queue"  # = the chart's name, so objects are syt-queue-api, syt-queue-controller, ...
POD_NETWORK_HOSTS = POD_CIDR.rsplit(".", 1)[0] + ".%"  # MariaDB's host pattern for 10.244.0.0/24
API_KEY = "sytq-cluster-test-key"


@dataclass
class HostServices:
    """Redis and MariaDB on this host, reachable from pods at ``redis:6379`` and ``mariadb:3306``."""

    redis: RedisServer
    mariadb: MariaDBServer
    db_user: str = "sytq"
    db_password: str = field(default_factory=lambda: secrets.token_hex(12))

    def wire(self, cluster: KubeCluster, namespace: str) -> None:
        """Services ``redis`` and ``mariadb`` in ``namespace``, pointing at this host."""
        objects: list[dict[str, Any]] = []
        for name, port, target in (("redis", 6379, self.redis.port), ("mariadb", 3306, self.mariadb.port)):
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"ports": [{"name": "tcp", "port": port, "targetPort": target}]},
                }
            )
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": namespace},
                    "subsets": [{"addresses": [{"ip": HOST_IP}], "ports": [{"name": "tcp", "port": target}]}],
                }
            )
        cluster.apply(objects)

    def redis_url_in_cluster(self, db: int = 0) -> str:
        return f"redis://:{self.redis.password}@redis:6379/{db}"

    def database_url_in_cluster(self, database: str) -> str:
        self.mariadb.create_database(database)
        return f"mysql+pymysql://{self.db_user}:{self.db_password}@mariadb:3306/{database}?charset=utf8mb4"


@dataclass
class Release:
    """A Helm release of charts/syt-queue on the cluster (or the manifests, applied as ``syt-queue``)."""

    cluster: KubeCluster
    name: str
    namespace: str
    values: dict[str, Any]
    install_seconds: float = 0.0

    def pods(self, selector: str) -> list[dict[str, Any]]:
        pods = self.cluster.get_json("pods", "-n", self.namespace, "-l", selector)
        items: list[dict[str, Any]] = pods["items"]
        return items

    def ready_pods(self, selector: str) -> list[dict[str, Any]]:
        return [p for p in self.pods(selector) if pod_ready(p)]

    def service_url(self, service: str, port: int) -> str:
        ip = self.cluster.get_json("service", service, "-n", self.namespace)["spec"]["clusterIP"]
        return f"http://{ip}:{port}"

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        """A request to the API through its Service (ClusterIP, routed by kube-proxy)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.service_url(f"{self.name}-api", 80) + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


def pod_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    if status.get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def api_keys_setting(key: str = API_KEY) -> str:
    """``SYTQ_API_KEYS`` for one admin key."""
    return f"cluster-test:{hashlib.sha256(key.encode()).hexdigest()}:admin"


def helm_install(
    cluster: KubeCluster, name: str, namespace: str, values: dict[str, Any], timeout: float = 300.0
) -> Release:
    """``helm install`` and wait until every Deployment of the release has its replicas Ready."""
    values_file = cluster.workdir / f"values-{namespace}-{name}.yaml"
    values_file.write_text(yaml.safe_dump(values))
    t0 = time.monotonic()
    cluster.helm("install", name, str(CHART), "-n", namespace, "-f", str(values_file), timeout=timeout)
    release = Release(cluster, name, namespace, values)

    def all_ready() -> bool:
        deployments = cluster.get_json("deployments", "-n", namespace)["items"]
        return bool(deployments) and all(
            (d.get("status", {}).get("readyReplicas") or 0) >= d["spec"]["replicas"] for d in deployments
        )

    cluster.wait_for(f"release {name}'s Deployments Ready", all_ready, timeout=timeout)
    release.install_seconds = time.monotonic() - t0
    return release


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    cluster = KubeCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def cluster_image(kube_cluster: KubeCluster, sytq_image: str) -> str:
    """Our image (built from the Dockerfile) in the cluster's containerd, under the same name."""
    cluster = kube_cluster
    archive = Path(cluster.workdir) / "sytq-image.tar"
    buildah("push", "--quiet", sytq_image, f"docker-archive:{archive}:{sytq_image}", timeout=600)
    try:
        cluster.import_image(archive)
    finally:
        archive.unlink(missing_ok=True)
    return sytq_image


@pytest.fixture(scope="session")
def cluster_services(kube_cluster: KubeCluster) -> Iterator[HostServices]:
    """Redis and MariaDB for the pods (started after the cluster: they listen on its bridge)."""
    redis = RedisServer(extra_address=HOST_IP, password=secrets.token_hex(12))
    mariadb = MariaDBServer(extra_address=HOST_IP)
    services = HostServices(redis, mariadb)
    try:
        redis.start()
        mariadb.start()
        mariadb.execute(
            f"CREATE USER '{services.db_user}'@'{POD_NETWORK_HOSTS}' IDENTIFIED BY '{services.db_password}'"
        )
        mariadb.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{services.db_user}'@'{POD_NETWORK_HOSTS}'")
        yield services
    finally:
        redis.close()
        mariadb.close()


def chart_values(image: str, services: HostServices, database: str, **overrides: Any) -> dict[str, Any]:
    """Values for a test release: our imported image, never pulled; the host's Redis and MariaDB;
    one API key; one replica each; the in-release stub LLM answers the workers; callbacks allowed to
    this host's bridge address."""
    repository, tag = image.rsplit(":", 1)
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "secrets": {
            "redisUrl": services.redis_url_in_cluster(),
            "databaseUrl": services.database_url_in_cluster(database),
            "callbackSecret": secrets.token_hex(16),
            "apiKeys": api_keys_setting(),
        },
        "config": {
            # the API accepts tasks for the queues test pools serve
            "SYTQ_QUEUES": "critical=6,default=3,low=1,burst=1,slow=1",
            # callbacks may go to receivers on this host's bridge address (private, so refused by
            # default): the one exemption an operator makes for an in-house receiver
            "SYTQ_CALLBACK_ALLOW_NETS": f"{HOST_IP}/32",
        },
        "api": {"replicas": 1},
        "controller": {"replicas": 1, "resyncSeconds": 2, "scaleIntervalSeconds": 2},
        "workerPool": {
            "minReplicas": 1,
            "maxReplicas": 2,
            "concurrency": 10,
            # test pools may point at their own stub LLM
            "policy": {"env": ["SYTQ_LLM_BASE_URL"]},
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


@pytest.fixture(scope="session")
def helm_release(
    kube_cluster: KubeCluster, cluster_image: str, cluster_services: HostServices
) -> Iterator[Release]:
    """The chart installed once for the session in namespace syt-queue (one worker pod at least)."""
    cluster = kube_cluster
    cluster.create_namespace(RELEASE_NAMESPACE)
    cluster_services.wire(cluster, RELEASE_NAMESPACE)
    values = chart_values(cluster_image, cluster_services, database="sytq_helm")
    release = helm_install(cluster, RELEASE_NAME, RELEASE_NAMESPACE, values)
    print(f"helm install -> every Deployment Ready in {release.install_seconds:.1f}s")
    yield release
    # LLMTasks first, while the controller runs (their finalizer); pools need no such care.
    namespace = ("-n", RELEASE_NAMESPACE)
    cluster.kubectl("delete", "llmtasks", "--all", *namespace, "--timeout=60s", check=False, timeout=90)
    cluster.helm("uninstall", RELEASE_NAME, *namespace, "--wait", "--timeout=60s", check=False, timeout=90)


def deploy_stub_llm(release: Release, name: str, latency: str, image: str | None = None) -> str:
    """A `sytq stub-llm` Deployment + Service of our image (by default the release's pool's)
    answering after ``latency`` (seconds or a distribution spec); returns its in-cluster base URL
    once a pod is Ready."""
    if image is None:
        pool = release.cluster.get_json("llmworkerpool", "default", "-n", release.namespace)
        image = str(pool["spec"]["image"])
    labels = {"app": name}
    args = ["stub-llm", "--host", "0.0.0.0", "--port", "8081", "--latency", latency]
    container = {
        "name": "stub",
        "image": image,
        "imagePullPolicy": "Never",
        "args": args,
        "ports": [{"name": "http", "containerPort": 8081}],
        "readinessProbe": {"httpGet": {"path": "/models", "port": "http"}, "periodSeconds": 2},
    }
    pod = {"automountServiceAccountToken": False, "containers": [container]}
    metadata = {"name": name, "namespace": release.namespace}
    release.cluster.apply(
        [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": metadata,
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": pod},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": metadata,
                "spec": {"selector": labels, "ports": [{"port": 8081, "targetPort": "http"}]},
            },
        ]
    )
    release.cluster.wait_for(f"stub {name} Ready", lambda: release.ready_pods(f"app={name}"), timeout=180)
    return f"http://{name}:8081"


def apply_pool(release: Release, name: str, llm_url: str | None = None, **spec: Any) -> None:
    """An LLMWorkerPool like the release's own, with ``spec`` fields replaced (and the provider URL)."""
    base = release.cluster.get_json("llmworkerpool", "default", "-n", release.namespace)["spec"]
    full = {**base, **spec}
    if llm_url:  # the pool's own env wins over the release's ConfigMap
        full["env"] = [*base.get("env", []), {"name": "SYTQ_LLM_BASE_URL", "value": llm_url}]
    release.cluster.apply(
        {
            "apiVersion": "llm.syt.io/v1alpha1",
            "kind": "LLMWorkerPool",
            "metadata": {"name": name, "namespace": release.namespace},
            "spec": full,
        }
    )


def llmtask(
    name: str, prompt: str, queue: str = "default", namespace: str = RELEASE_NAMESPACE
) -> dict[str, Any]:
    """An LLMTask manifest for deepseek-chat (the stub LLMs answer any model)."""
    return {
        "apiVersion": "llm.syt.io/v1alpha1",
        "kind": "LLMTask",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"model": "deepseek-chat", "prompt": prompt, "queue": queue},
    }


def delete_quietly(release: Release, *what: str) -> None:
    release.cluster.kubectl("delete", *what, "-n", release.namespace, "--wait=false", check=False)


def worker_tasks_processed(release: Release, pool: str = "default") -> float:
    """Sum of sytq_tasks_processed_total over a pool's Ready worker pods (their /metrics)."""
    total = 0.0
    for pod in release.ready_pods(f"llm.syt.io/pool={pool}"):
        url = f"http://{pod['status']['podIP']}:9090/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("sytq_tasks_processed_total{"):
                    total += float(line.rsplit(" ", 1)[1])
    return total


def stub_calls_by_prompt(release: Release, stub: str) -> dict[str, int]:
    """A stub LLM's call count per prompt (its /_stub/stats, read through its Service); the key is
    every message of the call joined, so look a prompt up by containment."""
    url = release.service_url(stub, 8081) + "/_stub/stats"
    with urllib.request.urlopen(url, timeout=10) as response:
        counts: dict[str, int] = json.loads(response.read())["by_prompt"]
    return counts
