"""A per-provider circuit breaker: after N transient failures in a row, stop calling for a while.

Closed -> (N failures) -> open for ``reset_seconds`` -> half-open: one trial call decides.
"""

from __future__ import annotations

import time

from sytq.llm.errors import CircuitOpenError


class CircuitBreaker:
    def __init__(self, name: str, failure_threshold: int, reset_seconds: float) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if time.monotonic() - self._opened_at >= self.reset_seconds:
            return "half-open"
        return "open"

    def before_call(self) -> None:
        """Raise CircuitOpenError when the call must not be made now."""
        state = self.state
        if state == "closed":
            return
        if state == "half-open" and not self._trial_running:
            self._trial_running = True
            return
        assert self._opened_at is not None
        wait = max(0.0, self.reset_seconds - (time.monotonic() - self._opened_at))
        raise CircuitOpenError(
            f"circuit for {self.name} is open after {self._failures} failures; not calling",
            retry_after=wait or self.reset_seconds,
            reason="circuit_open",
        )

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_running = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._trial_running or self._failures >= self.failure_threshold:
            self._opened_at = time.monotonic()
        self._trial_running = False

    def record_neutral(self) -> None:
        """A call that says nothing about the provider's health (e.g. 4xx): release a trial slot."""
        self._trial_running = False
