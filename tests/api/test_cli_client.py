"""The CLI's HTTP commands: file submits with progress, one-line errors, non-zero exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sytq.queue import Inspector
from tests.harness.api_fixtures import RunningApi
from tests.harness.services import free_port

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

CLI = [sys.executable, "-m", "sytq_cli"]


def _run(*args: str, api_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYTQ_API_URL": api_url}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


async def test_submit_file_with_progress(
    api: RunningApi, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    lines = [f'{{"prompt": "question {i}"}}' for i in range(450)] + ['"a bare string prompt"', ""]
    prompts.write_text("\n".join(lines))
    done = _run("submit", "--file", str(prompts), api_url=api.url)
    assert done.returncode == 0, done.stderr
    ids = [line.split("\t")[1] for line in done.stdout.splitlines()]
    assert len(ids) == 451 and len(set(ids)) == 451
    assert "451/451" in done.stderr and "submitted 451, failed 0" in done.stderr
    assert (await Inspector(redis_client).queue_stats("default")).pending == 451

    listed = _run("tasks", "ls", "--limit", "5", api_url=api.url)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["TASK-ID", "TYPE", "STATE", "ATTEMPTS", "ERROR"]
    assert len(rows) == 5 and all(row.split()[1:3] == ["llm:chat", "pending"] for row in rows)
    cancelled = _run("tasks", "cancel", ids[0], api_url=api.url)
    assert cancelled.returncode == 0 and '"state": "archived"' in cancelled.stdout
    retried = _run("tasks", "retry", ids[0], api_url=api.url)
    assert retried.returncode == 0 and '"state": "pending"' in retried.stdout


def test_errors_are_one_line_and_non_zero(api: RunningApi, tmp_path: Path) -> None:
    unreachable = _run("queues", api_url=f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("sytq: cannot reach the API") and unreachable.stderr.count("\n") == 1
    invalid = _run("submit", "x", "--callback-url", "http://169.254.169.254/", api_url=api.url)
    assert invalid.returncode == 1 and "422" in invalid.stderr and invalid.stderr.count("\n") == 1
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text('{"prompt": "ok"}\n{oops\n')
    broken = _run("submit", "--file", str(bad_file), api_url=api.url)
    assert broken.returncode == 1 and f"{bad_file}:2: not JSON" in broken.stderr
    assert _run("submit", api_url=api.url).returncode == 1
