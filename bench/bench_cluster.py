"""The chart on the real single-node cluster (tests/harness/cluster.py): how long `helm install`
takes to have every pod Ready, how long an LLMWorkerPool takes from zero pods to N Ready pods
once tasks arrive, and 1,000 LLMTasks run through worker pods (bench/cluster_llmtasks.py).

    python -m bench.bench_cluster [--quick] [--rounds R] [--pods N] [--llmtasks N]

Needs root and the binaries of ``hack/k8s/build.sh --node``. Writes bench/results/cluster.json/.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from redis import Redis

from bench.cluster_llmtasks import run_llmtasks
from tests.harness.cluster import HOST_IP, KubeCluster
from tests.harness.image_fixtures import HACK_IMAGE, buildah
from tests.harness.kube_cluster_fixtures import (
    POD_NETWORK_HOSTS,
    HostServices,
    Release,
    apply_pool,
    chart_values,
    helm_install,
)
from tests.harness.services import MariaDBServer, RedisServer

RESULTS_DIR = Path(__file__).resolve().parent / "results"
IMAGE = "localhost/syt-queue:bench-cluster"


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _build_and_import(cluster: KubeCluster) -> float:
    subprocess.run(["bash", str(HACK_IMAGE / "build.sh"), IMAGE], check=True, capture_output=True)
    t0 = time.monotonic()
    archive = cluster.workdir / "image.tar"
    buildah("push", "--quiet", IMAGE, f"docker-archive:{archive}:{IMAGE}", timeout=600)
    cluster.import_image(archive)
    archive.unlink()
    return time.monotonic() - t0


def _scale_from_zero(release: Release, name: str, pods: int) -> dict[str, float]:
    """A pool at zero replicas gets pods x 50 tasks; seconds to the Deployment's scale-up and to
    ``pods`` Ready pods."""
    cluster = release.cluster
    queue = "burst"  # one the release's API accepts (chart_values' SYTQ_QUEUES)
    apply_pool(
        release,
        name,
        queues=[{"name": queue, "weight": 1}],
        minReplicas=0,
        maxReplicas=pods,
        targetBacklogPerReplica=50,
        scaleDownStabilizationSeconds=5,
    )

    def at_zero() -> bool:
        replicas = cluster.kubectl(
            "get",
            f"deployment/{name}-worker",
            "-n",
            release.namespace,
            "-o",
            "jsonpath={.spec.replicas}",
            check=False,
        )
        return replicas.stdout.strip() == "0"

    cluster.wait_for(f"{name}-worker at 0 replicas", at_zero, timeout=120)
    body = {"tasks": [{"prompt": f"{name} {i}", "queue": queue} for i in range(pods * 50)]}
    t0 = time.monotonic()
    status, answer = release.api("POST", "/api/v1/tasks/llm:batch", body, timeout=60)
    assert status in (200, 201, 202), answer
    selector = f"llm.syt.io/pool={name}"
    scaled_at = cluster.wait_for(
        "scale-up",
        lambda: release.pods(selector) and time.monotonic(),
        timeout=120,
        interval=0.2,
    )
    ready_at = cluster.wait_for(
        f"{pods} Ready pods",
        lambda: len(release.ready_pods(selector)) >= pods and time.monotonic(),
        timeout=300,
    )
    cluster.kubectl("delete", "llmworkerpool", name, "-n", release.namespace, "--wait=false")
    return {"first_pod_created_s": scaled_at - t0, "all_ready_s": ready_at - t0}


def _llmtasks_round(cluster: KubeCluster, services: HostServices, n: int, pods: int) -> dict[str, Any]:
    """A release whose pool starts at zero pods (at most ``pods``), then ``n`` LLMTasks."""
    namespace = "syt-queue"  # where bench_operator's watch looks
    cluster.create_namespace(namespace)
    services.wire(cluster, namespace)
    pool = {"minReplicas": 0, "maxReplicas": pods, "concurrency": 100, "targetBacklogPerReplica": 100}
    values = chart_values(IMAGE, services, database="bench_llmtasks", workerPool=pool)
    release = helm_install(cluster, "syt-queue", namespace, values)
    load_before = _load()
    figures = asyncio.run(run_llmtasks(release, services.redis.url, n))
    figures["load_before_after"] = f"{load_before} -> {_load()}"
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_cluster", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pods", type=int, default=3)
    parser.add_argument("--llmtasks", type=int, default=1000)
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    llmtasks = min(args.llmtasks, 200) if args.quick else args.llmtasks
    load_before = _load()
    cluster = KubeCluster()
    redis = RedisServer(extra_address=HOST_IP, password="bench")
    mariadb = MariaDBServer(extra_address=HOST_IP)
    result: dict[str, Any] = {"rounds": rounds, "pods": args.pods}
    try:
        cluster.start()
        result["cluster_start_s"] = cluster.startup_seconds
        result["image_import_s"] = _build_and_import(cluster)
        redis.start()
        redis_client = Redis.from_url(redis.url)
        mariadb.start()
        services = HostServices(redis, mariadb)
        mariadb.execute(f"CREATE USER 'sytq'@'{POD_NETWORK_HOSTS}' IDENTIFIED BY '{services.db_password}'")
        mariadb.execute(f"GRANT ALL PRIVILEGES ON *.* TO 'sytq'@'{POD_NETWORK_HOSTS}'")
        installs: list[float] = []
        scales: list[dict[str, float]] = []
        for round_no in range(rounds):
            namespace = f"bench-{round_no}"
            cluster.create_namespace(namespace)
            services.wire(cluster, namespace)
            values = chart_values(IMAGE, services, database=f"bench_{round_no}")
            release = helm_install(cluster, f"syt-queue-{round_no}", namespace, values)
            installs.append(release.install_seconds)
            scales.append(_scale_from_zero(release, f"burst{round_no}", args.pods))
            cluster.helm("uninstall", f"syt-queue-{round_no}", "-n", namespace, "--wait", check=False)
            redis_client.flushall()  # the next round starts from empty queues
        result["helm_install_to_ready_s"] = installs
        result["scale_from_zero"] = scales
        result["llmtasks"] = _llmtasks_round(cluster, services, llmtasks, args.pods)
    finally:
        cluster.stop()
        redis.close()
        mariadb.close()
    result["load_before_after"] = f"{load_before} -> {_load()}"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "cluster.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (RESULTS_DIR / "cluster.md").write_text(_markdown(result), encoding="utf-8")
    print(_markdown(result))
    return 0


def _markdown(result: dict[str, Any]) -> str:
    installs = result["helm_install_to_ready_s"]
    first = [s["first_pod_created_s"] for s in result["scale_from_zero"]]
    ready = [s["all_ready_s"] for s in result["scale_from_zero"]]

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} s (runs: {', '.join(f'{v:.1f}' for v in values)})"

    return "\n".join(
        [
            f"## Cluster (single node on this machine, {result['rounds']} round(s))",
            "",
            "kubelet + containerd + kube-proxy + CoreDNS from tests/harness/cluster.py; our image imported"
            " into containerd; Redis and MariaDB on the host behind selector-less Services. Load average"
            f" before -> after: {result['load_before_after']}.",
            "",
            "| measure | median |",
            "|---|---:|",
            f"| cluster start (control plane, node Ready, DNS) | {result['cluster_start_s']:.1f} s |",
            f"| image: buildah push + ctr import | {result['image_import_s']:.1f} s |",
            f"| `helm install` -> all Deployments Ready (API, controller, stub, worker) | {cell(installs)} |",
            f"| pool 0 -> first worker pod, once {result['pods'] * 50} tasks arrive | {cell(first)} |",
            f"| pool 0 -> {result['pods']} worker pods Ready | {cell(ready)} |",
            "",
            *_llmtask_lines(result["llmtasks"]),
        ]
    )


def _llmtask_lines(run: dict[str, Any]) -> list[str]:
    operator_json = RESULTS_DIR / "operator.json"
    ref = json.loads(operator_json.read_text())["operator"] if operator_json.exists() else {}
    by_process = ", ".join(f"{k} {v}" for k, v in run["cpu_ms_per_task_by_process"].items())
    ref_done = f"{ref['all_succeeded_seconds']} s ({ref['throughput_per_s']}/s)" if ref else "-"
    ref_lag = f"{ref['lag_p50_ms']} / {ref['lag_p95_ms']} / {ref['lag_max_ms']} ms" if ref else "-"
    return [
        f"### {run['tasks']} LLMTasks through worker pods (pool from 0 pods,"
        f" at most {run['most_ready_worker_pods']} Ready at once)",
        "",
        "Created 32 at a time with the API's client, dispatched by the controller pod, run by the pool's"
        " worker pods against the release's stub LLM (zero latency), status mirrored by the controller."
        " Status lag: the worker's own completed timestamp -> a separate watch sees `phase: Succeeded`"
        f" (an upper bound of the patch time). Load average before -> after: {run['load_before_after']}."
        " Beside it the median burst round of bench/results/operator.md (its own run: apiserver only,"
        " controller and one worker as host processes). Workers finish tasks while the creates are still"
        " arriving, and the creates take longer here (one apiserver also serving the kubelet, scheduler and"
        " controller-manager on the same 2 cores): status patches wait behind them, so the lag is mostly"
        " the creation storm; compare the create time with the time to the last Succeeded.",
        "",
        "| measure | cluster (pods) | apiserver only |",
        "|---|---:|---:|",
        f"| all Succeeded after | {run['all_succeeded_seconds']} s ({run['throughput_per_s']}/s)"
        f" | {ref_done} |",
        f"| status lag p50 / p95 / max | {run['lag_p50_ms']} / {run['lag_p95_ms']} / {run['lag_max_ms']} ms"
        f" | {ref_lag} |",
        f"| {run['tasks']} creates took | {run['create_seconds']} s | {ref.get('create_seconds', '-')} s |",
        f"| first task done / workers' first to last completion | {run['first_done_after_s']} s /"
        f" {run['workers_done_within_s']} s | |",
        f"| worker pods used | {run['worker_pods_used']} | 1 worker process |",
        f"| CPU per task, every process on the machine | {run['cpu_ms_per_task']} ms | |",
        "",
        f"CPU ms per task by process: {by_process}.",
        "",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
