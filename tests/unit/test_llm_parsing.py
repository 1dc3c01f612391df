"""Provider answers and errors: parsing, classification, Retry-After, the circuit breaker."""

from __future__ import annotations

import json
import time

import pytest

from sytq.llm import (
    CircuitBreaker,
    CircuitOpenError,
    LLMFatalError,
    LLMRetryableError,
    StreamAccumulator,
    error_for_status,
    parse_chat_body,
    parse_retry_after,
)

ANSWER = {
    "model": "deepseek-reasoner",
    "choices": [{"message": {"content": "42", "reasoning_content": "thinking"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "prompt_cache_hit_tokens": 2,
        "prompt_cache_miss_tokens": 3,
        "completion_tokens_details": {"reasoning_tokens": 4},
    },
}


def test_body_after_keepalive_blank_lines_is_parsed() -> None:
    result = parse_chat_body(b"\n\n\n" + json.dumps(ANSWER).encode() + b"\n")
    assert result.content == "42" and result.reasoning_content == "thinking"
    assert result.finish_reason == "stop" and result.model == "deepseek-reasoner"
    assert result.usage == {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "prompt_cache_hit_tokens": 2,
        "prompt_cache_miss_tokens": 3,
        "reasoning_tokens": 4,
    }


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "malformed_response"),
        (b"\n\n", "malformed_response"),
        (b'{"choices": [', "malformed_response"),
        (b"[]", "malformed_response"),
        (b'{"choices": []}', "malformed_response"),
        (b'{"choices": [{"message": {"content": 5}}]}', "malformed_response"),
        (b'{"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]}', "empty_content"),
        (b'{"choices": [{"message": {"content": null}, "finish_reason": "length"}]}', "empty_content"),
    ],
)
def test_empty_or_malformed_answers_are_retryable_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(LLMRetryableError) as caught:
        parse_chat_body(raw)
    assert caught.value.reason == reason


def test_stream_with_keepalive_comments() -> None:
    acc = StreamAccumulator()
    lines = [
        ": keep-alive",
        "",
        ": keep-alive",
        "",
        'data: {"model": "m", "choices": [{"delta": {"reasoning_content": "hm"}}]}',
        "",
        'data: {"choices": [{"delta": {"content": "Hel"}}]}',
        "",
        'data: {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}], '
        '"usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}',
        "",
        "data: [DONE]",
    ]
    for line in lines:
        acc.feed(line)
    result = acc.result()
    assert (result.content, result.reasoning_content, result.finish_reason) == ("Hello", "hm", "stop")
    assert result.usage["total_tokens"] == 3 and result.model == "m"


def test_stream_cut_short_is_an_error() -> None:
    acc = StreamAccumulator()
    acc.feed('data: {"choices": [{"delta": {"content": "Hel"}}]}')
    with pytest.raises(LLMRetryableError, match="before \\[DONE\\]"):
        acc.result()
    with pytest.raises(LLMRetryableError, match="not JSON"):
        acc.feed("data: {nope")


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retryable(status: int) -> None:
    error = error_for_status(status, "busy", "7")
    assert isinstance(error, LLMRetryableError) and error.retry_after == 7.0 and error.status == status


@pytest.mark.parametrize("status", [400, 401, 402, 422])
def test_request_errors_fail_fast(status: int) -> None:
    error = error_for_status(status, "Insufficient Balance", None)
    assert isinstance(error, LLMFatalError) and "Insufficient Balance" in str(error)


def test_retry_after_forms() -> None:
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0 and parse_retry_after("99999") == 3600.0
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    delay = parse_retry_after(http_date)
    assert delay is not None and 25 <= delay <= 31


def test_breaker_opens_then_half_opens_with_one_trial() -> None:
    breaker = CircuitBreaker("p", failure_threshold=3, reset_seconds=0.2)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError) as caught:
        breaker.before_call()
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 0.2
    time.sleep(0.25)
    breaker.before_call()  # the one trial call
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    breaker.record_failure()  # trial failed: open again
    assert breaker.state == "open"
    time.sleep(0.25)
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_call()
