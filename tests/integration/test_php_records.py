"""The PHP record-mode helper (examples/php/sytq_records.php) with php-cli against a running API and
worker: submit ``{table_name, id}`` to the Go original's route, poll it until the task is done."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.api.helpers import key_entry
from tests.harness.api_fixtures import RunningApi
from tests.harness.llm_fixtures import PipelineEnv, StubLLMProcess, running_worker
from tests.harness.services import MariaDBServer

pytestmark = pytest.mark.slow  # end to end: seconds each; left out of `make unit`

PHP_DIR = Path(__file__).resolve().parents[2] / "examples" / "php"


# The original's login (HTTP Basic, as its PHP callers sent it) or one of our API keys.
BASIC = {"SYTQ_API_USER": "admin", "SYTQ_API_PASSWORD": "admin123"}
BEARER = {"SYTQ_API_KEY": "php-secret"}


def _record_php(api: RunningApi, auth: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYTQ_API")}
    env |= {"SYTQ_API_URL": api.url, **auth}
    return subprocess.run(
        ["php", str(PHP_DIR / "record.php"), *args], env=env, capture_output=True, text=True, timeout=90
    )


async def test_php_record_helper_submits_and_polls(
    pipeline_env: PipelineEnv,
    mariadb_server: MariaDBServer,
    redis_client: aioredis.Redis,
    stub_llm: StubLLMProcess,
    start_api: Callable[..., RunningApi],
) -> None:
    db = pipeline_env.record_database
    mariadb_server.execute(
        "INSERT INTO valuation_records (id, sys_message, user_message) VALUES (41, 's', 'u')", db
    )
    api = start_api(
        api_keys=key_entry("php", "php-secret", "submit|read"),
        basic_auth_users=key_entry("admin", "admin123", "submit|read"),
    )
    async with running_worker(pipeline_env.settings, redis_client):
        done = await asyncio.to_thread(_record_php, api, BASIC, "valuation_records", "41", "60")
        missing = await asyncio.to_thread(_record_php, api, BEARER, "valuation_records", "404", "60")
    refused = await asyncio.to_thread(_record_php, api, BEARER, "users", "1", "5")
    unknown = await asyncio.to_thread(
        _record_php, api, {**BASIC, "SYTQ_API_PASSWORD": "x"}, "valuation_records", "41"
    )

    task_id, state = done.stdout.split()
    assert (done.returncode, state) == (0, "completed"), done.stderr
    row = mariadb_server.fetch_one(
        "SELECT status, current_task_node FROM valuation_records WHERE id = 41", db
    )
    assert row == {"status": "已完成", "current_task_node": 1}
    assert not await redis_client.exists(f"asynq:{{default}}:t:{task_id}")  # done tasks leave, as in Go
    # A record that does not exist fails at once; the helper reports the archived task.
    assert missing.returncode == 1 and missing.stdout.split()[1] == "archived", missing.stderr
    assert refused.returncode == 1
    assert "submit failed: HTTP 400: table_name 'users' is not allowed" in refused.stderr
    # A wrong password: gin's empty 401, which the helper reports rather than parsing.
    assert unknown.returncode == 1 and "HTTP 401" in unknown.stderr
