"""LLM-shaped throughput of the full pipeline on Redis Clusters of 1, 2 and 3 masters (bench_redis_topology).

Per run: a Cluster of M masters (no replicas), one queue per master, N llm:chat tasks per queue, then
M worker processes (``sytq worker``'s pipeline, as bench_llm_load's ``ours``: provider call to the stub
LLM over HTTP, row stored in MariaDB, result written), one per queue, C calls in flight each. The stub
answers after a fixed latency. Rate = least-squares slope of all queues' processed counters between the
moment M*C tasks are done and the moment M*C remain (ramp-up and drain excluded); CPU per task is over
the same window, by process group (workers, Redis nodes, stub, MariaDB).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.bench_llm_load import _cpu_seconds, _slope

ROOT = Path(__file__).resolve().parent.parent
TASK_TYPE = "llm:chat"


async def _enqueue(url: str, queues: Sequence[str], n: int) -> None:
    from sytq.queue import EnqueueRequest, QueueClient
    from sytq.redis_connect import connect
    from sytq.tasks import LLMChatPayload

    client = connect(url)
    queue_client = QueueClient(client)
    for queue in queues:
        for offset in range(0, n, 500):
            batch = []
            for i in range(offset, min(n, offset + 500)):
                message = {"role": "user", "content": f"{queue} {i} {uuid.uuid4().hex[:8]}"}
                payload = LLMChatPayload(model="deepseek-chat", messages=[message])  # type: ignore[list-item]
                batch.append(
                    EnqueueRequest(TASK_TYPE, payload.model_dump_json().encode(), queue=queue, max_retry=3)
                )
            errors = [o for o in await queue_client.enqueue_many(batch) if isinstance(o, Exception)]
            if errors:
                raise RuntimeError(f"enqueue failed: {errors[0]}")
    await client.aclose()


def _counters(client: Any, queues: Sequence[str]) -> tuple[int, int]:
    from sytq import redis_keys as keys

    processed = sum(int(client.get(keys.processed_total_key(q)) or 0) for q in queues)
    failed = sum(int(client.get(keys.failed_total_key(q)) or 0) for q in queues)
    return processed, failed


def _pid(server: Any) -> int:
    """The harness keeps each server's Popen private."""
    return int(server._proc.pid)


def _cpu(groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(_cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}


def one_run(
    masters: int,
    n: int,
    concurrency: int,
    latency: float,
    mariadb: Any,
    stub: Any,
    services: dict[str, list[int]],
) -> dict[str, Any]:
    import redis.cluster

    from sytq.storage import upgrade
    from tests.harness.redis_cluster import RedisClusterDeployment

    cluster = RedisClusterDeployment(masters=masters, replicas=0)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        queues = cluster.queues_on_every_master("llm")
        database_url = mariadb.create_database(f"bench_topo_{masters}_{uuid.uuid4().hex[:6]}")
        upgrade(database_url)
        httpx.post(f"{stub.url}/_stub/reset").raise_for_status()
        httpx.post(f"{stub.url}/_stub/config", json={"latency": str(latency)}).raise_for_status()
        asyncio.run(_enqueue(cluster.url, queues, n))
        base_env = dict(os.environ) | {
            "PYTHONPATH": str(ROOT),
            "SYTQ_REDIS_URL": cluster.url,
            "SYTQ_DATABASE_URL": database_url,
            "SYTQ_LLM_BASE_URL": stub.url,
            "DEEPSEEK_API_KEY": "bench",
            "SYTQ_WORKER_CONCURRENCY": str(concurrency),
            "SYTQ_METRICS_PORT": "0",
            "SYTQ_PUBLISH_TASK_EVENTS": "false",
            "SYTQ_CALLBACK_SECRET": "bench-secret",
        }
        command = [sys.executable, "-m", "bench.bench_llm_load", "--role", "ours"]
        workers = [
            subprocess.Popen(
                command, env=base_env | {"SYTQ_QUEUES": f"{q}=1"}, cwd=ROOT, stdout=subprocess.DEVNULL
            )
            for q in queues
        ]
        groups = {
            "workers": [w.pid for w in workers],
            "redis": [_pid(node) for node in cluster.nodes],
            **services,
        }
        total, edge = n * masters, concurrency * masters
        client = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
        samples: list[tuple[float, int]] = []
        cpu_marks: list[tuple[int, dict[str, float]]] = []
        started = time.monotonic()
        deadline = started + max(120.0, 20 * total * latency / edge)
        failed = 0
        while True:
            processed, failed = _counters(client, queues)
            samples.append((time.monotonic(), processed))
            if edge <= processed <= total - edge:
                cpu_marks.append((processed, _cpu(groups)))
            if (
                processed >= total
                or time.monotonic() > deadline
                or any(w.poll() is not None for w in workers)
            ):
                break
            time.sleep(0.25)
        client.close()
        window = [(t, float(done)) for t, done in samples if edge <= done <= total - edge]
        rate = _slope(window) if len(window) >= 2 else samples[-1][1] / (samples[-1][0] - started)
        cpu_us: dict[str, float] = {}
        if len(cpu_marks) >= 2 and cpu_marks[-1][0] > cpu_marks[0][0]:
            (first_done, first), (last_done, last) = cpu_marks[0], cpu_marks[-1]
            cpu_us = {k: (last[k] - first[k]) * 1e6 / (last_done - first_done) for k in last}
        notes = [] if samples[-1][1] >= total else [f"only {samples[-1][1]} of {total} done"]
        if failed:
            notes.append(f"{failed} failed attempts")
        if len(window) < 2:
            notes.append("too few tasks for a steady state: rate over the whole run")
        return {
            "masters": masters,
            "tasks": total,
            "rate": rate,
            "ideal": masters * concurrency / latency,
            "cpu_us_per_task": cpu_us,
            "cpu_us_total": sum(cpu_us.values()),
            "load_average": round(os.getloadavg()[0], 1),
            "note": "; ".join(notes),
        }
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        cluster.close()


def run(masters_list: Sequence[int], n: int, concurrency: int, latency: float) -> list[dict[str, Any]]:
    """One run per master count, on one MariaDB server and one stub LLM shared by all."""
    from tests.harness.llm_fixtures import StubLLMProcess
    from tests.harness.services import MariaDBServer

    mariadb, stub = MariaDBServer(), StubLLMProcess()
    try:
        mariadb.start()
        stub.start()
        services = {"stub": [_pid(stub)], "mariadbd": [_pid(mariadb)]}
        return [one_run(m, n, concurrency, latency, mariadb, stub, services) for m in masters_list]
    finally:
        stub.close()
        mariadb.close()


def markdown(rows: Sequence[dict[str, Any]], n: int, concurrency: int, latency: float) -> list[str]:
    base = rows[0]["rate"]
    per_core = 1e6 / max(1.0, rows[-1]["cpu_us_per_task"].get("workers", 1.0))
    lines = [
        f"## LLM-shaped load on Cluster masters (N = {n} llm:chat tasks per queue)",
        "",
        f"The full pipeline (stub LLM over HTTP answering after {latency * 1000:.0f} ms, row stored in"
        f" MariaDB, result written), one worker process per master's queue with {concurrency} calls in flight"
        " each; sustained rate (ramp-up and drain excluded); load average (1 min) at the end of each run.",
        "",
        "| masters (= workers) | tasks/s | vs 1 master | ideal (calls in flight / latency) |"
        " CPU µs/task total | workers | Redis | stub | MariaDB | cores busy | load avg | note |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        cpu = row["cpu_us_per_task"]
        lines.append(
            f"| {row['masters']} | {row['rate']:,.0f} | {row['rate'] / base:.2f}x | {row['ideal']:,.0f} |"
            f" {row['cpu_us_total']:,.0f} | {cpu.get('workers', 0):,.0f} | {cpu.get('redis', 0):,.0f} |"
            f" {cpu.get('stub', 0):,.0f} | {cpu.get('mariadbd', 0):,.0f} |"
            f" {row['rate'] * row['cpu_us_total'] / 1e6:.2f} | {row['load_average']} |"
            f" {row['note']} |"
        )
    return [
        *lines,
        "",
        "Cores busy = tasks/s x the CPU per task of this run's processes (workers, Redis nodes, stub,"
        " MariaDB). Redis's CPU per task stays flat as masters are added, so Redis is not what holds the"
        " rate below the ideal; the run's processes and other jobs (see the load average: above 2 means"
        " more runnable processes than the 2 cores) share the machine. With a core per worker, each master"
        " and its worker would add up to one worker's ideal; the workers' CPU per task says how many"
        f" tasks/s one core carries (about {per_core:,.0f}"
        " at the last row's figure).",
    ]
