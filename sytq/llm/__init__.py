"""LLM provider access: client, error classification, circuit breaker, Redis-shared limiter."""

from sytq.llm.breaker import CircuitBreaker
from sytq.llm.client import LLMClient
from sytq.llm.errors import (
    CircuitOpenError,
    LLMError,
    LLMFatalError,
    LLMRetryableError,
    error_for_status,
    parse_retry_after,
)
from sytq.llm.limiter import SharedLimiter
from sytq.llm.parsing import ChatResult, StreamAccumulator, parse_chat_body

__all__ = [
    "ChatResult",
    "CircuitBreaker",
    "CircuitOpenError",
    "LLMClient",
    "LLMError",
    "LLMFatalError",
    "LLMRetryableError",
    "SharedLimiter",
    "StreamAccumulator",
    "error_for_status",
    "parse_chat_body",
    "parse_retry_after",
]
