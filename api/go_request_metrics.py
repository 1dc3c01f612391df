"""The Go original's per-request metrics (method, gin-style route, status) around the whole API."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sytq import metrics_go

_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")


@functools.lru_cache(maxsize=256)
def gin_path(route_path: str) -> str:
    """A route's template as gin's ``c.FullPath()`` writes it: ``/api/tasks/{id}`` -> ``/api/tasks/:id``."""
    return _PARAMETER.sub(r":\1", route_path)


class GoRequestMetrics:
    """Counts and times every HTTP request into ``syt_go_queue_requests_total`` and
    ``…_request_duration_seconds`` (the route, or ``unknown`` when none matched, as gin did)."""

    def __init__(self, app: ASGIApp, fixed_paths: Iterable[str], renamed: Mapping[str, str]) -> None:
        self.app = app
        # Paths answered without the router (the submit fast lane): their route is their path.
        self.fixed_paths = frozenset(fixed_paths)
        self.renamed = dict(renamed)  # route templates whose gin name differs from gin_path's

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500  # what the client sees when the app fails before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            metrics_go.request_done(
                scope["method"], self._endpoint(scope), status, time.monotonic() - started
            )

    def _endpoint(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return self.renamed.get(path) or gin_path(path)
        return scope["path"] if scope["path"] in self.fixed_paths else "unknown"
