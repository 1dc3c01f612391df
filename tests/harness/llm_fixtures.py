"""Pipeline fixtures: the stub LLM (a real server process) and a callback receiver (real HTTP).

``stub_llm``: a StubLLMProcess, reset before each test; ``configure(faults=[...], latency=...)``
switches faults at run time, ``stats()`` counts requests per prompt.
``callback_receiver``: records POSTs; ``down()`` closes the port (connection refused), ``up()``
opens it again on the same port; ``status`` sets the answer code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from sytq.queue import ServerConfig
from sytq.settings import Settings
from sytq.storage import TaskRecord, TaskStore, upgrade
from tests.harness.services import MariaDBServer, RedisServer, _ServerProcess, env_without_settings, free_port
from worker.pipeline import Pipeline, build_pipeline
from worker.servers import WorkerServers, server_config


class StubLLMProcess(_ServerProcess):
    def __init__(self, latency: str = "0") -> None:
        super().__init__("stub-llm")
        self.latency = latency

    def _command(self) -> list[str]:
        port = str(self.port)
        return [sys.executable, "-m", "sytq_cli.stub_llm", "--port", port, "--latency", self.latency]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configure(self, faults: list[dict[str, Any]] | str = "", latency: str = "0") -> None:
        response = httpx.post(f"{self.url}/_stub/config", json={"faults": faults, "latency": latency})
        response.raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_stub/reset").raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_stub/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def calls_for(self, prompt_part: str) -> int:
        return sum(n for prompt, n in self.stats()["by_prompt"].items() if prompt_part in prompt)


@dataclass(frozen=True)
class ReceivedCallback:
    path: str
    headers: dict[str, str]
    body: bytes


class CallbackReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[ReceivedCallback] = []
        self.status = 200
        self.location: str | None = None  # sent as Location (with a 3xx status)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        if self._server is not None:
            return
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(ReceivedCallback(self.path, dict(self.headers.items()), body))
                    status, location = receiver.status, receiver.location
                self.send_response(status)
                if location:
                    self.send_header("location", location)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def for_task(self, task_id: str) -> list[ReceivedCallback]:
        with self._lock:
            return [c for c in self.received if c.headers.get("Idempotency-Key") == task_id]

    def wait_for(self, task_id: str, timeout: float = 30.0) -> ReceivedCallback:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.for_task(task_id)
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no callback for {task_id} within {timeout}s (got {len(self.received)} others)")


@pytest.fixture(scope="session")
def stub_llm_server() -> Iterator[StubLLMProcess]:
    server = StubLLMProcess()
    server.start()
    yield server
    server.close()


@pytest.fixture
def stub_llm(stub_llm_server: StubLLMProcess) -> StubLLMProcess:
    if not stub_llm_server.running:
        stub_llm_server.start()
    stub_llm_server.reset()
    return stub_llm_server


@pytest.fixture
def callback_receiver() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    receiver.up()
    yield receiver
    receiver.down()


# --- a pipeline wired to the real servers ---------------------------------------------------------

# The Go original's table, exactly as its README gives it (MariaDB runs it in strict mode).
VALUATION_RECORDS_DDL = """
CREATE TABLE valuation_records (
    id BIGINT PRIMARY KEY,
    status VARCHAR(50),
    user_message TEXT,
    sys_message TEXT,
    report TEXT,
    failed_times INT DEFAULT 0,
    failed_info TEXT,
    progress VARCHAR(50),
    progress_info TEXT,
    current_task_node INT DEFAULT 0,
    callback_url VARCHAR(255),
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
)
"""


@dataclass
class PipelineEnv:
    settings: Settings
    database: str
    record_database: str


@pytest.fixture
def pipeline_env(
    redis_server: RedisServer,
    mariadb_server: MariaDBServer,
    stub_llm: StubLLMProcess,
    callback_receiver: CallbackReceiver,
) -> PipelineEnv:
    """Settings for a worker on a fresh MariaDB database (tables migrated) and a records database."""
    if not mariadb_server.running:
        mariadb_server.start()
    suffix = uuid.uuid4().hex[:10]
    database, record_database = f"pipe_{suffix}", f"rec_{suffix}"
    url = mariadb_server.create_database(database)
    record_url = mariadb_server.create_database(record_database)
    mariadb_server.execute(VALUATION_RECORDS_DDL, database=record_database)
    upgrade(url)
    settings = Settings(
        redis_url=redis_server.url,
        database_url=url,
        record_database_url=record_url,
        deepseek_api_key="test-key",
        llm_base_url=stub_llm.url,
        llm_read_timeout=3.0,
        llm_retry_base_seconds=0.2,
        llm_retry_max_seconds=1.0,
        llm_breaker_failures=50,
        callback_secret="test-secret",
        callback_allow_nets="127.0.0.0/8",
        callback_retry_base_seconds=0.2,
        callback_max_attempts=20,
        callback_timeout_seconds=2.0,
        worker_concurrency=20,
        database_outage_wait_seconds=120.0,
    )
    return PipelineEnv(settings=settings, database=database, record_database=record_database)


def fast_server_config(settings: Settings, *, lease_seconds: float = 30.0) -> ServerConfig:
    config = server_config(settings)
    config.lease_seconds = lease_seconds
    config.lease_grace = 0.5
    config.recover_interval = 1.0
    config.forward_interval = 0.2
    config.idle_poll_max = 0.05
    return config


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, redis: aioredis.Redis) -> AsyncIterator[Pipeline]:
    """The worker's server and handlers inside the test's event loop."""
    pipeline = await asyncio.to_thread(build_pipeline, settings, redis, migrate=False)
    server = WorkerServers(redis, settings, pipeline, fast_server_config(settings))
    runner = asyncio.create_task(server.run(install_signal_handlers=False))
    try:
        async with asyncio.timeout(10):
            await server.wait_started()
        yield pipeline
    finally:
        server.request_stop()
        await runner
        await pipeline.close()


async def wait_row(
    store: TaskStore, task_id: str, done: Callable[[TaskRecord], bool], within: float = 30.0
) -> TaskRecord:
    """The row once ``done(row)`` holds (fails the test after ``within`` seconds)."""
    deadline = time.monotonic() + within
    record = None
    while time.monotonic() < deadline:
        record = await store.get(task_id)
        if record is not None and done(record):
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id}: condition not met after {within}s: {record}")


async def wait_final(store: TaskStore, task_id: str, within: float = 30.0) -> TaskRecord:
    return await wait_row(store, task_id, lambda r: r.finished, within)


async def wait_callback_state(store: TaskStore, task_id: str, state: str, within: float = 30.0) -> TaskRecord:
    return await wait_row(store, task_id, lambda r: r.callback_status == state, within)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes ``Settings()`` in a child process equal ``settings``."""
    env = env_without_settings(llm_key=False)
    for name, value in settings.model_dump(exclude_none=True).items():
        if name == "deepseek_api_key":
            key = settings.deepseek_api_key
            env["DEEPSEEK_API_KEY"] = key.get_secret_value() if key else ""
        elif hasattr(value, "get_secret_value"):
            env[f"SYTQ_{name.upper()}"] = value.get_secret_value()
        else:
            env[f"SYTQ_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class WorkerProcess:
    """``sytq worker`` in a child process (its own process group, so kill -9 takes it all)."""

    def __init__(self, settings: Settings, lease_seconds: float = 3.0) -> None:
        env = settings_env(settings) | {"SYTQ_TEST_LEASE_SECONDS": str(lease_seconds)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.pipeline_worker_main"], env=env, start_new_session=True
        )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
