"""Redis topologies: no-op and LLM-shaped throughput on 1, 2 and 3 Cluster masters; failover recovery.

    python -m bench.bench_redis_topology [--quick] [--n N] [--llm-n N]

Throughput: a Redis Cluster of M masters (no replicas) is started on loopback with Debian's
redis-server, one queue per master (its name's hash tag falls into that master's slots), N no-op tasks
pre-filled per queue, then M worker processes (our Server, 100 in flight each), one per queue, drain
them. Rate = all tasks / (last handler call - first handler call, over all workers). The baseline row
is one plain Redis server (redis://, the packed single-server path) with one worker. CPU per task is
the CPU time the workers (while draining) and every redis-server (over the same phase) used, per task:
on a shared 2-core machine the rate is capped by whatever else runs, CPU per task is not.

Sentinel recovery: one master, two replicas, three Sentinels (down-after 1 s). A worker (our Server,
one task at a time) runs tasks of 20 ms; the master is killed with SIGKILL; recovery = kill -> the
first handler call of a task dequeued after the kill (from the new master). The same on a Cluster of
three masters and three replicas (cluster-node-timeout 1 s), killing the master of the worker's queue.

LLM-shaped throughput: see bench/redis_topology_llm.py (full pipeline, stub LLM, MariaDB).

Internal role: ``--role worker --url URL --queue Q --n N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import redis_topology_llm

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CONCURRENCY = 100
TASK_TYPE = "bench:noop"
ENQUEUE_BATCH = 500
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LLM_CONCURRENCY = 100  # calls in flight per worker
LLM_LATENCY = 0.1  # the stub LLM's answer time, seconds


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


async def worker(url: str, queue: str, n: int) -> None:
    """Drain ``n`` tasks of ``queue``; report the first/last handler call and the CPU spent."""
    from sytq.queue import Server, ServerConfig, Task
    from sytq.redis_connect import connect

    client = connect(url)
    done, first_ns, last_ns = 0, 0, 0
    finished = asyncio.Event()

    async def noop(task: Task) -> None:
        nonlocal done, first_ns, last_ns
        now = time.time_ns()
        first_ns = first_ns or now
        done += 1
        if done == n:
            last_ns = now
            finished.set()

    server = Server(client, ServerConfig(queues={queue: 1}, concurrency=CONCURRENCY), {TASK_TYPE: noop})
    runner = asyncio.create_task(server.run(install_signal_handlers=False))
    await server.wait_started()
    cpu_start = time.process_time()
    _emit({"event": "ready"})
    await finished.wait()
    cpu = time.process_time() - cpu_start
    server.request_stop()
    await runner
    await client.aclose()
    _emit({"event": "result", "first_ns": first_ns, "last_ns": last_ns, "cpu_s": cpu})


def _process_cpu(pid: int) -> float:
    """utime + stime of a running process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def _prefill(url: str, queues: Sequence[str], n: int) -> None:
    from sytq.queue import EnqueueRequest, QueueClient
    from sytq.redis_connect import connect

    client = connect(url)
    queue_client = QueueClient(client)
    for queue in queues:
        for start in range(0, n, ENQUEUE_BATCH):
            batch = [
                EnqueueRequest(TASK_TYPE, b"{}", queue=queue) for _ in range(min(ENQUEUE_BATCH, n - start))
            ]
            await queue_client.enqueue_many(batch)
    await client.aclose()


def _drain(url: str, queues: Sequence[str], n: int, redis_pids: Sequence[int]) -> dict[str, Any]:
    asyncio.run(_prefill(url, queues, n))
    redis_cpu_before = sum(_process_cpu(pid) for pid in redis_pids)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    role = [sys.executable, "-m", "bench.bench_redis_topology", "--role", "worker", "--url", url]
    procs = [
        subprocess.Popen([*role, "--queue", q, "--n", str(n)], stdout=subprocess.PIPE, env=env, text=True)
        for q in queues
    ]
    results = []
    for proc in procs:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "result":
                results.append(event)
        if proc.wait(60) != 0:
            raise RuntimeError(f"worker exited with {proc.returncode}")
    redis_cpu = sum(_process_cpu(pid) for pid in redis_pids) - redis_cpu_before
    total = n * len(queues)
    seconds = (max(r["last_ns"] for r in results) - min(r["first_ns"] for r in results)) / 1e9
    worker_cpu = sum(r["cpu_s"] for r in results)
    return {
        "tasks": total,
        "rate": total / seconds,
        "worker_cpu_us_per_task": worker_cpu / total * 1e6,
        "redis_cpu_us_per_task": redis_cpu / total * 1e6,
        "cpu_us_per_task": (worker_cpu + redis_cpu) / total * 1e6,
    }


def throughput(masters: int, n: int, runs: int) -> dict[str, Any]:
    """``masters`` = 0: one plain Redis server (the single-server baseline)."""
    from tests.harness.redis_cluster import RedisClusterDeployment
    from tests.harness.services import RedisServer

    samples = []
    for _ in range(runs):
        if masters == 0:
            server = RedisServer()
            server.start()
            try:
                samples.append(_drain(server.url, ["bench0"], n, [_pid(server)]))
            finally:
                server.close()
            continue
        cluster = RedisClusterDeployment(masters=masters, replicas=0)
        try:
            queues = cluster.queues_on_every_master("bench")
            samples.append(_drain(cluster.url, queues, n, [_pid(node) for node in cluster.nodes]))
        finally:
            cluster.close()
    best = max(samples, key=lambda s: s["rate"])
    return {"masters": masters, "best": best, "runs": samples}


def _pid(server: Any) -> int:
    return int(server._proc.pid)


class _Failover:
    """A replicated deployment whose master of the ``default`` queue can be killed."""

    def __init__(self, topology: str) -> None:
        from tests.harness.redis_cluster import RedisClusterDeployment
        from tests.harness.sentinel import SentinelDeployment

        self.topology = topology
        self.deployment: Any = SentinelDeployment() if topology == "sentinel" else RedisClusterDeployment()
        self.url: str = self.deployment.url

    def replicate(self) -> None:
        """Until the replicas hold every write made so far (a write then WAIT on the master)."""
        import redis

        port = self._master().port
        with redis.Redis(port=port) as client:
            client.set("sytq:bench:{default}:mark", "1")  # in the default queue's slot on a cluster
            client.execute_command("WAIT", 2 if self.topology == "sentinel" else 1, 10_000)

    def kill_master(self) -> None:
        self._master().kill()

    def _master(self) -> Any:
        if self.topology == "sentinel":
            return self.deployment.server_on(self.deployment.master_port())
        return self.deployment.master_of("asynq:{default}:pending")

    def close(self) -> None:
        self.deployment.close()


async def _recovery_once(topology: str) -> float:
    from sytq.queue import QueueClient, Server, ServerConfig, Task
    from sytq.redis_connect import connect

    failover = _Failover(topology)
    client = connect(failover.url, socket_connect_timeout=1.0, socket_timeout=2.0)
    handled, killed_at, recovery = 0, 0.0, 0.0
    warmed_up, recovered = asyncio.Event(), asyncio.Event()

    async def slow(task: Task) -> None:
        nonlocal handled, recovery
        now = time.monotonic()
        handled += 1
        if handled == 20:
            warmed_up.set()
        # One task at a time: a handler that starts 20 ms after the kill holds a task dequeued after it.
        if killed_at and now > killed_at + 0.02 and not recovered.is_set():
            recovery = now - killed_at
            recovered.set()
        await asyncio.sleep(0.02)

    try:
        # More tasks than the worker runs before the kill, all replicated before it.
        await QueueClient(client).enqueue_many([_request(i) for i in range(2000)])
        await asyncio.to_thread(failover.replicate)
        config = ServerConfig(concurrency=1, fetch_batch=1, idle_poll_max=0.05)
        server = Server(client, config, {TASK_TYPE: slow})
        runner = asyncio.create_task(server.run(install_signal_handlers=False))
        await asyncio.wait_for(warmed_up.wait(), 60)
        failover.kill_master()
        killed_at = time.monotonic()
        await asyncio.wait_for(recovered.wait(), 120)
        server.request_stop()
        await asyncio.wait_for(runner, 30)
        return recovery
    finally:
        await client.aclose()
        failover.close()


def _request(i: int) -> Any:
    from sytq.queue import EnqueueRequest

    return EnqueueRequest(TASK_TYPE, str(i).encode())


def _markdown(result: dict[str, Any]) -> str:
    llm = result["llm"]
    llm_lines = redis_topology_llm.markdown(llm["rows"], llm["n"], llm["concurrency"], llm["latency"])
    return _noop_markdown(result) + "\n" + "\n".join(llm_lines) + "\n"


def _noop_markdown(result: dict[str, Any]) -> str:
    rows = result["throughput"]
    base = rows[0]["best"]["rate"]
    lines = [
        f"## Redis topologies (N = {result['n']} no-op tasks per queue)",
        "",
        "Redis 7.0.15 on loopback, no persistence, no replicas in the throughput runs; one queue per master,"
        f" one worker process per queue ({CONCURRENCY} in flight); not pinned (2 shared cores; load average"
        f" before/after {result['load_before']}/{result['load_after']}). Best of {result['runs']} runs.",
        "",
        "| topology | tasks/s | vs single server | CPU µs/task (workers + Redis) | workers | Redis |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        best = row["best"]
        name = "single server (redis://)" if row["masters"] == 0 else f"cluster, {row['masters']} master(s)"
        lines.append(
            f"| {name} | {best['rate']:,.0f} | {best['rate'] / base:.2f}x | {best['cpu_us_per_task']:.0f} |"
            f" {best['worker_cpu_us_per_task']:.0f} | {best['redis_cpu_us_per_task']:.0f} |"
        )
    recovery = result["sentinel_recovery_s"]
    lines += [
        "",
        "Every run, tasks/s: "
        + "; ".join(
            f"{'single' if r['masters'] == 0 else str(r['masters']) + 'm'}: "
            + ", ".join(f"{s['rate']:,.0f}" for s in r["runs"])
            for r in rows
        ),
        "",
        f"Sentinel failover (down-after 1 s, SIGKILL of the master), kill -> first task dequeued from the new"
        f" master: {', '.join(f'{s:.2f} s' for s in recovery)} (median {statistics.median(recovery):.2f} s;"
        " goal < 10 s).",
        "",
        "Redis Cluster failover (3 masters, 3 replicas, cluster-node-timeout 1 s, SIGKILL of the master of"
        " the worker's queue), kill -> first task dequeued from the promoted replica: "
        + ", ".join(f"{s:.2f} s" for s in result["cluster_recovery_s"])
        + f" (median {statistics.median(result['cluster_recovery_s']):.2f} s).",
        "",
        "Rates move with whatever else runs on the 2 shared cores (see the load average and the spread);"
        " CPU per task is the figure that carries over to a bigger machine: with a core for each master"
        " and each worker, throughput is the cores given to workers divided by the workers' CPU per task,"
        " while each master carries only its own queues' share of the Redis CPU.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_redis_topology", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=None, help="tasks per queue")
    parser.add_argument("--llm-n", type=int, default=None, help="LLM-shaped tasks per queue")
    parser.add_argument("--role", choices=["worker"])
    parser.add_argument("--url")
    parser.add_argument("--queue")
    args = parser.parse_args(argv)
    if args.role == "worker":
        asyncio.run(worker(args.url, args.queue, args.n))
        return 0
    n = args.n or (2000 if args.quick else 20000)
    runs = 1 if args.quick else 3
    load_before = f"{os.getloadavg()[0]:.1f}"
    rows = [throughput(masters, n, runs) for masters in (0, 1, 2, 3)]
    trials = range(1 if args.quick else 3)
    recovery = [asyncio.run(_recovery_once("sentinel")) for _ in trials]
    cluster_recovery = [asyncio.run(_recovery_once("cluster")) for _ in trials]
    llm_n = args.llm_n or (600 if args.quick else 3000)
    llm_rows = redis_topology_llm.run((1, 2, 3), llm_n, LLM_CONCURRENCY, LLM_LATENCY)
    result = {
        "n": n,
        "runs": runs,
        "throughput": rows,
        "sentinel_recovery_s": recovery,
        "cluster_recovery_s": cluster_recovery,
        "load_before": load_before,
        "load_after": f"{os.getloadavg()[0]:.1f}",
        "llm": {"n": llm_n, "concurrency": LLM_CONCURRENCY, "latency": LLM_LATENCY, "rows": llm_rows},
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "redis_topology.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (RESULTS_DIR / "redis_topology.md").write_text(_markdown(result), encoding="utf-8")
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
