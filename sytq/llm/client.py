"""The provider client: OpenAI-compatible POST /chat/completions over our keep-alive HTTP/1.1 pool
(``sytq.http1``), plain or streamed (SSE), directly or through a forward proxy."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
import time
from typing import Any

import pydantic_core

from sytq import metrics_go
from sytq.http1 import HTTP1Pool, HTTPConnectionError, Proxy
from sytq.llm.breaker import CircuitBreaker
from sytq.llm.errors import LLMError, LLMFatalError, LLMRetryableError, error_for_status
from sytq.llm.limiter import SharedLimiter
from sytq.llm.parsing import ChatResult, StreamAccumulator, parse_chat_body
from sytq.llm.slots import CallSlots
from sytq.metrics import LLM_BREAKER_OPEN, LLM_IN_FLIGHT, LLM_LATENCY, LLM_TOKENS, labelled

_REQUEST_PARAMETERS = ("temperature", "max_tokens", "top_p", "stop", "response_format")


class LLMClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 660.0,
        breaker: CircuitBreaker | None = None,
        limiter: SharedLimiter | None = None,
        stream: bool = False,
        max_calls: int | None = None,
        proxy: Proxy | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``max_calls`` caps this process's calls in flight (the worker holds more tasks than that);
        ``proxy``: a forward proxy (see ``sytq.http1.proxy_for``); ``ssl_context``: trust for https."""
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.read_timeout = read_timeout
        self.breaker = breaker
        self.limiter = limiter
        self.stream = stream
        self._headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        # The whole call is capped by asyncio.timeout(read_timeout) in _call (keep-alive blank lines
        # cannot stretch it). No separate per-read timer: with the same limit it could never fire
        # first, and it would cost a timer handle per socket read. Connections are opened as calls
        # need them (one call per connection at a time), so calls in flight bound them.
        self._pool = HTTP1Pool(
            self.url, self._headers, connect_timeout=connect_timeout, proxy=proxy, ssl_context=ssl_context
        )
        self.proxy = proxy
        self._call_slots = CallSlots(max_calls) if max_calls else None

    async def aclose(self) -> None:
        self._pool.close()

    def _body(self, model: str, messages: list[dict[str, Any]], parameters: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": self.stream}
        body.update({k: v for k, v in parameters.items() if k in _REQUEST_PARAMETERS and v is not None})
        return body

    async def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        parameters: dict[str, Any] | None = None,
        *,
        time_limit: float | None = None,
    ) -> ChatResult:
        """One completion; raises LLMRetryableError or LLMFatalError, never returns an empty result.

        ``time_limit`` (seconds from now, waiting for a call slot included) ends the call earlier
        than the read timeout, as a retryable timeout: the worker passes what is left of the task's
        own deadline, so that the failure is stored and reported instead of the task being killed."""
        body = self._body(model, messages, parameters or {})
        ends_at = None if time_limit is None else time.monotonic() + time_limit
        if self._call_slots is None:
            return await self._limited_call(model, body, ends_at)
        async with self._call_slots:
            return await self._limited_call(model, body, ends_at)

    async def _limited_call(self, model: str, body: dict[str, Any], ends_at: float | None) -> ChatResult:
        if self.limiter is None:
            return await self._guarded_call(model, body, ends_at)
        async with self.limiter.slot(model, tokens=token_estimate(body)) as reservation:
            result = await self._guarded_call(model, body, ends_at)
            reservation.used_tokens = result.usage.get("total_tokens", 0)
        return result

    async def _guarded_call(self, model: str, body: dict[str, Any], ends_at: float | None) -> ChatResult:
        if self.breaker is not None:
            self.breaker.before_call()
        started = time.monotonic()
        LLM_IN_FLIGHT.inc()
        outcome = "ok"
        try:
            result = await self._call(body, self._limit(ends_at))
        except LLMError as exc:
            outcome = exc.reason
            self._note_health(exc)
            raise
        finally:
            LLM_IN_FLIGHT.dec()
            elapsed = time.monotonic() - started
            labelled(LLM_LATENCY, model, outcome).observe(elapsed)
            metrics_go.llm_call(outcome, elapsed)
        self._note_health(None)
        for kind, field in (("prompt", "prompt_tokens"), ("completion", "completion_tokens")):
            if field in result.usage:
                labelled(LLM_TOKENS, model, kind).inc(result.usage[field])
        return dataclasses.replace(result, latency_ms=int((time.monotonic() - started) * 1000))

    def _note_health(self, exc: LLMError | None) -> None:
        breaker = self.breaker
        if breaker is None:
            return
        if exc is None:
            breaker.record_success()
        elif isinstance(exc, LLMRetryableError) and exc.reason not in ("rate_limited", "circuit_open"):
            breaker.record_failure()
        else:
            # 429 and 4xx prove the provider is up.
            breaker.record_neutral()
        labelled(LLM_BREAKER_OPEN, breaker.name).set(1 if breaker.state == "open" else 0)

    def _limit(self, ends_at: float | None) -> float:
        """Seconds this call may take: the read timeout, or less when the caller's time runs out."""
        if ends_at is None:
            return self.read_timeout
        left = ends_at - time.monotonic()
        if left <= 0:
            raise LLMRetryableError(
                "no time left for a provider call before the task's deadline", reason="timeout"
            )
        return min(self.read_timeout, left)

    async def _call(self, body: dict[str, Any], limit: float) -> ChatResult:
        data = pydantic_core.to_json(body)  # UTF-8 JSON from the Rust encoder, far cheaper than json.dumps
        lines = _SSELines() if self.stream else None
        try:
            async with asyncio.timeout(limit):
                response = await self._pool.post(data, sink=None if lines is None else lines.feed)
        except TimeoutError as exc:
            raise LLMRetryableError(f"provider did not answer within {limit:.4g}s", reason="timeout") from exc
        except HTTPConnectionError as exc:
            raise LLMRetryableError(f"provider connection failed: {exc}", reason="connection") from exc
        if response.status != 200:
            message = _error_message(response.body)
            raise error_for_status(response.status, message, response.headers.get("retry-after"))
        return parse_chat_body(response.body) if lines is None else lines.result()


class _SSELines:
    """Splits a streamed answer's body into lines for the StreamAccumulator as bytes arrive."""

    def __init__(self) -> None:
        self._accumulator = StreamAccumulator()
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            self._accumulator.feed(line.decode("utf-8", errors="replace"))

    def result(self) -> ChatResult:
        if self._partial:
            self._accumulator.feed(self._partial.decode("utf-8", errors="replace"))
        return self._accumulator.result()


DEFAULT_ANSWER_TOKENS = 1024  # reserved for the answer when the request sets no max_tokens


def token_estimate(body: dict[str, Any]) -> int:
    """Tokens a request may use, reserved against a tokens-per-minute budget before the call and
    settled with the reported usage after: the prompt at ~3 characters a token (Chinese text runs
    denser, English sparser) plus the answer's allowance."""
    prompt_chars = sum(len(str(message.get("content") or "")) for message in body.get("messages", ()))
    answer = body.get("max_tokens") or DEFAULT_ANSWER_TOKENS
    return prompt_chars // 3 + 1 + int(answer)


def _error_message(raw: bytes) -> str:
    """The provider's ``error.message`` when the body is OpenAI-style JSON, else the body's start."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        return str(doc["error"].get("message") or text[:500])
    return text[:500]


__all__ = ["ChatResult", "LLMClient", "LLMError", "LLMFatalError", "LLMRetryableError"]
