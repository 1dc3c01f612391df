"""LLM-shaped load: many slow provider calls in flight through one worker process.

    python -m bench.bench_llm_load [--quick] [--concurrency C] [--latency S] [--n N] [--peers ...]

The stub LLM answers every call after a fixed latency (2 s by default), so a worker with C calls in
flight can at best finish C / latency tasks per second (the ideal). N llm:chat tasks are enqueued
first (asynq layout; every peer reads the same tasks), then one worker process drains them. The
driver samples the queue's processed counter, the stub's in-flight count and the worker's RSS every
0.25 s; throughput is the sustained rate between the completion of the first C tasks and the moment
only C tasks remain (ramp-up and drain excluded), fitted over all samples in that window.

Peers (one worker process each, pinned to core 1 when `taskset` exists; the stub, Redis and MariaDB
on core 0):
- ours:       the full pipeline (`worker.main.run_worker`): row stored in MariaDB, result written.
- ours-bare:  our queue server + provider client only (no database), the like-for-like with Go.
- asynq:      asynq v0.26.0 (Go, GOMAXPROCS=1), handler posts to the stub and parses the answer
              (bench/go/llmload; no storage).
- asynq-prefetch: the same with 2C handlers and calls capped at C (a channel): the split ours uses
              (C calls in flight, C more tasks held).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
GO_DIR = Path(__file__).resolve().parent / "go"
PROCESSED_KEY = "asynq:{default}:processed"
FAILED_KEY = "asynq:{default}:failed"  # failed attempts are "processed" too: a fast failure is no result


def _counter(client: redis.Redis, key: str) -> int:
    """An integer counter the workers INCR (0 before the first)."""
    return int(cast(bytes | None, client.get(key)) or 0)


def _pinned(cmd: list[str], core: int) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(core), *cmd] if taskset and (os.cpu_count() or 1) > 1 else cmd


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU of a process (all its threads), or of one thread; 0 once it is gone."""
    stat = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _cpu_by_process(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds by process; the worker also split into its event-loop thread and the rest
    (database thread pool, DNS resolver threads)."""
    cpu = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    cpu["worker: event loop"] = _cpu_seconds(pids["worker"], pids["worker"])
    cpu["worker: threads"] = cpu["worker"] - cpu["worker: event loop"]
    return cpu


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# ------------------------------------------------------------------------------------ worker roles


async def _bare_worker(settings: Any) -> None:
    """Our queue server and provider client, no storage: what the Go peer does."""
    from sytq.gc_tuning import freeze_startup_objects
    from sytq.llm import LLMClient
    from sytq.queue import Server, Task
    from sytq.tasks import LLMChatPayload
    from worker.main import GC_THRESHOLDS, server_config, worker_redis

    client = worker_redis(settings.redis_url)
    calls = settings.worker_concurrency  # calls in flight; the server holds prefetched tasks too, as ours
    llm = LLMClient(settings.llm_base_url, "bench", max_calls=calls)

    async def handle(task: Task) -> None:
        payload = LLMChatPayload.model_validate_json(task.payload)
        result = await llm.chat(payload.model, [m.model_dump() for m in payload.messages])
        task.attach_result(json.dumps({"content_preview": result.content[:1024]}).encode())

    server = Server(client, server_config(settings), {"llm:chat": handle})
    freeze_startup_objects(GC_THRESHOLDS)
    await server.run(install_signal_handlers=True)
    await llm.aclose()
    await client.aclose()


def run_role(role: str) -> None:
    from sytq.log_setup import configure_logging
    from sytq.settings import Settings
    from worker.main import run_event_loop, run_worker

    settings = Settings()
    configure_logging("WARNING", json_lines=True)
    if role not in ("ours", "ours-bare"):
        raise SystemExit(f"unknown role {role}")
    main = run_worker(settings) if role == "ours" else _bare_worker(settings)
    profile_to = os.environ.get("SYTQ_BENCH_PROFILE")  # cProfile the worker: where its CPU goes
    if not profile_to:
        run_event_loop(main)
        return
    import cProfile

    with cProfile.Profile() as profiler:
        run_event_loop(main)
    profiler.dump_stats(f"{profile_to}.{role}")


# ------------------------------------------------------------------------------------------- driver


def _stored_call_seconds(database_url: str) -> float:
    """The provider latency the worker measured and stored with each answer, averaged."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            mean_ms = conn.execute(sa.text("SELECT AVG(llm_latency_ms) FROM sytq_llm_tasks")).scalar()
    finally:
        engine.dispose()
    return float(mean_ms or 0) / 1000


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares rate of the completion count over time. Completions come in waves (calls that
    started together end together), so a rate from the window's two end samples moves by a wave
    depending on where they fall; the fit over every sample does not."""
    mean_t = sum(t for t, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / spread if spread else 0.0


def _pin_all_threads(pid: int, core: int) -> None:
    """Keep a shared server (all its threads; new ones inherit) off the worker's core, so the
    worker under test has core 1 to itself."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(int(task.name), {core})


def _server_pid(server: Any) -> int:
    """The harness keeps each server's Popen private; taskset execs, so this is the server itself."""
    return int(server._proc.pid)


@dataclass
class PeerResult:
    peer: str
    concurrency: int
    latency_s: float
    tasks: int
    peak_in_flight: int
    throughput: float
    ideal: float
    total_seconds: float
    rss_peak_mb: float
    note: str = ""
    # CPU microseconds per finished task over the measured window, by process
    cpu_us_per_task: dict[str, float] = field(default_factory=dict)
    load_average: float = 0.0
    mean_in_flight: float = 0.0  # over the measured window: how well the worker keeps the provider busy
    stub_latency_s: float = 0.0  # the stub's real time per answered call over the window

    @property
    def ratio(self) -> float:
        return self.throughput / self.ideal if self.ideal else 0.0


def _enqueue(redis_url: str, n: int, tag: str) -> None:
    import redis.asyncio as aioredis

    from sytq.queue import EnqueueRequest, QueueClient
    from sytq.tasks import LLMChatPayload

    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url)
        queue = QueueClient(client)
        for offset in range(0, n, 1000):
            batch = []
            for i in range(offset, min(n, offset + 1000)):
                message = {"role": "user", "content": f"{tag} {i}"}
                payload = LLMChatPayload(model="deepseek-chat", messages=[message])  # type: ignore[list-item]
                batch.append(EnqueueRequest("llm:chat", payload.model_dump_json().encode(), max_retry=3))
            errors = [o for o in await queue.enqueue_many(batch) if isinstance(o, Exception)]
            if errors:
                raise RuntimeError(f"enqueue failed: {errors[0]}")
        await client.aclose()

    asyncio.run(go())


def _worker_command(peer: str, redis_url: str, stub_url: str, concurrency: int, n: int) -> list[str]:
    if peer in ("asynq", "asynq-prefetch"):
        binary = _build_go()
        # asynq-prefetch: as ours holds tasks (2x the calls, SYTQ_WORKER_PREFETCH's default), asynq
        # gets twice the handlers with the calls capped at C.
        handlers = concurrency * 2 if peer == "asynq-prefetch" else concurrency
        return [
            str(binary),
            "-redis",
            redis_url,
            "-llm",
            stub_url,
            "-concurrency",
            str(handlers),
            "-max-calls",
            str(concurrency),
            "-n",
            str(n),
        ]
    return [sys.executable, "-m", "bench.bench_llm_load", "--role", peer]


def _build_go() -> Path:
    target = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sytq" / "bench" / "llmload"
    source = GO_DIR / "llmload" / "main.go"
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    go = shutil.which("go") or "/usr/local/go/bin/go"
    subprocess.run([go, "build", "-o", str(target), "./llmload"], cwd=GO_DIR, check=True)
    return target


def run_peer(
    peer: str,
    *,
    redis_url: str,
    stub_url: str,
    database_url: str,
    concurrency: int,
    latency: float,
    n: int,
    services: dict[str, int],
) -> PeerResult:
    """``services``: name -> pid of the shared servers whose CPU per task is reported too."""
    r = redis.Redis.from_url(redis_url)
    r.flushall()
    httpx.post(f"{stub_url}/_stub/reset").raise_for_status()
    httpx.post(f"{stub_url}/_stub/config", json={"latency": str(latency)}).raise_for_status()
    _enqueue(redis_url, n, f"{peer}-{time.time_ns()}")
    env = dict(os.environ) | {
        "SYTQ_REDIS_URL": redis_url,
        "SYTQ_DATABASE_URL": database_url,
        "SYTQ_LLM_BASE_URL": stub_url,
        "DEEPSEEK_API_KEY": "bench",
        "SYTQ_WORKER_CONCURRENCY": str(concurrency),
        "SYTQ_METRICS_PORT": "0",
        "SYTQ_PUBLISH_TASK_EVENTS": "false",
        "SYTQ_CALLBACK_SECRET": "bench-secret",
        "GOMAXPROCS": "1",
    }
    proc = subprocess.Popen(
        _pinned(_worker_command(peer, redis_url, stub_url, concurrency, n), 1),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    samples: list[tuple[float, int, int]] = []  # (time, processed, in flight)
    stub_marks: list[tuple[float, int, float]] = []  # (time, answered calls, seconds spent answering)
    pids = {"worker": proc.pid} | services
    cpu_marks: list[tuple[int, dict[str, float]]] = []  # (processed, CPU seconds by process)
    rss_peak = 0.0
    started = time.monotonic()
    deadline = started + max(120.0, 10 * n * latency / concurrency)
    with httpx.Client() as http:
        while True:
            processed = _counter(r, PROCESSED_KEY)
            stub_stats = http.get(f"{stub_url}/_stub/stats?brief=1").json()
            now = time.monotonic()
            samples.append((now, processed, int(stub_stats["in_flight"])))
            stub_marks.append((now, int(stub_stats["completed"]), float(stub_stats["handler_seconds"])))
            if processed > 0:
                cpu_marks.append((processed, _cpu_by_process(pids)))
            rss_peak = max(rss_peak, _rss_mb(proc.pid))
            if processed >= n or proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.25)
    total = time.monotonic() - started
    rss_peak = max(rss_peak, _rss_mb(proc.pid, "VmHWM"))
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    done = samples[-1][1]
    # Sustained (steady-state) rate: from the moment the first C tasks are done (the ramp-up, with
    # nothing finishing during the first latency, is over) to the moment only C remain (the drain,
    # when fewer than C calls can be in flight, has not begun).
    window = [s for s in samples if concurrency <= s[1] <= n - concurrency]
    notes = [] if len(window) >= 2 else ["too few tasks for a steady state: rate over the whole run"]
    if len(window) >= 2:
        throughput = _slope([(t, float(done_now)) for t, done_now, _ in window])
    else:
        throughput = done / total
    if done < n:
        notes.append(f"only {done} of {n} done")
    failed = _counter(r, FAILED_KEY)
    if failed:
        notes.append(f"{failed} failed attempts")
    if peer == "ours":
        notes.append(f"mean call as the worker saw it: {_stored_call_seconds(database_url):.3f} s")
    note = "; ".join(notes)
    cpu_us: dict[str, float] = {}
    if len(cpu_marks) >= 2 and cpu_marks[-1][0] > cpu_marks[0][0]:
        (first_done, first), (last_done, last) = cpu_marks[0], cpu_marks[-1]
        tasks = last_done - first_done
        cpu_us = {name: round((last[name] - first[name]) * 1e6 / tasks, 1) for name in last}
    span = [s for s in samples if window and window[0][0] <= s[0] <= window[-1][0]]
    mean_in_flight = sum(s[2] for s in span) / len(span) if span else 0.0
    stub_latency = 0.0  # what the stub really took per call over the window (a busy core stretches it)
    if len(window) >= 2:
        marks = [m for m in stub_marks if window[0][0] <= m[0] <= window[-1][0]]
        if len(marks) >= 2 and marks[-1][1] > marks[0][1]:
            stub_latency = (marks[-1][2] - marks[0][2]) / (marks[-1][1] - marks[0][1])
    return PeerResult(
        peer,
        concurrency,
        latency,
        n,
        max(s[2] for s in samples),
        throughput,
        concurrency / latency,
        total,
        rss_peak,
        note,
        cpu_us,
        os.getloadavg()[0],
        mean_in_flight,
        stub_latency,
    )


def write_results(results: list[PeerResult], quick: bool, database: str) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    rows = [r.__dict__ | {"ratio": r.ratio} for r in results]
    doc = {"quick": quick, "database": database, "results": rows}
    (RESULTS_DIR / "llm_load.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "## LLM-shaped load (bench_llm_load)",
        "",
        f"Stub latency {results[0].latency_s:g} s, one worker process, {results[0].concurrency} concurrent "
        f"calls, {results[0].tasks} tasks; storage for `ours`: {database}. "
        "Throughput: the sustained rate from the first C tasks done to the last C remaining (ramp-up and "
        "drain excluded); ideal = concurrency / latency; mean in flight and the stub's real seconds per "
        "call over the same window." + (" Quick run (small sizes)." if quick else ""),
        "",
        "| peer | peak in flight | mean in flight | stub s/call | tasks/s | ideal | vs ideal | total s "
        "| peak RSS MB | load avg | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r.peer} | {r.peak_in_flight} | {r.mean_in_flight:.0f} | {r.stub_latency_s:.2f} | "
            f"{r.throughput:.0f} | {r.ideal:.0f} | "
            f"{r.ratio:.1%} | {r.total_seconds:.1f} | {r.rss_peak_mb:.0f} | {r.load_average:.1f} | "
            f"{r.note} |"
        )
    names = list(dict.fromkeys(name for r in results for name in r.cpu_us_per_task))
    lines += [
        "",
        "CPU microseconds per finished task, by process (from /proc, over the run after the first task;"
        " robust to other load on the machine):",
        "",
        "| peer | " + " | ".join(names) + " | total |",
        "| --- | " + " | ".join("---:" for _ in names) + " | ---: |",
    ]
    for r in results:
        cells = [f"{r.cpu_us_per_task[name]:.0f}" if name in r.cpu_us_per_task else "" for name in names]
        total = sum(us for name, us in r.cpu_us_per_task.items() if not name.startswith("worker:"))
        lines.append(f"| {r.peer} | " + " | ".join(cells) + f" | {total:.0f} |")
    (RESULTS_DIR / "llm_load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_llm_load", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--n", type=int)
    parser.add_argument("--peers", default="ours,ours-bare,asynq,asynq-prefetch")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        run_role(args.role)
        return
    sys.path.insert(0, str(ROOT))
    from tests.harness.llm_fixtures import StubLLMProcess
    from tests.harness.services import MariaDBServer, RedisServer

    concurrency = args.concurrency or (500 if args.quick else 5000)
    latency = 1.0 if args.quick and args.latency == 2.0 else args.latency
    n = args.n or (concurrency * (6 if args.quick else 10))
    redis_server, mariadb, stub = RedisServer(), MariaDBServer(), StubLLMProcess()
    stub_cmd = stub._command
    stub._command = lambda: _pinned(stub_cmd(), 0)  # type: ignore[method-assign]
    results = []
    try:
        for server in (redis_server, mariadb, stub):
            server.start()
        database_url = mariadb.create_database("bench_llm")
        services = {
            name: _server_pid(server)
            for name, server in (("stub", stub), ("redis", redis_server), ("mariadbd", mariadb))
        }
        for pid in services.values():
            _pin_all_threads(pid, 0)
        from sytq.storage import upgrade

        upgrade(database_url)
        for peer in args.peers.split(","):
            print(f"-- {peer}", flush=True)
            results.append(
                run_peer(
                    peer,
                    redis_url=redis_server.url,
                    stub_url=stub.url,
                    database_url=database_url,
                    concurrency=concurrency,
                    latency=latency,
                    n=n,
                    services=services,
                )
            )
            print(results[-1], flush=True)
    finally:
        for server in (stub, mariadb, redis_server):
            server.close()
    write_results(results, args.quick, "MariaDB (Debian mariadbd, loopback)")


if __name__ == "__main__":
    main()
