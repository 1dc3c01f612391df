"""The Go original's own config.yaml, pointed at the harness's Redis and MariaDB, starts ``sytq api``
and ``sytq worker``: its users log in with Basic auth and a record is processed as the original did."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import yaml

from tests.harness.llm_fixtures import VALUATION_RECORDS_DDL, StubLLMProcess
from tests.harness.services import MariaDBServer, RedisServer, env_without_settings, free_port, wait_for_port

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

ORIGINAL = Path(__file__).resolve().parents[1] / "data" / "go_original_config.yaml"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@contextlib.contextmanager
def _service(command: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sytq_cli", command],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _row(mariadb: MariaDBServer, database: str, record_id: int) -> dict[str, object]:
    sql = "SELECT status, report, current_task_node FROM valuation_records WHERE id = %s"
    row = mariadb.fetch_one(sql, database, record_id)
    assert row is not None
    return row


async def test_the_originals_config_starts_api_and_worker(
    tmp_path: Path,
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    mariadb_server: MariaDBServer,
    stub_llm: StubLLMProcess,
) -> None:
    database = f"goconf_{uuid.uuid4().hex[:10]}"
    mariadb_server.create_database(database)
    mariadb_server.execute(VALUATION_RECORDS_DDL, database=database)
    mariadb_server.execute(
        "INSERT INTO valuation_records (id, status, sys_message, user_message)"
        " VALUES (7, '待处理', 'sys', '估值')",
        database=database,
    )
    # The original's file with only what a user edits when switching: where Redis, MySQL and the
    # provider are, and the port.
    config = yaml.safe_load(ORIGINAL.read_text())
    port = free_port()
    config["app"]["port"] = port
    config["redis"]["addr"] = f"127.0.0.1:{redis_server.port}"
    config["mysql"]["dsn"] = (
        f"root@tcp(127.0.0.1:{mariadb_server.port})/{database}?charset=utf8mb4&parseTime=True&loc=Local"
    )
    config["deepseek"]["base_url"] = (
        f"{stub_llm.url}/chat/completions"  # the full endpoint, as Go posted to it
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    env = env_without_settings(llm_key=False)
    env |= {"SYTQ_CONFIG": str(path), "SYTQ_CALLBACK_SECRET": "kept-in-the-environment"}

    with _service("worker", env, tmp_path / "worker.log"), _service("api", env, tmp_path / "api.log") as api:
        wait_for_port(port, proc=api)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            ready = await http.get("/healthz/ready")
            refused = await http.post("/api/tasks/llm", json={"table_name": "valuation_records", "id": 7})
            wrong = await http.post(
                "/api/tasks/llm",
                json={"table_name": "valuation_records", "id": 7},
                headers=_basic("admin", "nope"),
            )
            accepted = await http.post(
                "/api/tasks/llm",
                json={"table_name": "valuation_records", "id": 7},
                headers=_basic("admin", "admin123"),
            )
            listed = await http.get("/api/tasks?status=pending", headers=_basic("api", "api123"))
        deadline = time.monotonic() + 60
        while _row(mariadb_server, database, 7)["status"] != "已完成":
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            await asyncio.sleep(0.2)

    assert ready.status_code == 200, ready.text
    assert refused.status_code == 401 and wrong.status_code == 401
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["data"]["status"] == "enqueued"
    assert listed.status_code == 200 and listed.json()["code"] == 200
    row = _row(mariadb_server, database, 7)
    assert row["current_task_node"] == 1 and row["report"]
    assert await redis_client.sismember("asynq:queues", "default")
