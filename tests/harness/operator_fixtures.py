"""Fixtures for the operator's tests: the manifests applied to the real apiserver, and local
processes for the controller (as its ServiceAccount), the worker and the stub LLM.

Everything runs in namespace ``syt-queue`` (the manifests' namespace and RBAC, applied as is).
Namespaces cannot be deleted without a controller-manager, so each test cleans up its LLMTasks.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import services
from tests.harness.kube import REPO_ROOT, KubeControlPlane
from tests.harness.services import RedisServer, free_port

NAMESPACE = "syt-queue"
CONTROLLER_SA = "syt-queue-controller"
MANIFESTS = REPO_ROOT / "manifests"
POOL_POLICY = "syt-queue-llmworkerpool"  # the ValidatingAdmissionPolicy and its binding
CRDS = ("llmtasks.llm.syt.io", "llmworkerpools.llm.syt.io", "kopfpeerings.kopf.dev")


@dataclass
class Proc:
    """A child process with its log file; killed at teardown."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, nothing graceful."""
        if self.alive:
            self.popen.kill()
        self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


@dataclass
class ProcessFactory:
    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log_path = self.workdir / f"{name}-{len(self.procs)}.log"
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        with log_path.open("wb") as log:
            popen = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        # Enough time for a controller to withdraw from the peering object on its own; the stub
        # and workers may hold long fake LLM calls open and need no grace.
        for proc in reversed(self.procs):
            proc.stop(15 if proc.name == "controller" else 3)


def manifest_pool_policy() -> dict[str, str]:
    """The LLMWorkerPool policy keys of the manifests' ConfigMap (what the in-cluster controller
    loads through envFrom), for a controller started as a local process."""
    config = yaml.safe_load((MANIFESTS / "20-configmap.yaml").read_text())
    return {k: str(v) for k, v in config["data"].items() if k.startswith("SYTQ_CONTROLLER_POOL_")}


def llmtask_body(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "llm.syt.io/v1alpha1", "kind": "LLMTask", "metadata": metadata, "spec": spec}


@dataclass
class OperatorEnv:
    kube: KubeControlPlane
    controller_kubeconfig: Path
    redis_url: str
    factory: ProcessFactory
    stub_url: str = ""

    def kubectl(self, *args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.kube.kubectl("-n", NAMESPACE, *args, check=check, **kwargs)

    def llmtasks(self, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", "llmtasks", "-o", "json"] + (["-l", selector] if selector else [])
        items: list[dict[str, Any]] = json.loads(self.kubectl(*args).stdout)["items"]
        return items

    def llmtask(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = json.loads(self.kubectl("get", "llmtask", name, "-o", "json").stdout)
        return obj

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def submit(self, name: str, **spec: Any) -> None:
        """Create (apply) an LLMTask named ``name`` with this spec."""
        self.apply(llmtask_body(name, **spec))

    def event_reasons(self, name: str) -> set[str]:
        """Reasons of the Events about the object called ``name``."""
        selector = f"involvedObject.name={name}"
        events = json.loads(self.kubectl("get", "events", "--field-selector", selector, "-o", "json").stdout)
        return {e["reason"] for e in events["items"]}

    def events_once_posted(self, name: str, expected: set[str], within: float = 30) -> set[str]:
        """The Event reasons about ``name`` once ``expected`` are among them (kopf posts Events
        asynchronously, after the status patch a test may have waited for)."""
        wait_until(lambda: expected <= self.event_reasons(name), within, lambda: f"{expected} posted")
        return self.event_reasons(name)

    def start_controller(self, **env: str) -> Proc:
        base = {
            "KUBECONFIG": str(self.controller_kubeconfig),
            "SYTQ_REDIS_URL": self.redis_url,
            "SYTQ_CONTROLLER_NAMESPACES": NAMESPACE,
            "SYTQ_CONTROLLER_PEERING": NAMESPACE,
            "SYTQ_CONTROLLER_RESYNC_SECONDS": "2",
            "SYTQ_CONTROLLER_SCALE_INTERVAL_SECONDS": "1",
            "SYTQ_METRICS_PORT": "0",
            "SYTQ_LOG_LEVEL": "INFO",
            **manifest_pool_policy(),
        }
        return self.factory.start("controller", [sys.executable, "-m", "controller"], {**base, **env})

    def start_stub(self, faults: str = "", latency: str = "0") -> Proc:
        port = free_port()
        proc = self.factory.start(
            "stub-llm",
            [
                sys.executable,
                "-m",
                "sytq_cli",
                "stub-llm",
                "--port",
                str(port),
                "--latency",
                latency,
                "--faults",
                faults,
            ],
            {},
        )
        self.stub_url = f"http://127.0.0.1:{port}"
        wait_for_port(port, proc)
        return proc

    def start_worker(self, queues: str = "default=1", concurrency: int = 50, **env: str) -> Proc:
        assert self.stub_url, "start the stub LLM first"
        base = {
            "SYTQ_REDIS_URL": self.redis_url,
            "SYTQ_DATABASE_URL": f"sqlite:///{self.factory.workdir / 'worker.db'}",
            "SYTQ_LLM_BASE_URL": self.stub_url,
            "DEEPSEEK_API_KEY": "sk-test",
            "SYTQ_QUEUES": queues,
            "SYTQ_WORKER_CONCURRENCY": str(concurrency),
            "SYTQ_PUBLISH_TASK_EVENTS": "true",
            "SYTQ_LLM_RETRY_BASE_SECONDS": "0.05",
            "SYTQ_LLM_RETRY_MAX_SECONDS": "0.2",
            "SYTQ_METRICS_PORT": "0",
            "SYTQ_SHUTDOWN_TIMEOUT": "1",
            "SYTQ_CALLBACK_SECRET": "operator-test-secret",
        }
        return self.factory.start("worker", [sys.executable, "-m", "sytq_cli", "worker"], {**base, **env})

    def delete_all(self, plural: str = "llmtasks") -> None:
        """Remove every object of a kind, finalizers included (the controller may be stopped)."""
        from kubernetes import client, config

        api = client.CustomObjectsApi(config.new_client_from_config(str(self.kube.kubeconfig)))
        items = api.list_namespaced_custom_object("llm.syt.io", "v1alpha1", NAMESPACE, plural)["items"]
        for item in items:
            name = item["metadata"]["name"]
            if item["metadata"].get("finalizers"):
                api.patch_namespaced_custom_object(
                    "llm.syt.io",
                    "v1alpha1",
                    NAMESPACE,
                    plural,
                    name,
                    {"metadata": {"finalizers": None}},
                    _content_type="application/merge-patch+json",
                )
            api.delete_namespaced_custom_object("llm.syt.io", "v1alpha1", NAMESPACE, plural, name)
        api.api_client.close()


WRITE_VERBS = ("POST", "PATCH", "PUT", "DELETE", "APPLY")
_REQUEST_COUNTER = "apiserver_request_total{"


def apiserver_writes(kube: KubeControlPlane) -> Counter[str]:
    """Writes the apiserver has answered so far, by ``verb resource[/subresource]`` (its metrics)."""
    request = urllib.request.Request(
        f"{kube.server}/metrics", headers={"Authorization": f"Bearer {kube.admin_token}"}
    )
    context = ssl.create_default_context(cafile=str(kube.ca_file))
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        text = response.read().decode()
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith(_REQUEST_COUNTER):
            continue
        labels_text, value = line[len(_REQUEST_COUNTER) :].rsplit("} ", 1)
        labels = {k: v.strip('"') for k, v in (part.split("=", 1) for part in labels_text.split(","))}
        if labels.get("verb") not in WRITE_VERBS:
            continue
        kind = labels.get("resource", "")
        if labels.get("subresource"):
            kind += "/" + labels["subresource"]
        counts[f"{labels['verb']} {kind}"] += int(float(value))
    return counts


def wait_for_port(port: int, proc: Proc, timeout: float = 20.0) -> None:
    """The harness's port wait, with the process's name and log in the error."""
    try:
        services.wait_for_port(port, timeout, proc.popen)
    except (RuntimeError, TimeoutError) as exc:
        raise type(exc)(f"{proc.name}: {exc}:\n{proc.log()}") from exc


def wait_until(
    check: Callable[[], Any], timeout: float, message: str | Callable[[], str], interval: float = 0.2
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``message`` (or its result,
    e.g. a process log read at that moment) on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    text = message() if callable(message) else message
    raise AssertionError(f"timed out after {timeout}s: {text} (last: {last!r})"[-6000:])


def policy_enforced(kube: KubeControlPlane, namespace: str = NAMESPACE) -> bool:
    """Whether an LLMWorkerPool with a foreign image is refused at admission in ``namespace`` right
    now (a new or deleted policy binding takes a moment to apply)."""
    probe = {
        "apiVersion": "llm.syt.io/v1alpha1",
        "kind": "LLMWorkerPool",
        "metadata": {"name": "policy-probe", "namespace": namespace},
        "spec": {"image": "evil.example/probe:1"},
    }
    proc = kube.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False)
    return proc.returncode != 0 and "is not an allowed image" in proc.stderr  # the policy's verdict


@contextmanager
def admission_policy_absent(kube: KubeControlPlane) -> Iterator[None]:
    """The manifests' LLMWorkerPool admission policy unbound (as if never installed), and bound
    again afterwards."""
    kube.kubectl("delete", f"validatingadmissionpolicybinding/{POOL_POLICY}")
    try:
        wait_until(lambda: not policy_enforced(kube), 30, "binding deleted but still enforced")
        yield
    finally:
        kube.kubectl("apply", "-f", str(MANIFESTS / "13-admission-workerpool.yaml"))
        wait_until(lambda: policy_enforced(kube), 30, "binding restored but not enforced")


def apply_manifests(kube: KubeControlPlane) -> None:
    """The documented install: ``kubectl apply -f manifests/``, wait for the CRDs, then
    ``manifests/custom/`` (peering object, default pool). The default pool is removed again so
    that tests start without pools (no controller has put a finalizer on it yet)."""
    kube.kubectl("apply", "-f", str(MANIFESTS))
    kube.kubectl("wait", "--for=condition=established", "--timeout=60s", *(f"crd/{c}" for c in CRDS))
    # The pool admission policy reads its lists from the ConfigMap applied a moment ago; until the
    # apiserver has loaded it, the policy refuses every pool ("no params found").
    pool = str(MANIFESTS / "custom" / "default-workerpool.yaml")
    dry_run = ("apply", "--dry-run=server", "-f", pool)
    wait_until(lambda: kube.kubectl(*dry_run, check=False).returncode == 0, 30, "policy parameters loaded")
    kube.kubectl("apply", "-f", str(MANIFESTS / "custom"))
    kube.kubectl("-n", NAMESPACE, "delete", "llmworkerpool", "default")


@pytest.fixture(scope="session")
def operator_manifests(kube: KubeControlPlane) -> KubeControlPlane:
    apply_manifests(kube)
    return kube


@pytest.fixture
def operator_env(
    operator_manifests: KubeControlPlane, redis_server: RedisServer, tmp_path: Path
) -> Iterator[OperatorEnv]:
    """Manifests applied, Redis flushed, no LLMTask left over; processes are started by the test."""
    import redis

    if not redis_server.running:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushall()
    kube = operator_manifests
    env = OperatorEnv(
        kube=kube,
        controller_kubeconfig=kube.service_account_kubeconfig(NAMESPACE, CONTROLLER_SA),
        redis_url=redis_server.url,
        factory=ProcessFactory(tmp_path),
    )
    env.delete_all("llmtasks")
    try:
        yield env
    finally:
        env.factory.close()
        env.delete_all("llmtasks")
        env.delete_all("llmworkerpools")
