"""Client CPU per provider call: httpx vs aiohttp vs our httptools client (sytq.http1).

    python -m bench.bench_http_clients [--quick] [--repeats R] [--clients httpx,aiohttp,http1]

Each client runs in its own process (pinned to core 1 when `taskset` exists; the stub LLM on core 0)
on uvloop, as the worker does, and posts N chat-completion bodies to the stub with C calls in
flight; the process's own CPU time (user + system) over the calls after a warm-up of C calls is
divided by N. Two shapes: short calls (stub latency 0, C = 50) and slow calls held open (stub
latency 0.5 s, C = 1000), the worker's case. Every client is run R times per shape, interleaved,
and the median is reported (the CPU time of one process is robust to other load on the machine;
wall time is not, and is shown for information only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLIENTS = ("httpx", "aiohttp", "http1")


def _pinned(cmd: list[str], core: int) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(core), *cmd] if taskset and (os.cpu_count() or 1) > 1 else cmd


# ------------------------------------------------------------------------------- one client per process


async def _httpx_client(url: str, concurrency: int) -> tuple[Callable[[bytes], Awaitable[bytes]], Any]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.AsyncClient(limits=limits, timeout=600)  # CPU-starved, not slow: never cut
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}

    async def post(body: bytes) -> bytes:
        response = await client.post(url, content=body, headers=headers)
        return response.content

    return post, client.aclose


async def _aiohttp_client(url: str, concurrency: int) -> tuple[Callable[[bytes], Awaitable[bytes]], Any]:
    import aiohttp
    from aiohttp.payload import BytesPayload
    from yarl import URL

    # As the provider client configured it: no cookie jar, the URL parsed once.
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    session = aiohttp.ClientSession(
        connector=connector, headers={"Authorization": "Bearer bench"}, cookie_jar=aiohttp.DummyCookieJar()
    )
    parsed = URL(url)

    async def post(body: bytes) -> bytes:
        async with session.post(parsed, data=BytesPayload(body, content_type="application/json")) as response:
            return await response.read()

    return post, session.close


async def _http1_client(url: str, concurrency: int) -> tuple[Callable[[bytes], Awaitable[bytes]], Any]:
    from sytq.http1 import HTTP1Pool

    pool = HTTP1Pool(
        url, {"Content-Type": "application/json", "Authorization": "Bearer bench"}, connect_timeout=10
    )

    async def post(body: bytes) -> bytes:
        return (await pool.post(body)).body

    async def close() -> None:
        pool.close()

    return post, close


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would carry the forking driver's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _run_client(client: str, url: str, n: int, concurrency: int) -> dict[str, float]:
    factory = {"httpx": _httpx_client, "aiohttp": _aiohttp_client, "http1": _http1_client}[client]
    post, close = await factory(url, concurrency)
    bodies = [
        json.dumps(
            {
                "model": "deepseek-chat",
                "messages": [{"role": "user", "content": f"bench prompt {i}"}],
                "stream": False,
            }
        ).encode()
        for i in range(n + concurrency)
    ]
    answered = 0

    async def run(indexes: range) -> None:
        nonlocal answered
        queue = iter(indexes)

        async def lane() -> None:
            nonlocal answered
            for i in queue:
                if b"choices" in await post(bodies[i]):
                    answered += 1

        await asyncio.gather(*(lane() for _ in range(concurrency)))

    await run(range(concurrency))  # warm-up: connections opened, code paths hot
    cpu, wall = time.process_time(), time.monotonic()
    await run(range(concurrency, concurrency + n))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    await close()
    return {
        "cpu_us_per_call": cpu / n * 1e6,
        "calls_per_s": n / wall,
        "answered": answered - concurrency,
        "max_rss_mb": _peak_rss_mb(),
    }


def run_role(client: str, url: str, n: int, concurrency: int) -> None:
    import uvloop

    result = uvloop.run(_run_client(client, url, n, concurrency))
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------- driver


def _measure(client: str, url: str, n: int, concurrency: int) -> dict[str, float]:
    cmd = [
        sys.executable,
        "-m",
        "bench.bench_http_clients",
        "--role",
        client,
        "--url",
        url,
        "--n",
        str(n),
        "--concurrency",
        str(concurrency),
    ]
    proc = subprocess.run(_pinned(cmd, 1), cwd=ROOT, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{client} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = proc.stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    if result["answered"] != n:
        raise RuntimeError(f"{client}: {result['answered']} of {n} calls answered")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_http_clients", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        run_role(args.role, args.url, args.n, args.concurrency)
        return
    sys.path.insert(0, str(ROOT))
    from tests.harness.llm_fixtures import StubLLMProcess

    clients = args.clients.split(",")
    repeats = args.repeats or (1 if args.quick else 3)
    scale = 5 if args.quick else 1
    shapes = [  # (name, stub latency, calls in flight, calls measured)
        ("short calls", "0", 50, 5000 // scale),
        ("slow calls held open", "0.5", 1000, 3000 // scale),
    ]
    rows: list[dict[str, Any]] = []
    for shape, latency, concurrency, n in shapes:
        stub = StubLLMProcess(latency=latency)
        stub_cmd = stub._command
        stub._command = lambda cmd=stub_cmd: _pinned(cmd(), 0)  # type: ignore[method-assign,misc]
        stub.start()
        try:
            runs: dict[str, list[dict[str, float]]] = {c: [] for c in clients}
            for _ in range(repeats):
                for client in clients:
                    runs[client].append(_measure(client, stub.url + "/chat/completions", n, concurrency))
                    print(shape, client, runs[client][-1], flush=True)
        finally:
            stub.close()
        for client in clients:
            cpu = [r["cpu_us_per_call"] for r in runs[client]]
            rows.append(
                {
                    "shape": shape,
                    "stub_latency_s": float(latency),
                    "in_flight": concurrency,
                    "calls": n,
                    "client": client,
                    "cpu_us_per_call": statistics.median(cpu),
                    "cpu_us_runs": cpu,
                    "calls_per_s": statistics.median(r["calls_per_s"] for r in runs[client]),
                    "max_rss_mb": max(r["max_rss_mb"] for r in runs[client]),
                }
            )
    write_results(rows, args.quick, repeats)


def write_results(rows: list[dict[str, Any]], quick: bool, repeats: int) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    doc = {"quick": quick, "repeats": repeats, "load_average": os.getloadavg()[0], "results": rows}
    (RESULTS_DIR / "http_clients.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "## HTTP clients for provider calls (bench_http_clients)",
        "",
        "Client process CPU per call (user + system, median of "
        f"{repeats} interleaved runs; every run listed) posting chat bodies to the stub LLM over keep-alive "
        "HTTP/1.1 on loopback, uvloop, one process per run pinned to its own core. Load average at the "
        f"end: {os.getloadavg()[0]:.1f} (a busy machine inflates every client's figure)."
        + (" Quick run (small sizes)." if quick else ""),
        "",
        "| shape | in flight | calls | client | CPU us/call | runs | calls/s (wall) | max RSS MB |",
        "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: |",
    ]
    for r in rows:
        runs = ", ".join(f"{us:.0f}" for us in r["cpu_us_runs"])
        lines.append(
            f"| {r['shape']} (stub {r['stub_latency_s']:g} s) | {r['in_flight']} | {r['calls']} | "
            f"{r['client']} | {r['cpu_us_per_call']:.0f} | {runs} | {r['calls_per_s']:.0f} | "
            f"{r['max_rss_mb']:.0f} |"
        )
    (RESULTS_DIR / "http_clients.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
