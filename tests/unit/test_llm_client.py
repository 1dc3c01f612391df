"""The provider client against the stub LLM over real HTTP, and the Redis-shared limiter."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from sytq.llm import (
    CircuitBreaker,
    CircuitOpenError,
    LLMClient,
    LLMFatalError,
    LLMRetryableError,
    SharedLimiter,
)
from sytq.llm.client import token_estimate
from sytq_cli.stub_llm import deterministic_content
from tests.harness.llm_fixtures import StubLLMProcess

USER = [{"role": "user", "content": "hi"}]


async def test_answer_with_parameters_parses(stub_llm: StubLLMProcess) -> None:
    client = LLMClient(stub_llm.url, "key")
    parameters = {"temperature": 0.1, "max_tokens": 5, "stop": ["x"], "unknown": 1}
    try:
        result = await client.chat("deepseek-reasoner", USER, parameters)
    finally:
        await client.aclose()
    assert result.content == deterministic_content("deepseek-reasoner", "hi")
    assert result.reasoning_content and result.usage["total_tokens"] > 0 and result.latency_ms >= 0


async def test_hang_times_out_as_retryable(stub_llm: StubLLMProcess) -> None:
    stub_llm.configure(faults=[{"kind": "hang"}])
    client = LLMClient(stub_llm.url, "key", read_timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(LLMRetryableError) as caught:
            await client.chat("deepseek-chat", USER)
    finally:
        await client.aclose()
    assert caught.value.reason == "timeout" and time.monotonic() - started < 3


@pytest.mark.slow
async def test_keepalive_lines_longer_than_read_timeout_per_line_are_fine(stub_llm: StubLLMProcess) -> None:
    # Blank lines every 0.3 s for 1.5 s; each read is within 1 s, the whole call within 3 s.
    stub_llm.configure(faults=[{"kind": "keepalive", "keepalive_lines": 5, "keepalive_interval": 0.3}])
    client = LLMClient(stub_llm.url, "key", read_timeout=3.0)
    try:
        result = await client.chat("deepseek-chat", USER)
    finally:
        await client.aclose()
    assert result.content.startswith("stub answer")


async def test_connection_refused_is_retryable_and_opens_the_breaker() -> None:
    breaker = CircuitBreaker("dead", failure_threshold=2, reset_seconds=60)
    client = LLMClient("http://127.0.0.1:9", "key", breaker=breaker)
    try:
        for _ in range(2):
            with pytest.raises(LLMRetryableError) as caught:
                await client.chat("deepseek-chat", USER)
            assert caught.value.reason == "connection"
        with pytest.raises(CircuitOpenError):
            await client.chat("deepseek-chat", USER)
    finally:
        await client.aclose()


async def test_fail_fast_does_not_open_the_breaker(stub_llm: StubLLMProcess) -> None:
    stub_llm.configure(faults=[{"kind": "401"}])
    breaker = CircuitBreaker("stub", failure_threshold=1, reset_seconds=60)
    client = LLMClient(stub_llm.url, "bad-key", breaker=breaker)
    try:
        for _ in range(3):
            with pytest.raises(LLMFatalError, match="HTTP 401"):
                await client.chat("deepseek-chat", USER)
    finally:
        await client.aclose()
    assert breaker.state == "closed"


async def test_shared_limiter_caps_in_flight_across_clients(
    stub_llm: StubLLMProcess, redis_client: aioredis.Redis
) -> None:
    stub_llm.configure(latency="0.3")
    clients = [
        LLMClient(stub_llm.url, "key", limiter=SharedLimiter(redis_client, "stub", max_in_flight=2))
        for _ in range(2)  # two "pods" sharing one Redis
    ]
    try:
        started = time.monotonic()
        await asyncio.gather(*(clients[i % 2].chat("deepseek-chat", USER) for i in range(6)))
        elapsed = time.monotonic() - started
    finally:
        for client in clients:
            await client.aclose()
    assert stub_llm.stats()["max_in_flight"] == 2
    assert elapsed >= 0.85  # 6 calls, 2 at a time, 0.3 s each
    assert await SharedLimiter(redis_client, "stub", max_in_flight=2).in_flight("deepseek-chat") == 0


@pytest.mark.slow
async def test_shared_limiter_requests_per_minute(redis_client: aioredis.Redis) -> None:
    limiter = SharedLimiter(redis_client, "rpm", requests_per_minute=3)
    if time.time() % 60 > 58:  # keep the whole check inside one minute window
        await asyncio.sleep(60 - time.time() % 60)
    for _ in range(3):
        async with limiter.slot("m"):
            pass
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5), limiter.slot("m"):
            pass


async def _at_start_of_a_minute_window() -> None:
    if time.time() % 60 > 55:  # keep the whole check inside one minute window
        await asyncio.sleep(60 - time.time() % 60 + 0.05)


async def test_tokens_per_minute_reserve_before_and_settle_after(redis_client: aioredis.Redis) -> None:
    """Two pods share 100 tokens a minute: a call reserves its estimate, so a second one that would
    overshoot waits; settling with the real (smaller) usage frees room for it."""
    pod_a, pod_b = (SharedLimiter(redis_client, "tpm", tokens_per_minute=100) for _ in range(2))
    await _at_start_of_a_minute_window()
    async with pod_a.slot("m", tokens=60) as first:
        assert await pod_a.tokens_used("m") == 60
        with pytest.raises(TimeoutError):  # 60 + 60 > 100: waits
            async with asyncio.timeout(0.5), pod_b.slot("m", tokens=60):
                pass
        first.used_tokens = 25
    assert await pod_a.tokens_used("m") == 25  # settled with the reported usage
    async with asyncio.timeout(2), pod_b.slot("m", tokens=60):  # 25 + 60 fits now
        assert await pod_b.tokens_used("m") == 85
    assert await pod_b.tokens_used("m") == 25  # a call that reported nothing gives its tokens back


async def test_client_reserves_its_token_estimate_and_settles_with_usage(
    stub_llm: StubLLMProcess, redis_client: aioredis.Redis
) -> None:
    limiter = SharedLimiter(redis_client, "stub-tpm", tokens_per_minute=1_000_000)
    client = LLMClient(stub_llm.url, "key", limiter=limiter)
    await _at_start_of_a_minute_window()
    try:
        result = await client.chat("deepseek-chat", USER, {"max_tokens": 500})
    finally:
        await client.aclose()
    assert token_estimate({"messages": USER, "max_tokens": 500}) >= 500
    assert await limiter.tokens_used("deepseek-chat") == result.usage["total_tokens"] > 0
