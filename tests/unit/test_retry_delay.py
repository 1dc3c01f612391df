"""The worker's retry delays: doubling with jitter by default, the Go original's linear minutes on request."""

from __future__ import annotations

from typing import Any, cast

from sytq.queue import Task
from sytq.settings import Settings
from worker.llm_run import retry_delay_for


def _task(task_type: str) -> Task:
    writer = cast(Any, None)  # never used: the delay only reads the task's type
    return Task(
        writer,
        id="t",
        type=task_type,
        payload=b"",
        queue="default",
        retried=0,
        max_retry=25,
        headers={},
        deadline=None,
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
