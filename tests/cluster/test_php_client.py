"""The PHP example client against the chart on the real cluster: it submits through the API's
Service, a worker pod runs the task and delivers the signed callback to the PHP receiver, which
accepts only what its verifier (``sytq_verify_callback``) finds correctly signed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sytq.callbacks import encode_body, signed_headers
from tests.harness.cluster import HOST_IP
from tests.harness.kube_cluster_fixtures import API_KEY, Release
from tests.harness.php_example import PHP_DIR, start_php_receiver
from tests.harness.services import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]


@pytest.fixture
def php_receiver(helm_release: Release, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """examples/php/callback_receiver.php on the host's bridge address, which worker pods reach;
    the release allows that private address as a callback target (SYTQ_CALLBACK_ALLOW_NETS, see
    chart_values), as an operator would for an in-house receiver."""
    port = free_port()
    log = tmp_path / "callbacks.jsonl"
    proc = start_php_receiver(HOST_IP, port, helm_release.values["secrets"]["callbackSecret"], log)
    try:
        helm_release.cluster.wait_for(
            "the PHP receiver listening", lambda: proc.poll() is None and _listening(port), timeout=30
        )
        yield f"http://{HOST_IP}:{port}/callback", log
    finally:
        proc.terminate()
        proc.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST_IP, port)) == 0


def _php(script: str, *args: str, api_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYTQ_API_URL": api_url, "SYTQ_API_KEY": API_KEY}
    return subprocess.run(
        ["php", str(PHP_DIR / script), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_php_client_submits_through_the_service_and_gets_the_signed_callback(
    helm_release: Release, php_receiver: tuple[str, Path]
) -> None:
    callback_url, received = php_receiver
    api_url = helm_release.service_url(f"{helm_release.name}-api", 80)

    submitted = _php("submit.php", "Say hello from PHP on the cluster", callback_url, api_url=api_url)
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    polled = _php("poll.php", task_id, "120", api_url=api_url)
    assert polled.returncode == 0, polled.stderr

    def delivered() -> list[str]:
        return received.read_text().splitlines() if received.exists() else []

    lines = helm_release.cluster.wait_for("the verified callback at the PHP receiver", delivered, timeout=60)
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    status, view = helm_release.api("GET", f"/api/v1/tasks/{task_id}")
    assert status == 200, view
    event = entry["event"]
    assert entry["idempotency_key"] == task_id
    assert event["task_id"] == task_id and event["status"] == "succeeded" and event["error"] is None
    assert event["result"] == view["result"], (event, view)
    assert "Say hello from PHP on the cluster" in event["result"]["content"]
    # PHP's json_decode(…, true) turns the empty metadata object into [] before the receiver logs it
    assert event["usage"]["total_tokens"] > 0 and event["metadata"] == []

    # The entry means "verified": the same receiver refuses a body signed with another secret.
    body = encode_body(event)
    forged = signed_headers("not-the-release-secret", task_id, body)
    assert httpx.post(callback_url, content=body, headers=forged).status_code == 401
    assert len(delivered()) == 1
