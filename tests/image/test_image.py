"""The Dockerfile builds an image that runs: config, non-root user, no build tools, and the API,
worker and stub LLM from the image processing a task against the suite's real Redis."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.harness.image_fixtures import ImageContainer, Service
from tests.harness.services import RedisServer, free_port, wait_for_port

# The first test builds the image: about 2-3 minutes cold (base image + apt + PyPI), 10-40 s warm.
pytestmark = pytest.mark.timeout(1200)

SERVICE_UID = 10001


def test_image_config_runs_sytq_as_a_fixed_non_root_user(image_config: dict[str, Any]) -> None:
    assert image_config["User"] == f"{SERVICE_UID}:{SERVICE_UID}"
    assert image_config["Entrypoint"] == ["sytq"]
    assert image_config["Cmd"] == ["api"]
    assert set(image_config["ExposedPorts"]) == {"8080/tcp", "9090/tcp"}
    env = dict(item.split("=", 1) for item in image_config["Env"])
    # the default SQLite/embedded data must land somewhere a non-root user can write
    assert env["SYTQ_DATA_DIR"].startswith("/tmp/")


def test_entrypoint_serves_every_subcommand_as_the_service_user(container: ImageContainer) -> None:
    helped = container.entrypoint("--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("api", "worker", "controller", "stub-llm"):
        assert command in helped.stdout
    ident = container.run("id", "-u")
    assert ident.stdout.strip() == str(SERVICE_UID), ident.stderr
    # every service's code and dependencies are installed, not only the CLI
    imported = container.run("python", "-c", "import api.app, worker.main, controller.main")
    assert imported.returncode == 0, imported.stderr
    consistent = container.run("python", "-m", "pip", "check")
    assert consistent.returncode == 0, consistent.stdout + consistent.stderr


def test_runtime_stage_carries_no_build_tools_or_sources(container: ImageContainer) -> None:
    for tool in ("gcc", "cc", "g++", "make", "ld"):
        found = container.run("sh", "-c", f"command -v {tool}")
        assert found.returncode != 0, f"{tool} in the runtime image: {found.stdout}"
    for path in ("/wheels", "/src"):
        assert container.run("test", "-e", path).returncode == 1, f"{path} left in the runtime image"
    # the service user cannot modify the installed code
    assert container.run("sh", "-c", "touch /usr/local/bin/sytq").returncode != 0
    # test-only packages stay out: kopf logs in through kubernetes_asyncio (tests/k8s/test_image.py)
    for module in ("kubernetes", "pytest"):
        found = container.run("python", "-c", f"import {module}")
        assert found.returncode != 0, f"{module} in the runtime image"


def _uids_of(port: int) -> set[int]:
    """Real uids of the host-visible processes serving on ``--port <port>``."""
    uids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if b"--port" in cmdline and str(port).encode() in cmdline and b"buildah" not in cmdline[0]:
            uids.add(int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1]))
    return uids


def _wait_listening(service: Service, port: int) -> None:
    try:
        wait_for_port(port, timeout=60, proc=service.proc)
    except (RuntimeError, TimeoutError) as exc:
        raise AssertionError(f"{service.name} from the image did not listen: {exc}\n{service.log()}") from exc


async def test_api_worker_and_stub_from_the_image_process_a_task(
    container: ImageContainer, redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    api_port, llm_port = free_port(), free_port()
    env = {
        "SYTQ_REDIS_URL": redis_server.url,
        "SYTQ_LLM_BASE_URL": f"http://127.0.0.1:{llm_port}",
        "SYTQ_AUTH_DISABLED": "true",  # on loopback only
        "SYTQ_CALLBACK_SECRET": "image-test-secret",
    }
    stub = container.start("stub-llm", "stub-llm", "--port", str(llm_port))
    api = container.start("api", "api", "--host", "127.0.0.1", "--port", str(api_port), env=env)
    worker = container.start("worker", "worker", env=env)
    _wait_listening(stub, llm_port)
    _wait_listening(api, api_port)
    assert _uids_of(api_port) == {SERVICE_UID}

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "redis": "ok", "database": "ok"}

        created = await http.post("/api/v1/tasks/llm", json={"prompt": "Say hello from the image."})
        assert created.status_code == 200, created.text
        task_id = created.json()["task_id"]
        assert created.json() == {"task_id": task_id, "status": "enqueued"}
        assert await redis_client.exists(f"asynq:{{default}}:t:{task_id}") == 1

        deadline = time.monotonic() + 60
        task: dict[str, Any] = {}
        while time.monotonic() < deadline:
            task = (await http.get(f"/api/v1/tasks/{task_id}")).json()
            if task.get("state") in ("completed", "archived") or worker.proc.poll() is not None:
                break
            await asyncio.sleep(0.2)
    assert task.get("state") == "completed", f"{task}\n--- worker log:\n{worker.log()}"
    assert task["result"], task
    assert task["usage"], task
