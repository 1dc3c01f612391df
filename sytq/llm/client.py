"""The provider client: OpenAI-compatible POST /chat/completions over one shared httpx.AsyncClient."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import ssl
import time
from typing import Any

import httpx

from sytq.llm.breaker import CircuitBreaker
from sytq.llm.errors import LLMError, LLMFatalError, LLMRetryableError, error_for_status
from sytq.llm.limiter import SharedLimiter
from sytq.llm.parsing import ChatResult, StreamAccumulator, parse_chat_body
from sytq.metrics import LLM_BREAKER_OPEN, LLM_IN_FLIGHT, LLM_LATENCY, LLM_TOKENS

_REQUEST_PARAMETERS = ("temperature", "max_tokens", "top_p", "stop", "response_format")
# httpcore's pool scans all of its connections on every request and release, which turns quadratic
# with thousands of connections in one pool (500 calls of 1 s took 13 s in one pool, 1.5 s in 50).
# So the one logical client spreads calls over small pools that share headers, timeouts and TLS.
CONNECTIONS_PER_SHARD = 16


class ShardedHTTP:
    """Round-robin over small httpx.AsyncClient pools; ``max_connections`` in total (plus slack)."""

    def __init__(self, max_connections: int, headers: dict[str, str], timeout: httpx.Timeout) -> None:
        shards = max(1, math.ceil(max_connections / CONNECTIONS_PER_SHARD))
        # Slack absorbs round-robin imbalance when call durations differ.
        per_shard = math.ceil(max_connections / shards * 1.25) + 1
        tls = ssl.create_default_context()
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        self._clients = [
            httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits, verify=tls)
            for _ in range(shards)
        ]
        self._next = itertools.cycle(self._clients)

    def pick(self) -> httpx.AsyncClient:
        return next(self._next)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


class LLMClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        max_connections: int = 100,
        connect_timeout: float = 10.0,
        read_timeout: float = 660.0,
        breaker: CircuitBreaker | None = None,
        limiter: SharedLimiter | None = None,
        stream: bool = False,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.read_timeout = read_timeout
        self.breaker = breaker
        self.limiter = limiter
        self.stream = stream
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # Keep-alive blank lines reset httpx's per-read timeout; the overall cap is enforced with
        # asyncio.timeout around the whole call.
        self._http = ShardedHTTP(
            max_connections,
            headers,
            httpx.Timeout(connect=connect_timeout, read=read_timeout, write=30.0, pool=None),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def _body(self, model: str, messages: list[dict[str, Any]], parameters: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": self.stream}
        body.update({k: v for k, v in parameters.items() if k in _REQUEST_PARAMETERS and v is not None})
        return body

    async def chat(
        self, model: str, messages: list[dict[str, Any]], parameters: dict[str, Any] | None = None
    ) -> ChatResult:
        """One completion; raises LLMRetryableError or LLMFatalError, never returns an empty result."""
        body = self._body(model, messages, parameters or {})
        if self.limiter is None:
            return await self._guarded_call(model, body)
        async with self.limiter.slot(model):
            result = await self._guarded_call(model, body)
        await self.limiter.record_tokens(model, result.usage.get("total_tokens", 0))
        return result

    async def _guarded_call(self, model: str, body: dict[str, Any]) -> ChatResult:
        if self.breaker is not None:
            self.breaker.before_call()
        started = time.monotonic()
        LLM_IN_FLIGHT.inc()
        outcome = "ok"
        try:
            result = await self._call(body)
        except LLMError as exc:
            outcome = exc.reason
            self._note_health(exc)
            raise
        finally:
            LLM_IN_FLIGHT.dec()
            LLM_LATENCY.labels(model=model, outcome=outcome).observe(time.monotonic() - started)
        self._note_health(None)
        for kind in ("prompt_tokens", "completion_tokens"):
            if kind in result.usage:
                LLM_TOKENS.labels(model=model, kind=kind.removesuffix("_tokens")).inc(result.usage[kind])
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
        LLM_BREAKER_OPEN.labels(provider=breaker.name).set(1 if breaker.state == "open" else 0)

    async def _call(self, body: dict[str, Any]) -> ChatResult:
        try:
            async with asyncio.timeout(self.read_timeout):
                if self.stream:
                    return await self._call_streaming(body)
                response = await self._http.pick().post(self.url, json=body)
                if response.status_code != 200:
                    raise self._status_error(response)
                return parse_chat_body(response.content)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise LLMRetryableError(
                f"provider did not answer within {self.read_timeout}s", reason="timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise LLMRetryableError(
                f"provider connection failed: {type(exc).__name__}: {exc}", reason="connection"
            ) from exc

    async def _call_streaming(self, body: dict[str, Any]) -> ChatResult:
        async with self._http.pick().stream("POST", self.url, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                raise self._status_error(response)
            accumulator = StreamAccumulator()
            async for line in response.aiter_lines():
                accumulator.feed(line)
                if accumulator.done:
                    break
            return accumulator.result()

    @staticmethod
    def _status_error(response: httpx.Response) -> LLMError:
        message = response.text.strip()[:500]
        try:
            doc = response.json()
            if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
                message = str(doc["error"].get("message") or message)
        except ValueError:
            pass
        return error_for_status(response.status_code, message, response.headers.get("retry-after"))


__all__ = ["ChatResult", "LLMClient", "LLMError", "LLMFatalError", "LLMRetryableError"]
