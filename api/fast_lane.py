"""The submit routes served without the framework's per-request machinery.

A PHP app's single submits are most of the API's traffic, and for them Starlette's middleware
stack, router and exception plumbing cost more CPU than the route itself. This outermost ASGI app
answers ``POST`` on the submit paths by calling the very route functions FastAPI registers (same
parsing, validation, auth, limits, idempotency and answers), renders their exceptions with the
app's own exception handlers, and caps the body with the same middleware; every other request
goes through the full FastAPI app, which also still documents these routes in OpenAPI.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.middleware import BodyLimitMiddleware

log = logging.getLogger("sytq.api")
Route = Callable[[Request], Awaitable[Response]]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


class SubmitFastLane:
    """Dispatches ``POST <path>`` for the paths in ``routes`` straight to their functions."""

    def __init__(self, app: FastAPI, routes: Mapping[str, Route], max_body_bytes: int) -> None:
        self.app = app
        self.routes = dict(routes)
        self._capped: ASGIApp = BodyLimitMiddleware(self._serve, max_bytes=max_body_bytes)
        self._handlers: dict[type[BaseException], ExceptionHandler] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.routes:
            await self._capped(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self.app  # what app_state(request) reads
        request = Request(scope, receive)
        try:
            response = await self.routes[scope["path"]](request)
        except Exception as exc:
            response = await self._handler_for(exc)(request, exc)
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> ExceptionHandler:
        """The app's handler for ``exc``, found as Starlette finds it: the nearest class in the MRO."""
        kind = type(exc)
        cached = self._handlers.get(kind)
        if cached is not None:
            return cached
        registered = self.app.exception_handlers
        # Every handler install_error_handlers registers is an async (request, exc) -> Response.
        handler: ExceptionHandler = next(
            (registered[k] for k in kind.__mro__ if k in registered), _internal_error
        )  # type: ignore[assignment]
        self._handlers[kind] = handler
        return handler


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response(b'{"detail":"internal error"}', status_code=500, media_type="application/json")
