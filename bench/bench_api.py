"""HTTP ingress throughput: single and batch submits vs a bare LPUSH endpoint and a Go peer.

Everything runs on loopback: a private redis-server, ``sytq api`` (ours, as deployed), the bare
FastAPI ceiling on stock uvicorn, the Go peer (``bench/go/ingress``: gin + the asynq client, both
contracts) and wrk as the load generator. Rounds alternate the peers so that other load on the
machine hits all alike, and CPU per request (server and Redis) is measured next to req/s because
it does not depend on that load. ``python -m bench.bench_api [--quick]`` writes ``bench/results/api.json`` and
``bench/results/api.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis

from tests.harness.services import env_without_settings, free_port, wait_for_port

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
SINGLE_BODY = (
    '{"prompt": "Summarise the attached valuation report in three sentences.", "model": "deepseek-chat"}'
)
RECORD_BODY = '{"table_name":"valuation_records","id":1}'
V1_PATH, RECORD_PATH = "/api/v1/tasks/llm", "/api/tasks/llm"
GO_DIR = Path(__file__).resolve().parent / "go"
BATCH_SIZE = 500


def start(cmd: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    wait_for_port(port, timeout=60, proc=proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def group_cpu_seconds(pgid: int) -> float:
    """user+system CPU of every process in a process group (uvicorn's workers included)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp; then utime and stime are fields[11] and fields[12]
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def go_peer_binary() -> Path:
    """Build (or reuse) the Go peer under ~/.cache/sytq/bench/ingress."""
    target = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sytq" / "bench" / "ingress"
    target.parent.mkdir(parents=True, exist_ok=True)
    go = shutil.which("go") or "/usr/local/go/bin/go"
    subprocess.run([go, "build", "-o", str(target), "./ingress"], cwd=GO_DIR, check=True)
    return target


def go_peer_cmd(binary: Path, port: int, redis_port: int) -> list[str]:
    return [str(binary), "-addr", f"127.0.0.1:{port}", "-redis", f"127.0.0.1:{redis_port}"]


def _listen(port: int, workers: int) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]


def uvicorn_cmd(target: str, port: int, workers: int) -> list[str]:
    quiet = ["--log-level", "warning", "--no-access-log", "--backlog", "4096"]
    return [sys.executable, "-m", "uvicorn", target, *_listen(port, workers), *quiet]


def sytq_api_cmd(port: int, workers: int) -> list[str]:
    """Ours exactly as deployed: ``sytq api`` (its uvicorn settings and HTTP protocol)."""
    return [sys.executable, "-m", "sytq_cli", "api", *_listen(port, workers)]


def wrk(url: str, body: str, connections: int, seconds: int, workdir: Path) -> dict[str, float]:
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def grab(pattern: str) -> str:
        found = re.search(pattern, out)
        if found is None:
            raise RuntimeError(f"unexpected wrk output:\n{out}")
        return found.group(1)

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "requests_per_second": float(grab(r"Requests/sec:\s+([\d.]+)")),
        "requests": float(grab(r"(\d+) requests in")),
        "p50_ms": _ms(grab(r"50%\s+([\d.]+\w+)")),
        "p99_ms": _ms(grab(r"99%\s+([\d.]+\w+)")),
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
    }


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if found is None:
        raise RuntimeError(f"unexpected latency {text!r}")
    return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]


def measured(
    url: str, body: str, connections: int, seconds: int, workdir: Path, server_pgid: int, redis_pgid: int
) -> dict[str, float]:
    """wrk's numbers plus CPU per request of the server and of Redis."""
    server_before, redis_before = group_cpu_seconds(server_pgid), group_cpu_seconds(redis_pgid)
    result = wrk(url, body, connections, seconds, workdir)
    requests = result["requests"] or 1.0
    result["server_cpu_us_per_request"] = (group_cpu_seconds(server_pgid) - server_before) * 1e6 / requests
    result["redis_cpu_us_per_request"] = (group_cpu_seconds(redis_pgid) - redis_before) * 1e6 / requests
    return result


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median throughput (kept whole, so its numbers belong together)."""
    ordered = sorted(runs, key=lambda r: r["requests_per_second"])
    return dict(ordered[len(ordered) // 2])


def run(quick: bool) -> dict[str, Any]:
    if not shutil.which("wrk") or not shutil.which("redis-server"):
        raise SystemExit("bench_api needs wrk and redis-server (hack/install-test-deps.sh installs them)")
    seconds, rounds = (3, 1) if quick else (8, 3)
    worker_counts = [1] if quick else [1, 2]
    workdir = Path(tempfile.mkdtemp(prefix="sytq-bench-api-"))
    redis_port = free_port()
    redis_proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_port(redis_port, timeout=60, proc=redis_proc)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    client = redis.Redis.from_url(redis_url)
    env = env_without_settings()
    env.update(
        BENCH_REDIS_URL=redis_url,
        SYTQ_REDIS_URL=redis_url,
        SYTQ_LOG_LEVEL="WARNING",
        SYTQ_DATABASE_URL=f"sqlite:///{workdir / 'bench.db'}",
        SYTQ_API_MAX_BATCH=str(BATCH_SIZE),
        # Every peer runs without authentication, so all do the same work per request.
        SYTQ_AUTH_DISABLED="true",
        SYTQ_ID_SECRET="bench-id-secret",
    )
    batch_body = json.dumps({"tasks": [json.loads(SINGLE_BODY)] * BATCH_SIZE})
    go_binary = go_peer_binary()
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []

    def sample(
        cmd: list[str], proc_env: dict[str, str], port: int, jobs: list[tuple[str, str, str, int]]
    ) -> None:
        proc = start(cmd, port, proc_env)
        try:
            for key, path, body, connections in jobs:
                url = f"http://127.0.0.1:{port}{path}"
                wrk(url, body, connections, 1, workdir)  # warm-up
                client.flushall()
                samples[key].append(
                    measured(url, body, connections, seconds, workdir, proc.pid, redis_proc.pid)
                )
        finally:
            stop(proc)
        client.flushall()

    try:
        for workers in worker_counts:
            samples: dict[str, list[dict[str, float]]] = {
                k: [] for k in ("ceiling", "submit", "record", "batch", "go_submit", "go_record")
            }
            go_env = {**env, "GOMAXPROCS": str(workers)}
            for _ in range(rounds):
                port = free_port()
                sample(
                    uvicorn_cmd("bench.api_ceiling_app:app", port, workers),
                    env,
                    port,
                    [("ceiling", "/lpush", SINGLE_BODY, 64)],
                )
                port = free_port()
                sample(
                    go_peer_cmd(go_binary, port, redis_port),
                    go_env,
                    port,
                    [("go_submit", V1_PATH, SINGLE_BODY, 64), ("go_record", RECORD_PATH, RECORD_BODY, 64)],
                )
                port = free_port()
                sample(
                    sytq_api_cmd(port, workers),
                    env,
                    port,
                    [
                        ("submit", V1_PATH, SINGLE_BODY, 64),
                        ("record", RECORD_PATH, RECORD_BODY, 64),
                        ("batch", f"{V1_PATH}:batch", batch_body, 8),
                    ],
                )
            medians = {key: _median(runs) for key, runs in samples.items()}
            medians["batch"]["tasks_per_second"] = medians["batch"]["requests_per_second"] * BATCH_SIZE
            rows.append(
                {
                    "processes": workers,
                    **medians,
                    "submit_vs_go": medians["submit"]["requests_per_second"]
                    / medians["go_submit"]["requests_per_second"],
                    "record_vs_go": medians["record"]["requests_per_second"]
                    / medians["go_record"]["requests_per_second"],
                    "samples": samples,
                }
            )
    finally:
        client.close()
        stop(redis_proc)
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "quick": quick,
        "seconds_per_run": seconds,
        "rounds": rounds,
        "batch_size": BATCH_SIZE,
        "cores": os.cpu_count(),
        "load_generator": "wrk -t1 (64 connections single, 8 connections batch)",
        "go_peer": "bench/go/ingress: gin (release mode, Recovery only) + asynq v0.26 client",
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.1f}" for x in result["load_average_before"])
    lines = [
        "## api: HTTP ingress",
        "",
        f"wrk -t1 on loopback, {result['seconds_per_run']} s per run, median of {result['rounds']} "
        f"alternating round(s); {result['cores']} cores shared by wrk, the server and redis-server "
        f"(load average before: {load}). "
        f"Single submits: 64 connections; batch: 8 connections x {result['batch_size']} tasks per request. "
        "Processes: ours is `sytq api --workers N` (N > 1: a process per worker, each on its own "
        "SO_REUSEPORT socket; its HTTP protocol: plain submits answered without an ASGI cycle, one write "
        "per answer), "
        "the ceiling stock uvicorn workers, the Go peer GOMAXPROCS "
        f"({result['go_peer']}). CPU columns: server (all its processes) and Redis CPU time per request. "
        "No authentication on any peer.",
        "",
        "| processes | server | endpoint | req/s | tasks/s | p50 ms | p99 ms | server CPU us/req "
        "| server CPU us/task | Redis CPU us/req | non-2xx |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        w = row["processes"]
        for server, name, data, per_request in (
            ("bare FastAPI", "one LPUSH (ceiling)", row["ceiling"], 1),
            ("Go peer", f"POST {V1_PATH}", row["go_submit"], 1),
            ("ours", f"POST {V1_PATH}", row["submit"], 1),
            ("Go peer", f"POST {RECORD_PATH}", row["go_record"], 1),
            ("ours", f"POST {RECORD_PATH}", row["record"], 1),
            (
                "ours",
                f"POST {V1_PATH}:batch ({result['batch_size']}/req)",
                row["batch"],
                result["batch_size"],
            ),
        ):
            tasks = data["requests_per_second"] * per_request
            cpu = data["server_cpu_us_per_request"]
            lines.append(
                f"| {w} | {server} | {name} | {data['requests_per_second']:,.0f} | {tasks:,.0f} | "
                f"{data['p50_ms']:.1f} | {data['p99_ms']:.1f} | {cpu:,.0f} | {cpu / per_request:,.1f} | "
                f"{data['redis_cpu_us_per_request']:,.0f} | {data['non_2xx']:.0f} |"
            )
    after = ", ".join(f"{x:.1f}" for x in result["load_average_after"])
    lines += [
        "",
        "| processes | ours / Go peer, v1 submit (req/s) | ours / Go peer, record submit "
        "| CPU/req ratio v1 | CPU/req ratio record | p99 ratio v1 | p99 ratio record "
        "| batch tasks/s, each round |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        cpu_v1 = row["submit"]["server_cpu_us_per_request"] / row["go_submit"]["server_cpu_us_per_request"]
        cpu_rec = row["record"]["server_cpu_us_per_request"] / row["go_record"]["server_cpu_us_per_request"]
        p99_v1 = row["submit"]["p99_ms"] / row["go_submit"]["p99_ms"]
        p99_rec = row["record"]["p99_ms"] / row["go_record"]["p99_ms"]
        rounds = " / ".join(
            f"{run['requests_per_second'] * result['batch_size']:,.0f}" for run in row["samples"]["batch"]
        )
        lines.append(
            f"| {row['processes']} | {row['submit_vs_go']:.2f} | {row['record_vs_go']:.2f} | "
            f"{cpu_v1:.2f} | {cpu_rec:.2f} | {p99_v1:.2f} | {p99_rec:.2f} | {rounds} |"
        )
    lines += [
        "",
        f"Load average after: {after}. Other work on the 2 cores moves req/s and latency most; CPU per "
        "request moves less, but it does move (caches, and smaller coalesced Redis batches).",
        "Ratios above 1 are ours higher (req/s: better; CPU and p99: worse).",
        "Where a submit's CPU goes (profile): [api-profile.md](api-profile.md); earlier runs: "
        "[api-history.md](api-history.md).",
        "Targets: single submits >= 1.0x the Go peer's req/s on both contracts, server CPU <= 80 us per "
        "single submit, p99 <= the Go peer's; batch >= 100,000 tasks/s.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_api")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.quick)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "api.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "api.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
