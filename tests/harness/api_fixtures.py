"""Fixtures for the HTTP API tests: a real uvicorn server on a free loopback port.

``start_api(**settings)`` starts one with the given setting overrides (auth keys, limits...);
without keys it runs with SYTQ_AUTH_DISABLED=true. ``api`` is one with defaults. Both sit on the
session's real Redis (flushed per test) and a MariaDB database migrated once per session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
import uvicorn

from sytq.settings import Settings
from sytq_cli.direct_http import DirectSubmitProtocol
from tests.harness.services import MariaDBServer, RedisServer, free_port


@dataclass
class RunningApi:
    url: str
    port: int
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture(scope="session")
def api_database_url(mariadb_server: MariaDBServer) -> str:
    from sytq.storage import upgrade

    url = mariadb_server.create_database("sytq_api")
    upgrade(url)
    return url


def serve_in_thread(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    # The HTTP protocol ``sytq api`` serves with, so every API test runs through its direct path.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", http=DirectSubmitProtocol
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    return server, thread


@pytest.fixture
def start_api(
    redis_server: RedisServer, redis_client: aioredis.Redis, api_database_url: str
) -> Iterator[Callable[..., RunningApi]]:
    from api.app import create_asgi_app

    started: list[RunningApi] = []

    def start(**overrides: Any) -> RunningApi:
        keyed = bool(overrides.get("api_keys") or overrides.get("basic_auth_users"))
        values: dict[str, Any] = {
            "redis_url": redis_server.url,
            "database_url": api_database_url,
            "callback_allow_nets": "127.0.0.0/8",
            # Without keys the API refuses to start unless auth is switched off explicitly.
            "auth_disabled": not keyed,
            "id_secret": "test-id-secret",
            "queues": "critical=6,default=3,low=1",
            **overrides,
        }
        settings = Settings(**values)
        port = free_port()
        server, thread = serve_in_thread(create_asgi_app(settings), port)
        running = RunningApi(f"http://127.0.0.1:{port}", port, settings, server, thread)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def api(start_api: Callable[..., RunningApi]) -> RunningApi:
    return start_api()
