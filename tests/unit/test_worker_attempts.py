"""A failed attempt in the worker: its retry delay (doubling with jitter, or the Go original's linear
minutes on request) and its warning line."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from sytq.queue import SkipRetry, Task
from sytq.settings import Settings
from worker.handlers import logging_failures
from worker.llm_run import retry_delay_for


def _task(task_type: str, retried: int = 0, deadline: datetime | None = None) -> Task:
    writer = cast(Any, None)  # never used here
    return Task(
        writer,
        id="t-1",
        type=task_type,
        payload=b"",
        queue="default",
        retried=retried,
        max_retry=25,
        headers={},
        deadline=deadline,
    )


def test_linear_retry_reproduces_the_go_originals_n_minutes() -> None:
    delay = retry_delay_for(
        Settings(llm_retry_linear=True, llm_retry_base_seconds=60, llm_retry_max_seconds=1500)
    )
    process = _task("llm:process")
    assert [delay(n, RuntimeError("x"), process) for n in (0, 1, 2, 24)] == [0, 60, 120, 1440]
    # Callbacks keep their own doubling backoff.
    assert 4 <= delay(0, RuntimeError("x"), _task("callback:deliver")) <= 6


def test_default_retry_doubles_with_jitter_up_to_the_cap() -> None:
    delay = retry_delay_for(Settings(llm_retry_base_seconds=10, llm_retry_max_seconds=600))
    chat = _task("llm:chat")
    assert 8 <= delay(0, RuntimeError("x"), chat) <= 12
    assert 32 <= delay(2, RuntimeError("x"), chat) <= 48
    assert 480 <= delay(20, RuntimeError("x"), chat) <= 720


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_every_failed_attempt_leaves_a_warning_with_task_id_and_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails(task: Task) -> None:
        raise RuntimeError("provider answered HTTP 503")

    async def gives_up(task: Task) -> None:
        raise SkipRetry("valuation_records has no row with id 9")

    with pytest.raises(RuntimeError):
        await logging_failures(fails)(_task("llm:chat", retried=2))
    with pytest.raises(SkipRetry):
        await logging_failures(gives_up)(_task("llm:process"))
    assert _warnings(caplog) == [
        "task t-1 (llm:chat) attempt 3 failed, will retry: provider answered HTTP 503",
        "task t-1 (llm:process) attempt 1 failed, giving up: valuation_records has no row with id 9",
    ]


async def test_a_run_cancelled_at_its_deadline_is_logged_and_a_shutdown_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def hangs(task: Task) -> None:
        await asyncio.Event().wait()

    for deadline in (datetime.now(UTC) - timedelta(seconds=1), datetime.now(UTC) + timedelta(hours=1)):
        run = asyncio.create_task(logging_failures(hangs)(_task("llm:chat", deadline=deadline)))
        await asyncio.sleep(0)  # let it start
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    assert _warnings(caplog) == ["task t-1 (llm:chat) attempt 1 failed, will retry: deadline exceeded"]
