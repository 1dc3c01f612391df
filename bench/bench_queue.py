"""Queue engine benchmark: no-op tasks through our engine, asynq (Go) and arq, on one Redis.

    python -m bench.bench_queue [--quick] [--n N] [--peers ours,asynq,arq]

For each peer, three phases on a fresh (flushed) Redis started here on a free loopback port with no
persistence:

- enqueue: one enqueuer process (pinned to core 0) enqueues N tasks; no worker runs.
- process: one worker process (pinned to core 1) drains those N pending tasks.
- e2e:     the worker runs first, then the enqueuer enqueues N; rate = N / (last task run - first enqueue).

Go runs with GOMAXPROCS=1, so every peer gets one core per process. Rates are timed inside the
processes (enqueue calls; first to last handler call), so process start-up is not counted for anyone.
Redis cost per task, from counters read before and after each phase: round trips = `INFO stats`
total_reads_processed (socket reads Redis served: one per request or pipeline, a few for a very large
pipeline), and commands = `INFO commandstats` calls (Redis counts the commands a Lua script runs too).
Both include a worker's idle polling and heartbeats during the phase, which is part of its real cost.

Internal roles (one process each): ``--role ours-enqueue|ours-worker|arq-enqueue|arq-worker``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CONCURRENCY = 100  # in-flight tasks per worker process, the same for every peer
ENQUEUE_CONCURRENCY = 64  # in-flight enqueue calls for clients without a batch call
OURS_BATCH = 500  # tasks per enqueue_many call (one round trip)
OURS_BATCHES_IN_FLIGHT = 4  # asynq's client gets 64 calls in flight; ours overlaps a few batches
TASK_TYPE = "bench:noop"
PAYLOAD = b'{"n":0}'

# ---------------------------------------------------------------------------------------- roles
# Each role runs in its own (pinned) process and prints JSON lines: {"event": "ready"} when a worker
# can take tasks, then one result object.


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


async def _bounded(n: int, concurrency: int, one: Callable[[], Awaitable[object]]) -> None:
    """Run ``one()`` n times with at most ``concurrency`` calls in flight."""
    remaining = n

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    await asyncio.gather(*(lane() for _ in range(min(concurrency, n))))


class Stamps:
    """Times of the first and the n-th handler call in a worker."""

    def __init__(self, n: int) -> None:
        self.n, self.done, self.first_ns, self.last_ns = n, 0, 0, 0

    def tick(self) -> bool:
        """Count one handled task; True exactly when the n-th arrives."""
        now = time.time_ns()
        self.first_ns = self.first_ns or now
        self.done += 1
        if self.done == self.n:
            self.last_ns = now
            return True
        return False

    def emit(self) -> None:
        _emit({"n": self.n, "first_ns": self.first_ns, "last_ns": self.last_ns})


async def ours_enqueue(url: str, n: int, mode: str) -> None:
    import redis.asyncio as aioredis

    from sytq.queue import EnqueueRequest, QueueClient

    client = aioredis.Redis.from_url(url)
    queue_client = QueueClient(client)
    await client.ping()
    start = time.time_ns()
    if mode == "batch":
        sizes = [min(OURS_BATCH, n - offset) for offset in range(0, n, OURS_BATCH)]

        async def one_batch() -> None:
            outcomes = await queue_client.enqueue_many([EnqueueRequest(TASK_TYPE, PAYLOAD)] * sizes.pop())
            failed = [o for o in outcomes if isinstance(o, Exception)]
            if failed:
                raise RuntimeError(f"enqueue_many failed: {failed[0]}")

        await _bounded(len(sizes), OURS_BATCHES_IN_FLIGHT, one_batch)
    else:
        await _bounded(n, ENQUEUE_CONCURRENCY, lambda: queue_client.enqueue(TASK_TYPE, PAYLOAD))
    end = time.time_ns()
    await client.aclose()
    _emit({"n": n, "start_ns": start, "end_ns": end, "seconds": (end - start) / 1e9})


async def ours_worker(url: str, n: int) -> None:
    import redis.asyncio as aioredis

    from sytq.queue import Server, ServerConfig, Task

    client = aioredis.Redis.from_url(url)
    stamps = Stamps(n)
    server: Server

    async def noop(task: Task) -> None:
        if stamps.tick():
            server.request_stop()

    config = ServerConfig(queues={"default": 1}, concurrency=CONCURRENCY)
    server = Server(client, config, {TASK_TYPE: noop})
    runner = asyncio.create_task(server.run(install_signal_handlers=False))
    await server.wait_started()
    _emit({"event": "ready"})
    await runner  # returns after the graceful stop has acknowledged every task
    await client.aclose()
    stamps.emit()


def _arq_settings(url: str) -> Any:
    from arq.connections import RedisSettings

    return RedisSettings.from_dsn(url)


async def arq_enqueue(url: str, n: int) -> None:
    from arq import create_pool

    pool = await create_pool(_arq_settings(url))
    start = time.time_ns()
    await _bounded(n, ENQUEUE_CONCURRENCY, lambda: pool.enqueue_job("noop"))
    end = time.time_ns()
    await pool.aclose()
    _emit({"n": n, "start_ns": start, "end_ns": end, "seconds": (end - start) / 1e9})


async def arq_worker(url: str, n: int) -> None:
    from arq.worker import Worker, func

    stamps = Stamps(n)
    started, finished = asyncio.Event(), asyncio.Event()
    recorded = 0

    async def noop(ctx: dict[str, Any]) -> None:
        stamps.tick()

    async def on_startup(ctx: dict[str, Any]) -> None:
        started.set()

    async def after_job_end(ctx: dict[str, Any]) -> None:
        nonlocal recorded
        recorded += 1  # the job's result and queue bookkeeping are written by now
        if recorded == n:
            finished.set()

    worker = Worker(
        functions=[func(noop, name="noop")],
        redis_settings=_arq_settings(url),
        max_jobs=CONCURRENCY,
        handle_signals=False,
        on_startup=on_startup,
        after_job_end=after_job_end,
    )
    main = asyncio.create_task(worker.main())
    await started.wait()
    _emit({"event": "ready"})
    await finished.wait()
    main.cancel()
    await asyncio.gather(main, return_exceptions=True)
    await worker.close()
    stamps.emit()


def run_role(role: str, url: str, n: int) -> None:
    roles: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "ours-enqueue": lambda: ours_enqueue(url, n, "batch"),
        "ours-enqueue-single": lambda: ours_enqueue(url, n, "single"),
        "ours-worker": lambda: ours_worker(url, n),
        "arq-enqueue": lambda: arq_enqueue(url, n),
        "arq-worker": lambda: arq_worker(url, n),
    }
    asyncio.run(roles[role]())


# ---------------------------------------------------------------------------------------- parent


def _info(client: redis.Redis, section: str) -> dict[str, Any]:
    """INFO ``section`` as a dict (redis-py types every reply as possibly awaitable)."""
    return cast(dict[str, Any], client.info(section))


class RedisUnderTest:
    """The test harness's throw-away redis-server (free loopback port, no persistence) plus counters."""

    def __init__(self) -> None:
        from tests.harness.services import RedisServer

        self.server = RedisServer()
        self.server.start()
        self.url = self.server.url
        self.client = redis.Redis(port=self.server.port)
        self.version = str(_info(self.client, "server")["redis_version"])

    def counters(self) -> tuple[int, int]:
        """(commands executed, socket reads served): the second counts client round trips, since
        a pipeline arrives in one read (a large one in a few)."""
        commands = sum(int(v["calls"]) for v in _info(self.client, "commandstats").values())
        return commands, int(_info(self.client, "stats")["total_reads_processed"])

    def fresh(self) -> None:
        self.client.flushall()
        self.client.config_resetstat()

    def close(self) -> None:
        self.client.close()
        self.server.close()


def _pinned(core: int) -> Callable[[], None]:
    def pin() -> None:
        os.sched_setaffinity(0, {core})

    return pin


@dataclass
class Peer:
    name: str
    enqueue_cmd: Callable[[str, int], list[str]]
    worker_cmd: Callable[[str, int], list[str]]
    pending: Callable[[redis.Redis], int]
    env: dict[str, str] = field(default_factory=dict)


def _python_role(role: str) -> Callable[[str, int], list[str]]:
    return lambda url, n: [
        sys.executable,
        "-m",
        "bench.bench_queue",
        "--role",
        role,
        "--redis",
        url,
        "--n",
        str(n),
    ]


def _asynq_pending(client: redis.Redis) -> int:
    return int(cast(int, client.llen("asynq:{default}:pending")))


def peers(probe: Path | None) -> dict[str, Peer]:
    found = {
        "ours": Peer("ours", _python_role("ours-enqueue"), _python_role("ours-worker"), _asynq_pending),
        "ours-single": Peer(
            "ours-single", _python_role("ours-enqueue-single"), _python_role("ours-worker"), _asynq_pending
        ),
        "arq": Peer(
            "arq",
            _python_role("arq-enqueue"),
            _python_role("arq-worker"),
            lambda c: int(cast(int, c.zcard("arq:queue"))),
        ),
    }
    if probe is not None:
        found["asynq"] = Peer(
            "asynq",
            lambda url, n: [
                str(probe),
                "bench-enqueue",
                "--redis",
                url,
                "--n",
                str(n),
                "--concurrency",
                str(ENQUEUE_CONCURRENCY),
                "--type",
                TASK_TYPE,
            ],
            lambda url, n: [
                str(probe),
                "bench-process",
                "--redis",
                url,
                "--n",
                str(n),
                "--concurrency",
                str(CONCURRENCY),
            ],
            _asynq_pending,
            env={"GOMAXPROCS": "1"},
        )
    return found


class Child:
    """A pinned child process speaking JSON lines."""

    def __init__(self, cmd: list[str], core: int, env: dict[str, str]) -> None:
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, env={**os.environ, **env}, preexec_fn=_pinned(core), text=True
        )

    def next_line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(30)
            raise RuntimeError(f"{self.cmd[:4]} exited with {self.proc.returncode} without output")
        result: dict[str, Any] = json.loads(line)
        return result

    def result(self, timeout: float = 600) -> dict[str, Any]:
        """The last JSON line, after the process exits successfully."""
        out, _ = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"{self.cmd[:4]} failed with {self.proc.returncode}")
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        last: dict[str, Any] = lines[-1]
        return last


def _phase(n: int, seconds: float, before: tuple[int, int], after: tuple[int, int]) -> dict[str, float]:
    commands, reads = after[0] - before[0], after[1] - before[1]  # our 2 INFO calls are noise at N >= 2000
    return {
        "rate": n / seconds,
        "seconds": seconds,
        "redis_calls_per_task": commands / n,
        "round_trips_per_task": reads / n,
    }


def measure(peer: Peer, rut: RedisUnderTest, n: int, cores: tuple[int, int]) -> dict[str, Any]:
    enq_core, work_core = cores
    out: dict[str, Any] = {}

    # enqueue only
    rut.fresh()
    before = rut.counters()
    enq = Child(peer.enqueue_cmd(rut.url, n), enq_core, peer.env).result()
    after = rut.counters()
    queued = peer.pending(rut.client)
    if queued != n:
        raise RuntimeError(f"{peer.name}: {queued} of {n} tasks pending after enqueue")
    out["enqueue"] = _phase(n, enq["seconds"], before, after)

    # process the pre-filled queue
    before = rut.counters()
    worker = Child(peer.worker_cmd(rut.url, n), work_core, peer.env)
    res = worker.result()
    after = rut.counters()
    span = (res["last_ns"] - res["first_ns"]) / 1e9
    left = peer.pending(rut.client)
    if left:
        raise RuntimeError(f"{peer.name}: {left} tasks still pending after processing")
    out["process"] = _phase(n, span, before, after)

    # end to end: worker waiting, then enqueue
    rut.fresh()
    before = rut.counters()
    worker = Child(peer.worker_cmd(rut.url, n), work_core, peer.env)
    ready = worker.next_line()
    assert ready.get("event") == "ready", ready
    enq = Child(peer.enqueue_cmd(rut.url, n), enq_core, peer.env).result()
    res = worker.result()
    after = rut.counters()
    span = (res["last_ns"] - enq["start_ns"]) / 1e9
    out["e2e"] = _phase(n, span, before, after)
    # How much of the span the enqueuer took: tells whether producing or consuming was the bottleneck.
    out["e2e"]["enqueue_seconds"] = enq["seconds"]
    return out


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase, the fastest run (a shared machine only ever slows a run down) and every run's rate."""
    best: dict[str, Any] = {}
    for phase in runs[0]:
        fastest = max((run[phase] for run in runs), key=lambda r: float(r["rate"]))
        best[phase] = {**fastest, "all_rates": [round(run[phase]["rate"]) for run in runs]}
    return best


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def write_results(results: dict[str, Any]) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "queue.json").write_text(json.dumps(results, indent=2) + "\n")
    peers_ = results["peers"]
    order = [p for p in ("ours", "ours-single", "asynq", "arq") if p in peers_]
    lines = [
        "## Queue engine: no-op tasks (" + ("quick, " if results["quick"] else "") + f"N = {results['n']})",
        "",
        f"Redis {results['redis_version']} on loopback, no persistence; enqueuer pinned to core "
        f"{results['cores'][0]}, worker to core {results['cores'][1]}; Go with GOMAXPROCS=1; "
        f"{CONCURRENCY} in-flight tasks per worker; clients without batching keep {ENQUEUE_CONCURRENCY} "
        f"enqueues in flight, ours sends {OURS_BATCH} per enqueue_many call with {OURS_BATCHES_IN_FLIGHT} "
        f"calls in flight (`ours-single`: one enqueue() per task, {ENQUEUE_CONCURRENCY} in flight). "
        f"Best of {results['repeat']} runs per phase; load average before/after "
        f"{results['loadavg_before'][0]:.1f}/{results['loadavg_after'][0]:.1f} (the machine is shared).",
        "",
        "| peer | enqueue/s | process/s | end-to-end/s | round trips/task (enq / proc / e2e) "
        "| Redis commands/task (enq / proc / e2e) |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name in order:
        r = peers_[name]
        trips = " / ".join(f"{r[ph]['round_trips_per_task']:.3f}" for ph in ("enqueue", "process", "e2e"))
        commands = " / ".join(f"{r[ph]['redis_calls_per_task']:.2f}" for ph in ("enqueue", "process", "e2e"))
        lines.append(
            f"| {name} | {r['enqueue']['rate']:,.0f} | {r['process']['rate']:,.0f} | "
            f"{r['e2e']['rate']:,.0f} | {trips} | {commands} |"
        )
    lines += ["", "| ratio | enqueue | process | end-to-end |", "|---|---:|---:|---:|"]
    for other in ("asynq", "arq"):
        if "ours" in peers_ and other in peers_:
            cells = [
                _ratio(peers_["ours"][ph]["rate"], peers_[other][ph]["rate"])
                for ph in ("enqueue", "process", "e2e")
            ]
            lines.append(f"| ours / {other} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Every run, tasks/s (enqueue; process; end-to-end), to show the spread on a shared machine:",
        "",
    ]
    for name in order:
        spread = "; ".join(
            ", ".join(f"{rate:,}" for rate in peers_[name][ph]["all_rates"])
            for ph in ("enqueue", "process", "e2e")
        )
        lines.append(f"- {name}: {spread}")
    lines += [
        "",
        "Notes: asynq's processor sleeps 1 s whenever every queue is empty, and each end-to-end run",
        "starts on an empty queue (ours backs off to at most 0.25 s). Ours batches dequeues and",
        "acknowledgements and coalesces concurrent enqueue() calls: hence its round trips per task.",
        "",
        "Targets: ours >= asynq per core, >= 3x arq.",
        "",
    ]
    (RESULTS_DIR / "queue.md").write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_queue",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="N = 2,000 instead of 20,000")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--peers", default="ours,ours-single,asynq,arq")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per peer, best kept (default 3, quick 1)"
    )
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n = args.n or (2_000 if args.quick else 20_000)
    if args.role:
        run_role(args.role, args.redis, n)
        return 0

    wanted = [p.strip() for p in args.peers.split(",") if p.strip()]
    probe = None
    if "asynq" in wanted:
        from tests.interop.probe_build import build_asynqprobe

        probe = build_asynqprobe()
    available = peers(probe)
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        parser.error(f"unknown peer(s) {unknown}; have {sorted(available)}")
    cpus = sorted(os.sched_getaffinity(0))
    cores = (cpus[0], cpus[1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    rut = RedisUnderTest()
    results: dict[str, Any] = {
        "n": n,
        "quick": args.quick,
        "cores": cores,
        "redis_version": rut.version,
        "concurrency": CONCURRENCY,
    }
    repeat = args.repeat or (1 if args.quick else 3)
    results["repeat"] = repeat
    results["loadavg_before"] = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in wanted}
    try:
        # Rounds interleave the peers, so a burst of load from other processes hits them alike.
        for attempt in range(repeat):
            for name in wanted:
                print(f"bench queue: {name} (N={n}, run {attempt + 1}/{repeat})", flush=True)
                runs[name].append(measure(available[name], rut, n, cores))
                print(json.dumps(runs[name][-1]), flush=True)
    finally:
        rut.close()
    results["peers"] = {name: best_of(peer_runs) for name, peer_runs in runs.items()}
    results["loadavg_after"] = os.getloadavg()
    write_results(results)
    print((RESULTS_DIR / "queue.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
