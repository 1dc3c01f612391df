"""Operator benchmark: N LLMTasks applied at once, stub LLM at zero latency.

    python -m bench.bench_operator [--quick] [--n N]

Runs a real etcd + kube-apiserver (tests/harness/kube.py), Redis, the stub LLM, one worker process
(concurrency 100) and the controller as its ServiceAccount with the manifests' Role, all on
loopback. Measures:

- time from the first create until the watch has seen every LLMTask Succeeded;
- status-mirroring lag per task, from the worker's "completed" event timestamp (pub/sub): to the
  moment the apiserver finished the status patch (its audit log: the issue's definition), and to
  the moment a separate watch on LLMTasks sees phase Succeeded (adds the watch's delivery); the
  audit timestamps split the lag into controller, apiserver and watch-delivery time;
- controller CPU seconds and peak RSS (from /proc), and CPU seconds of every process on the
  machine over each burst (``--pprof SECONDS`` also profiles the apiserver's CPU).

Peer: the same N llm:chat tasks enqueued straight into the queue (no Kubernetes) through the same
worker, timed from the first enqueue to the last completion event. The ratio is the cost of going
through the apiserver and the controller.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.sharedctypes
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from kubernetes import client as kclient
from kubernetes import config as kconfig

from sytq.k8s_resources import LLMTASK_FINALIZER, kube_api_client
from sytq.queue import TASK_EVENTS_CHANNEL, EnqueueRequest, QueueClient
from tests.harness.kube import KubeControlPlane
from tests.harness.operator_fixtures import (
    NAMESPACE,
    OperatorEnv,
    ProcessFactory,
    apiserver_writes,
    apply_manifests,
)
from tests.harness.services import RedisServer

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CREATE_CONCURRENCY = 32
WORKER_CONCURRENCY = 100
DONE_STATES = ("completed", "succeeded")
TARGET_SECONDS = 60.0
TARGET_LAG_MS = 1000.0  # issue 6: status mirroring p95
QUICK_NOTE = " (quick run: fewer tasks)"
STEADY_RATE = 20.0  # LLMTasks per second in the steady-state lag phase
HOUSEKEEPING = ("kopfpeerings", "leases", "endpoints")
QUIET_SECONDS = 2.0  # no apiserver write for this long: the controller is done writing


def _proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds so far, peak RSS bytes) of a process, from /proc."""
    cpu = _cpu_seconds(Path(f"/proc/{pid}"))
    peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return cpu, peak


# The apiserver logs each LLMTask status patch with its own receive and completion times, so the
# lag splits into controller (done -> patch received), apiserver (received -> patched) and watch
# delivery (patched -> the watcher sees it).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "verbs": ["patch"],
            "resources": [{"group": "llm.syt.io", "resources": ["llmtasks/status"]}],
        },
        {"level": "None"},
    ],
}


def status_patches(audit_log: Path, names: dict[str, str], since: float) -> dict[str, tuple[float, float]]:
    """Task id -> (received, completed) of the last successful status patch of its LLMTask."""
    patches: dict[str, tuple[float, float]] = {}
    if not audit_log.exists():
        return patches
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        task_id = names.get(entry["objectRef"].get("name", ""))
        received = datetime.fromisoformat(entry["requestReceivedTimestamp"]).timestamp()
        if task_id is None or received < since or entry.get("responseStatus", {}).get("code") != 200:
            continue
        patches[task_id] = (received, datetime.fromisoformat(entry["stageTimestamp"]).timestamp())
    return patches


def lag_stages(
    done: dict[str, float], seen: dict[str, float], patches: dict[str, tuple[float, float]]
) -> dict[str, Any]:
    """p50/p95 of each stage of the lag, for the tasks whose every moment is known."""
    tasks = [t for t in seen if t in done and t in patches]
    if not tasks:
        return {}
    stages = {
        "patched": [patches[t][1] - done[t] for t in tasks],  # done -> status patch applied
        "controller": [patches[t][0] - done[t] for t in tasks],
        "apiserver": [patches[t][1] - patches[t][0] for t in tasks],
        "delivery": [seen[t] - patches[t][1] for t in tasks],
    }
    result: dict[str, Any] = {"stage_samples": len(tasks)}
    for stage, values in stages.items():
        for pct in (50, 95):
            result[f"{stage}_p{pct}_ms"] = round(_percentile(values, pct) * 1000, 1)
    result["patched_max_ms"] = round(max(stages["patched"]) * 1000, 1)
    return result


def _cpu_by_process() -> dict[int, tuple[str, float]]:
    """pid -> (what it is, CPU seconds so far) for every process of this machine."""
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cpu = _cpu_seconds(entry)
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        found[int(entry.name)] = (_label(argv), cpu)
    return found


def _cpu_seconds(proc_dir: Path) -> float:
    """User + system CPU seconds of the process behind a /proc/<pid> directory."""
    fields = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _label(argv: list[bytes]) -> str:
    words = [Path(a.decode(errors="replace")).name for a in argv if a]
    for known in ("kube-apiserver", "etcd", "redis-server", "mariadbd"):
        if words and words[0] == known:
            return known
    for at, word in enumerate(words[:-1]):
        if word in ("sytq", "sytq_cli"):
            return f"sytq {words[at + 1]}"
        if word == "-m" and words[at + 1] == "controller":
            return "sytq controller"
    if words and words[0].startswith("python") and "bench.bench_operator" in words:
        return "benchmark: main"
    return "other"


def _custom_objects(kubeconfig: Path) -> kclient.CustomObjectsApi:
    client = kconfig.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
    return kclient.CustomObjectsApi(client)


def _cpu_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for pid, (label, cpu) in after.items():
        if pid in before:
            totals[label] = totals.get(label, 0.0) + cpu - before[pid][1]
    return totals


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


class EventClock:
    """Records when the workers reported each task done (their own timestamps)."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.done: dict[str, float] = {}
        self.ready = asyncio.Event()
        self.all_done = asyncio.Event()
        self.expected: int | None = None

    def expect(self, count: int) -> None:
        self.expected = count
        if len(self.done) >= count:
            self.all_done.set()

    async def run(self) -> None:
        conn = aioredis.Redis.from_url(self.redis_url)
        pubsub = conn.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(TASK_EVENTS_CHANNEL)
        self.ready.set()
        try:
            async for message in pubsub.listen():
                event = json.loads(message["data"])
                if event.get("state") in DONE_STATES:
                    self.done.setdefault(event["task_id"], float(event["ts"]))
                    if self.expected is not None and len(self.done) >= self.expected:
                        self.all_done.set()
        finally:
            await pubsub.aclose()
            await conn.aclose()


_RV_MARK = b'"resourceVersion":"'


class SucceededWatch:
    """Watches LLMTasks in a process of its own; notes when each is first seen Succeeded.

    The observer must not be what is slow. The apiserver hands each watch event to every watcher
    in turn and, when one is not reading, waits for it before serving the others (then drops it:
    "Forcing watcher close due to unresponsiveness"). A watcher sharing a process (and its GIL)
    with the benchmark's own bookkeeping, decoding every event with the kubernetes client's
    Watch (which parses each one twice), was dropped several times per burst, so it measured its
    own backlog and delayed the controller's watch as well. So this one runs in its own process,
    reads the stream raw and parses only the events that mention Succeeded."""

    def __init__(self, kubeconfig: Path, expected: int, prefix: str) -> None:
        self.kubeconfig = kubeconfig
        self.prefix = f"{prefix}-"
        self.expected = expected
        self.seen: dict[str, float] = {}  # task id -> wall clock
        self.names: dict[str, str] = {}  # LLMTask name -> task id
        self.reconnects = 0
        self.cpu_seconds = 0.0  # the watching process's own
        api = _custom_objects(kubeconfig)
        listing = cast(
            dict[str, Any], api.list_namespaced_custom_object("llm.syt.io", "v1alpha1", NAMESPACE, "llmtasks")
        )
        self.resource_version: str = listing["metadata"]["resourceVersion"]
        api.api_client.close()
        self._receiver, self._sender = multiprocessing.get_context("fork").Pipe(duplex=False)
        self._process = multiprocessing.get_context("fork").Process(target=self._run, daemon=True)

    def start(self) -> None:
        self._process.start()
        self._sender.close()

    def wait(self, timeout: float) -> bool:
        """Block until every expected LLMTask was seen Succeeded (True) or ``timeout`` passed."""
        if not self._receiver.poll(timeout):
            self._process.kill()
            return False
        self.seen, self.names, reconnects, self.cpu_seconds = self._receiver.recv()
        self._process.join(10)
        if isinstance(reconnects, str):
            raise RuntimeError(reconnects)
        self.reconnects = reconnects
        return len(self.seen) >= self.expected

    # -- in the watching process ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._watch()
        except Exception as exc:  # reported to the benchmark, which fails with it
            self._sender.send(({}, {}, f"the watch failed: {exc!r}", 0.0))
        else:
            self._sender.send((self.seen, self.names, self.reconnects, _own_cpu_seconds()))

    def _watch(self) -> None:
        api = _custom_objects(self.kubeconfig)
        while len(self.seen) < self.expected:
            response: Any = api.list_namespaced_custom_object(
                "llm.syt.io",
                "v1alpha1",
                NAMESPACE,
                "llmtasks",
                watch=True,
                resource_version=self.resource_version,
                timeout_seconds=600,
                _preload_content=False,
            )
            try:
                self._read(response)
            finally:
                response.release_conn()
            if len(self.seen) < self.expected:
                self.reconnects += 1

    def _read(self, response: Any) -> None:
        pending = b""
        for chunk in response.stream(amt=None, decode_content=False):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            now = time.time()
            for line in lines:
                self._note(line, now)
                if len(self.seen) >= self.expected:
                    return

    def _note(self, line: bytes, now: float) -> None:
        if line.startswith(b'{"type":"ERROR"'):
            raise RuntimeError(f"watch failed: {line[:500]!r}")
        at = line.find(_RV_MARK) + len(_RV_MARK)  # the object's own (the first one in the event)
        self.resource_version = line[at : line.index(b'"', at)].decode()
        if b'"phase":"Succeeded"' in line:
            obj = json.loads(line)["object"]
            name = obj["metadata"]["name"]
            if name.startswith(self.prefix):
                task_id = self.names[name] = f"llmtask-{obj['metadata']['uid']}"
                self.seen.setdefault(task_id, now)


def _llmtask(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "llm.syt.io/v1alpha1",
        "kind": "LLMTask",
        # with the finalizer, as the API's resource mode creates them (no finalizer patch per task)
        "metadata": {"name": name, "namespace": NAMESPACE, "finalizers": [LLMTASK_FINALIZER]},
        "spec": {"prompt": f"benchmark prompt {name}", "maxRetries": 1},
    }


async def _create_all(kubeconfig: Path, n: int, prefix: str = "bench", rate: float | None = None) -> None:
    """Create n LLMTasks: all at once (32 in flight), or paced at ``rate`` per second."""
    from kubernetes_asyncio import client as aclient

    os.environ["KUBECONFIG"] = str(kubeconfig)  # this is a process of its own
    api_client = await kube_api_client(CREATE_CONCURRENCY)  # the client our API uses, same settings
    api = aclient.CustomObjectsApi(api_client)
    todo = iter(range(n))

    async def create(i: int) -> None:
        body = _llmtask(f"{prefix}-{i}")
        await api.create_namespaced_custom_object("llm.syt.io", "v1alpha1", NAMESPACE, "llmtasks", body)

    async def lane() -> None:
        for i in todo:
            await create(i)

    if rate is None:
        await asyncio.gather(*(lane() for _ in range(CREATE_CONCURRENCY)))
    else:
        pending = []
        for i in range(n):
            pending.append(asyncio.create_task(create(i)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*pending)
    await api_client.close()


def _create_in_process(
    kubeconfig: Path,
    n: int,
    prefix: str,
    rate: float | None,
    cpu: multiprocessing.sharedctypes.Synchronized[float],
) -> None:
    asyncio.run(_create_all(kubeconfig, n, prefix, rate))
    cpu.value = _own_cpu_seconds()


async def create_llmtasks(kubeconfig: Path, n: int, prefix: str, rate: float | None) -> float:
    """Create the LLMTasks in a process of their own (so the caller's watch is not slowed by them:
    GIL); returns that process's CPU seconds."""
    creator_cpu = multiprocessing.get_context("fork").Value("d", 0.0)
    creator = multiprocessing.get_context("fork").Process(
        target=_create_in_process, args=(kubeconfig, n, prefix, rate, creator_cpu)
    )
    creator.start()
    await asyncio.to_thread(creator.join)
    if creator.exitcode != 0:
        raise RuntimeError(f"creating the LLMTasks failed (exit code {creator.exitcode})")
    return float(creator_cpu.value)


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _start_profile(kube: KubeControlPlane, seconds: int, into: Path) -> subprocess.Popen[bytes]:
    """Start a CPU profile of the apiserver (needs ``profiling=True``): ``go tool pprof`` reads it."""
    into.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(kube.bin_dir / "kubectl"), f"--kubeconfig={kube.kubeconfig}", "get", "--raw"]
    with into.open("wb") as out:
        return subprocess.Popen([*cmd, f"/debug/pprof/profile?seconds={seconds}"], stdout=out)


async def run_operator(
    env: OperatorEnv,
    n: int,
    controller_pid: int,
    prefix: str = "bench",
    rate: float | None = None,
    profile: tuple[int, Path] | None = None,
) -> dict[str, Any]:
    clock = EventClock(env.redis_url)
    listener = asyncio.create_task(clock.run())
    await clock.ready.wait()
    watch = SucceededWatch(env.kube.kubeconfig, n, prefix)
    watch.start()
    writes0 = apiserver_writes(env.kube)
    cpu0, _ = _proc_usage(controller_pid)
    machine0 = _cpu_by_process()
    profiler = _start_profile(env.kube, *profile) if profile else None
    start = time.time()
    creator_cpu = await create_llmtasks(env.kube.kubeconfig, n, prefix, rate)
    created = time.time()
    all_seen = await asyncio.to_thread(watch.wait, 600)
    cpu1, peak_rss = _proc_usage(controller_pid)
    cpu_by_process = _cpu_delta(machine0, _cpu_by_process())
    cpu_by_process["benchmark: creates"] = creator_cpu
    cpu_by_process["benchmark: watch"] = watch.cpu_seconds
    await asyncio.sleep(0.5)  # late pub/sub messages
    listener.cancel()
    if not all_seen:
        raise RuntimeError(f"only {len(watch.seen)}/{n} LLMTasks Succeeded within 600 s")
    end = max(watch.seen.values())
    writes, settled = await _writes_until_quiet(env.kube, writes0)
    if profiler is not None:
        await asyncio.to_thread(profiler.wait)
    lags = [watch.seen[t] - clock.done[t] for t in watch.seen if t in clock.done]
    patches = status_patches(env.kube.audit_log, watch.names, start)
    # per task: worker done, status patch received and applied (when known), seen by the watch
    timeline = {
        t: (clock.done[t], *patches.get(t, (None, None)), watch.seen[t])
        for t in watch.seen
        if t in clock.done
    }
    stages = lag_stages(clock.done, watch.seen, patches)
    return {
        "tasks": n,
        "create_seconds": round(created - start, 2),
        "all_succeeded_seconds": round(end - start, 2),
        "throughput_per_s": round(n / (end - start), 1),
        "lag_samples": len(lags),
        "lag_p50_ms": round(_percentile(lags, 50) * 1000, 1),
        "lag_p95_ms": round(_percentile(lags, 95) * 1000, 1),
        "lag_max_ms": round(max(lags) * 1000, 1),
        "lag_mean_ms": round(statistics.fmean(lags) * 1000, 1),
        **stages,
        "cpu_seconds_by_process": {k: round(v, 2) for k, v in sorted(cpu_by_process.items()) if v >= 0.01},
        "controller_cpu_seconds": round(cpu1 - cpu0, 2),
        "controller_cpu_percent": round(100 * (cpu1 - cpu0) / (end - start), 1),
        "controller_peak_rss_mib": round(peak_rss / 2**20, 1),
        "watch_reconnects": watch.reconnects,
        "writes_settled_seconds": round(settled - start, 2),
        "controller_writes_per_task": round((sum(writes.values()) - n) / n, 2),
        "writes": dict(sorted(writes.items())),
        "timeline": timeline,
    }


async def _writes_until_quiet(kube: KubeControlPlane, before: Counter[str]) -> tuple[Counter[str], float]:
    """Apiserver writes since ``before`` once they stop (deferred Events included), and when the
    last one happened. Peering keep-alives (per controller, not per task) and the apiserver's own
    lease and endpoints updates are left out."""
    last_total, last_change = -1, time.time()
    while True:
        writes = apiserver_writes(kube) - before
        writes = Counter({k: v for k, v in writes.items() if k.split()[1] not in HOUSEKEEPING})
        total = sum(writes.values())
        if total != last_total:
            last_total, last_change = total, time.time()
        elif time.time() - last_change >= QUIET_SECONDS:
            return writes, last_change
        await asyncio.sleep(0.25)


async def run_direct(redis_url: str, n: int) -> dict[str, Any]:
    clock = EventClock(redis_url)
    listener = asyncio.create_task(clock.run())
    await clock.ready.wait()
    conn = aioredis.Redis.from_url(redis_url)
    requests = [
        EnqueueRequest(
            type="llm:chat",
            queue="default",
            max_retry=1,
            payload=json.dumps(
                {"model": "deepseek-chat", "messages": [{"role": "user", "content": f"direct prompt {i}"}]}
            ).encode(),
        )
        for i in range(n)
    ]
    start = time.time()
    await QueueClient(conn).enqueue_many(requests)
    clock.expect(n)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(clock.all_done.wait(), 600)
    listener.cancel()
    await conn.aclose()
    if len(clock.done) < n:
        raise RuntimeError(f"only {len(clock.done)}/{n} direct tasks completed")
    end = max(clock.done.values())
    return {
        "tasks": n,
        "all_completed_seconds": round(end - start, 2),
        "throughput_per_s": round(n / (end - start), 1),
    }


LAG_STAGES = ("patched", "controller", "apiserver", "delivery")
ROUND_FIELDS = (
    "create_seconds",
    *(
        f"{stage}_p{pct}_ms"
        for stage in ("patched", "controller", "apiserver", "delivery")
        for pct in (50, 95)
    ),
    "all_succeeded_seconds",
    "lag_p50_ms",
    "lag_p95_ms",
    "lag_max_ms",
    "controller_cpu_seconds",
    "controller_writes_per_task",
    "writes_settled_seconds",
    "watch_reconnects",
)


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median p95 lag: the machine is shared, so one burst alone says little."""
    ordered = sorted(rounds, key=lambda r: r["lag_p95_ms"])
    return ordered[(len(ordered) - 1) // 2]


def summary(run: dict[str, Any]) -> dict[str, Any]:
    return {key: run[key] for key in ROUND_FIELDS if key in run}


def write_results(result: dict[str, Any], out_dir: Path = RESULTS_DIR) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for phase in ("operator", "steady"):
        result[phase].pop("timeline")
    (out_dir / "operator.json").write_text(json.dumps(result, indent=2) + "\n")
    op, direct, steady = result["operator"], result["direct_queue"], result["steady"]
    load = result["load_average_1m"]
    ratio = op["all_succeeded_seconds"] / direct["all_completed_seconds"]
    lines = [
        f"## operator: {op['tasks']} LLMTasks applied at once (stub LLM, zero latency)",
        "",
        f"Machine: {os.cpu_count()} cores; one worker process (concurrency {WORKER_CONCURRENCY}),"
        " one controller, etcd + kube-apiserver, Redis, stub LLM, all on this machine.",
        "",
        "| path | tasks | time to all done | tasks/s | ratio |",
        "|---|---:|---:|---:|---:|",
        f"| LLMTask via apiserver + controller | {op['tasks']} | {op['all_succeeded_seconds']} s "
        f"| {op['throughput_per_s']} | {ratio:.2f}x |",
        f"| same tasks enqueued directly (peer) | {direct['tasks']} | {direct['all_completed_seconds']} s "
        f"| {direct['throughput_per_s']} | 1.00x |",
        "",
        *_target_lines(result["burst_rounds"]),
        "| status lag (worker done -> watch sees Succeeded) | p50 | p95 | max | all Succeeded after |"
        " controller writes per task |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| burst {i + 1}: {op['tasks']} tasks created at once (created in {r['create_seconds']} s)"
            f"{' (median)' if r == summary(op) else ''} | {r['lag_p50_ms']} ms | {r['lag_p95_ms']} ms"
            f" | {r['lag_max_ms']} ms | {r['all_succeeded_seconds']} s | {r['controller_writes_per_task']} |"
            for i, r in enumerate(result["burst_rounds"])
        ),
        f"| steady: {steady['lag_samples']} tasks at {STEADY_RATE:.0f}/s | {steady['lag_p50_ms']} ms "
        f"| {steady['lag_p95_ms']} ms | {steady['lag_max_ms']} ms | |"
        f" {steady['controller_writes_per_task']} |",
        "",
        *_stage_lines(result["burst_rounds"], steady),
        "Writes per task are the apiserver's own count (`apiserver_request_total`) of everything but the"
        f" creates, until writing stopped (median burst: {op['writes_settled_seconds']} s after the first"
        " create; the Events go out behind the status patches): "
        + ", ".join(f"{k} {v}" for k, v in op["writes"].items())
        + ".",
        "",
        f"Controller: {op['controller_cpu_seconds']} CPU s"
        f" ({op['controller_cpu_percent']}% of one core over the burst),"
        f" peak RSS {op['controller_peak_rss_mib']} MiB. Creating the {op['tasks']} objects took"
        f" {op['create_seconds']} s ({CREATE_CONCURRENCY} concurrent creates). Target: all Succeeded"
        f" <= {TARGET_SECONDS:.0f} s for 1,000 tasks{QUICK_NOTE if result['quick'] else ''}.",
        "",
        "CPU seconds by process over the median burst (first create until every LLMTask was seen"
        f" Succeeded, {op['all_succeeded_seconds']} s on {os.cpu_count()} cores): "
        + ", ".join(
            f"{k} {v}" for k, v in sorted(op["cpu_seconds_by_process"].items(), key=lambda kv: -kv[1])
        )
        + ".",
        "",
        f"Load average (1 min) before/after: {load['start']} / {load['end']}. Every write goes through one"
        " kube-apiserver on these 2 cores, so the burst figures move with whatever else runs; the burst lag"
        " is about how long the creation storm keeps the apiserver busy, the steady lag is the mirroring"
        " itself.",
        "",
    ]
    (out_dir / "operator.md").write_text("\n".join(lines))
    print("\n".join(lines))


def _target_lines(rounds: list[dict[str, Any]]) -> list[str]:
    """The issue's target, p95 <= 1 s from the state change to the status patch, per round."""
    patched = [r["patched_p95_ms"] for r in rounds if "patched_p95_ms" in r]
    seen = [r["lag_p95_ms"] for r in rounds]
    if not patched:
        return []
    return [
        f"Target p95 <= {TARGET_LAG_MS:.0f} ms from the state change to the status patch (the apiserver's"
        f" own completion time of the patch): per burst round {' / '.join(f'{v:.0f}' for v in patched)} ms,"
        f" {sum(v <= TARGET_LAG_MS for v in patched)} of {len(patched)} rounds within it. Until a separate"
        f" watch sees it: {' / '.join(f'{v:.0f}' for v in seen)} ms,"
        f" {sum(v <= TARGET_LAG_MS for v in seen)} of {len(seen)} within it.",
        "",
    ]


def _by_value(item: tuple[str, float]) -> float:
    return -item[1]


def _stage_lines(rounds: list[dict[str, Any]], steady: dict[str, Any]) -> list[str]:
    """The lag split at the apiserver's own timestamps (its audit log) of each status patch."""
    head = [
        "| lag stage (p50 / p95) | worker done -> status patched | controller (done -> patch received)"
        " | apiserver (received -> patched) | watch delivery (patched -> seen) |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = [(f"burst {i + 1}", r) for i, r in enumerate(rounds)] + [("steady", steady)]

    def cell(run: dict[str, Any], stage: str) -> str:
        return f"{run[stage + '_p50_ms']} / {run[stage + '_p95_ms']} ms"

    stages = ("patched", "controller", "apiserver", "delivery")
    body = [
        f"| {label} | " + " | ".join(cell(r, s) for s in stages) + " |"
        for label, r in rows
        if "patched_p95_ms" in r
    ]
    return [*head, *body, ""] if body else []


def extra_controller_env() -> dict[str, str]:
    """SYTQ_CONTROLLER_* settings from this environment, for experiments (e.g. patch slots)."""
    return {k: v for k, v in os.environ.items() if k.startswith("SYTQ_CONTROLLER_")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_operator", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 tasks instead of 1,000")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the result files go")
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="also write the apiserver log and per-task times (done, patch received, patched, seen)"
        " to --out, for digging",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="burst rounds (default 3, quick 1); the median is reported"
    )
    parser.add_argument(
        "--pprof",
        type=int,
        metavar="SECONDS",
        help="profile the apiserver's CPU for SECONDS from the first burst's first create into "
        "--out/apiserver-burst.pprof (read it with: go tool pprof -top kube-apiserver FILE)",
    )
    args = parser.parse_args(argv)
    n = args.n or (200 if args.quick else 1000)
    args.rounds = args.rounds or (1 if args.quick else 3)

    load_start = round(os.getloadavg()[0], 2)
    workdir = Path(tempfile.mkdtemp(prefix="sytq-bench-operator-"))
    redis_server = RedisServer()
    redis_server.start()
    factory = ProcessFactory(workdir)
    try:
        with KubeControlPlane(profiling=bool(args.pprof), audit_policy=AUDIT_POLICY) as kube:
            apply_manifests(kube)
            env = OperatorEnv(
                kube=kube,
                controller_kubeconfig=kube.service_account_kubeconfig(NAMESPACE, "syt-queue-controller"),
                redis_url=redis_server.url,
                factory=factory,
            )
            env.start_stub()
            env.start_worker(concurrency=WORKER_CONCURRENCY)
            controller = env.start_controller(
                SYTQ_LOG_LEVEL="WARNING", SYTQ_CONTROLLER_RESYNC_SECONDS="10", **extra_controller_env()
            )
            time.sleep(3)  # controller logged in and watching
            rounds = []
            for round_no in range(args.rounds):
                first_profiled = args.pprof and not round_no
                profile = (args.pprof, args.out / "apiserver-burst.pprof") if first_profiled else None
                rounds.append(
                    asyncio.run(
                        run_operator(env, n, controller.popen.pid, prefix=f"burst{round_no}", profile=profile)
                    )
                )
                env.delete_all()  # the next round starts from an empty namespace again
                time.sleep(2)
            operator = median_round(rounds)
            steady = asyncio.run(
                run_operator(env, n // 5, controller.popen.pid, prefix="steady", rate=STEADY_RATE)
            )
            controller.stop()
            if args.keep_logs:
                args.out.mkdir(parents=True, exist_ok=True)
                shutil.copy(kube.workdir / "logs" / "kube-apiserver.log", args.out / "kube-apiserver.log")
                timelines = {f"burst {i + 1}": run["timeline"] for i, run in enumerate(rounds)}
                timelines["steady"] = steady["timeline"]
                (args.out / "operator_timeline.json").write_text(json.dumps(timelines) + "\n")
            redis.Redis.from_url(redis_server.url).flushall()
            direct = asyncio.run(run_direct(redis_server.url, n))
    finally:
        factory.close()
        redis_server.close()
    write_results(
        {
            "quick": args.quick,
            "load_average_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
            "operator": operator,
            "burst_rounds": [summary(r) for r in rounds],
            "steady": steady,
            "direct_queue": direct,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
