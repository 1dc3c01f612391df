"""The two-command start and the PHP client, end to end: ``sytq run`` with every embedded default,
PHP's submit/poll scripts as the caller, and PHP's receiver verifying the signed callback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sytq.callbacks import encode_body, signed_headers
from tests.harness.php_example import PHP_DIR, start_php_receiver
from tests.harness.services import env_without_settings, free_port, wait_for_port

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

SECRET = "php-shared-secret"


@pytest.fixture
def callback_receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "callbacks.jsonl"
    proc = start_php_receiver("127.0.0.1", port, SECRET, log)
    wait_for_port(port, proc=proc)
    yield f"http://127.0.0.1:{port}/callback", log
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def local_system(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``sytq run`` exactly as ``make run`` starts it, with no connection configured."""
    port = free_port()
    env = env_without_settings(llm_key=False)
    env.update(
        SYTQ_DATA_DIR=str(tmp_path / "var"),
        SYTQ_API_PORT=str(port),
        SYTQ_CALLBACK_SECRET=SECRET,
        SYTQ_CALLBACK_ALLOW_NETS="127.0.0.0/8",
        SYTQ_WORKER_CONCURRENCY="8",
    )
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sytq_cli", "run"], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 90
    while "SYT Queue is up" not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}", log
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def _php(script: str, *args: str, api_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["php", str(PHP_DIR / script), *args],
        env={**os.environ, "SYTQ_API_URL": api_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_then_php_submit_poll_and_signed_callback(
    local_system: tuple[str, Path], callback_receiver: tuple[str, Path]
) -> None:
    api_url, run_log = local_system
    callback_url, received = callback_receiver
    banner = run_log.read_text()
    assert "EMBEDDED VALKEY" in banner and "SQLITE" in banner and "STUB LLM" in banner
    assert f"curl -s -X POST {api_url}/api/v1/tasks/llm" in banner

    submitted = _php("submit.php", "Say hello from PHP", callback_url, api_url=api_url)
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    polled = _php("poll.php", task_id, "60", api_url=api_url)
    assert polled.returncode == 0, polled.stderr
    assert polled.stdout.strip()

    deadline = time.monotonic() + 30
    while not received.exists() or not received.read_text().strip():
        assert time.monotonic() < deadline, "no verified callback reached the PHP receiver"
        time.sleep(0.2)
    entry = json.loads(received.read_text().splitlines()[0])
    assert entry["idempotency_key"] == task_id
    assert entry["event"]["task_id"] == task_id and entry["event"]["status"] == "succeeded"

    # The receiver refuses what it cannot verify.
    body = encode_body({"task_id": task_id, "status": "succeeded"})
    good = signed_headers(SECRET, task_id, body)
    assert httpx.post(callback_url, content=body, headers=good).status_code == 200
    assert httpx.post(callback_url, content=body + b" ", headers=good).status_code == 401
    forged = signed_headers("not-the-secret", task_id, body)
    assert httpx.post(callback_url, content=body, headers=forged).status_code == 401
    stale = signed_headers(SECRET, task_id, body, now=time.time() - 3600)
    assert httpx.post(callback_url, content=body, headers=stale).status_code == 401

    # The CLI against the same running system.
    cli_env = {**os.environ, "SYTQ_API_URL": api_url}
    cli = [sys.executable, "-m", "sytq_cli"]
    answer = subprocess.run(
        [*cli, "submit", "hello from the CLI", "--wait", "--timeout", "60"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert answer.returncode == 0 and answer.stdout.strip(), answer.stderr
    queues = subprocess.run([*cli, "queues"], env=cli_env, capture_output=True, text=True, timeout=30)
    assert queues.returncode == 0 and queues.stdout.startswith("QUEUE") and "default" in queues.stdout
    shown = subprocess.run(
        [*cli, "tasks", "get", task_id], env=cli_env, capture_output=True, text=True, timeout=30
    )
    assert json.loads(shown.stdout)["task_id"] == task_id
    missing = subprocess.run(
        [*cli, "tasks", "get", "nope"], env=cli_env, capture_output=True, text=True, timeout=30
    )
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "404" in missing.stderr
