"""How provider failures are classified: retry (with an optional delay) or fail fast."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Deepseek's documented statuses: 400 format, 401 auth, 402 balance, 422 parameters -> the
# request itself is wrong and retrying cannot help. 429/5xx are the provider's transient state.
FAIL_FAST_STATUSES = frozenset({400, 401, 402, 403, 404, 413, 422})
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class LLMError(Exception):
    """Any failed provider call; ``reason`` is a short label for metrics."""

    reason = "error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMRetryableError(LLMError):
    """Transient: retry later; ``retry_after`` (seconds) when the provider said when."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None, reason: str
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
        self.reason = reason


class LLMFatalError(LLMError):
    """The request cannot succeed as sent (bad input, auth, balance): fail fast, do not retry."""

    def __init__(self, message: str, *, status: int | None = None, reason: str) -> None:
        super().__init__(message, status=status)
        self.reason = reason


class CircuitOpenError(LLMRetryableError):
    """The provider's breaker is open; the call was not made."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; HTTP dates are rare for APIs)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, min(seconds, 3600.0))


def error_for_status(status: int, message: str, retry_after: str | None) -> LLMError:
    """The exception for a non-2xx provider answer."""
    text = f"provider answered HTTP {status}: {message}"
    if status in RETRYABLE_STATUSES or status >= 500:
        reason = "rate_limited" if status == 429 else f"http_{status}"
        delay = parse_retry_after(retry_after)
        return LLMRetryableError(text, status=status, retry_after=delay, reason=reason)
    if status in FAIL_FAST_STATUSES or 400 <= status < 500:
        return LLMFatalError(text, status=status, reason=f"http_{status}")
    return LLMRetryableError(text, status=status, reason=f"http_{status}")
