"""The submit routes served without the framework's per-request machinery.

A PHP app's single submits are most of the API's traffic, and for them Starlette's middleware
stack, router and exception plumbing cost more CPU than the route itself. This outermost ASGI app
answers ``POST`` on the submit paths by calling the very route functions FastAPI registers (same
parsing, validation, auth, limits, idempotency and answers), renders their exceptions with the
app's own exception handlers, and caps the body as ``BodyLimitMiddleware`` does (the same 413s);
every other request goes through the full FastAPI app, which also still documents these routes in
OpenAPI.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from api.errors import LEGACY_PREFIX
from api.middleware import declared_length, send_413
from api.state import AppState

log = logging.getLogger("sytq.api")
Route = Callable[[Request], Awaitable[Response]]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]
Headers = list[tuple[bytes, bytes]]


AppResponse = Response  # what a route answers, named for the layers that do not import the framework
Finish = Callable[[asyncio.Future[Any]], Response]


class Pending(NamedTuple):
    """An answer waiting for its enqueue: ``finish`` builds it from the done ``future``."""

    future: asyncio.Future[Any]
    finish: Finish


# A submit route's synchronous form (state, headers, complete body): the route's own answer, or
# one pending on its enqueue, or None when only the route can answer (it has to await something
# first: a rate limit, an idempotency claim, a callback host's address, a refusal's handler).
InstantRoute = Callable[[AppState, Headers, bytes], "Response | Pending | None"]


class SubmitFastLane:
    """Dispatches ``POST <path>`` for the paths in ``routes`` straight to their functions."""

    def __init__(
        self,
        app: FastAPI,
        routes: Mapping[str, Route],
        max_body_bytes: int,
        instant: Mapping[str, InstantRoute] | None = None,
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        self.instant = dict(instant or {})
        self.raw_paths = {path.encode(): path for path in self.routes}  # request targets as sent
        self.max_body_bytes = max_body_bytes
        self._handlers: dict[type[BaseException], ExceptionHandler] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.routes:
            await self.serve(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a POST on one of ``routes``."""
        legacy = scope["path"].startswith(LEGACY_PREFIX)
        if declared_length(scope) > self.max_body_bytes:
            await send_413(send, self.max_body_bytes, legacy)
            return
        try:
            response = await self.respond(scope, receive)
        except BodyTooLarge:
            await send_413(send, self.max_body_bytes, legacy)
            return
        await response(scope, receive, send)

    async def respond(self, scope: Scope, receive: Receive) -> Response:
        """The route's answer, or its exception handler's; raises BodyTooLarge for a body past the
        cap (``sytq api``'s protocol calls this directly for bodies it knows to fit)."""
        scope["app"] = self.app  # what app_state(request) reads
        request = CappedRequest(scope, receive, self.max_body_bytes)
        try:
            return await self.routes[scope["path"]](request)
        except BodyTooLarge:
            raise
        except Exception as exc:
            return await self._handler_for(exc)(request, exc)

    async def refusal(self, scope: Scope, receive: Receive, exc: Exception) -> Response:
        """The app's answer to ``exc``, raised for this request after its route's instant form
        enqueued it (the queue refused): what ``respond`` answers when the route raises it."""
        scope["app"] = self.app
        return await self._handler_for(exc)(CappedRequest(scope, receive, self.max_body_bytes), exc)

    def answer_now(self, path: str, headers: Headers, body: bytes) -> Response | Pending | None:
        """The answer of a complete request without a task per request, where the route has an
        instant form and needs nothing awaited before its enqueue; None: call ``respond``.

        An instant form validates only (nothing is written before its enqueue), so a request it
        declines or fails on is answered by ``respond`` exactly as if it had not been tried."""
        instant = self.instant.get(path)
        # State's own dict: its __getattr__ (and the failed lookup before it) costs a request more.
        state: AppState | None = self.app.state._state.get("sytq")
        if instant is None or state is None:
            return None
        try:
            return instant(state, headers, body)
        except Exception:
            return None  # the route meets the same failure and answers it through its handlers

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


def plain_parts(response: Response) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    """What ``response`` sends when it is plain (its class sends with ``Response.__call__``: one
    start, one body) and has no background task; None for any other."""
    if type(response).__call__ is Response.__call__ and response.background is None:
        return response.status_code, response.raw_headers, bytes(response.body)
    return None


class BodyTooLarge(Exception):
    """The body grew past the cap while it was read (chunked, or a lying Content-Length)."""


class CappedRequest(Request):
    """A Request whose body is read once, in as many messages as it comes, up to ``max_bytes``.

    Reads the body the way Starlette does, without its async generator per request."""

    def __init__(self, scope: Scope, receive: Receive, max_bytes: int) -> None:
        super().__init__(scope, receive)
        self._max_bytes = max_bytes

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            chunks: list[bytes] = []
            seen = 0
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self._is_disconnected = True
                    raise ClientDisconnect()
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > self._max_bytes:
                    raise BodyTooLarge()
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            self._stream_consumed = True
            self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._body

    async def stream(self) -> AsyncGenerator[bytes, None]:
        yield await self.body()
        yield b""


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response(b'{"detail":"internal error"}', status_code=500, media_type="application/json")
