"""Every error leaves as a short JSON body with the right status; never a traceback.

Routes of the Go original's contract (``/api/tasks/...``) get its envelope
``{"code": <status>, "message": ...}``; everything else gets ``{"detail": ...}``.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import metrics
from api.gojson import envelope, gin_json
from sytq.queue import (
    DuplicateTaskError,
    InvalidTaskError,
    QueueNotFoundError,
    QueueUnavailableError,
    TaskNotFoundError,
    TaskStateError,
    is_closed_transport_error,
)

log = logging.getLogger("sytq.api")

LEGACY_PREFIX = "/api/tasks"
RETRY_AFTER_SECONDS = "2"


class FieldError(StarletteHTTPException):
    """A 422 found after schema validation, in the same field-level shape as schema errors."""

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(422, msg)
        self.errors = [{"loc": loc, "msg": msg, "type": "value_error"}]


def _is_legacy(request: Request) -> bool:
    return request.url.path.startswith(LEGACY_PREFIX)


def error_response(
    request: Request, status: int, detail: str | list[dict[str, Any]], headers: dict[str, str] | None = None
) -> Response:
    metrics.REJECTED.labels(str(status)).inc()
    if _is_legacy(request):
        message = detail if isinstance(detail, str) else "; ".join(_describe(e) for e in detail)
        return gin_json(status, envelope(status, message), headers)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid"))


def _clean(errors: Any) -> list[dict[str, Any]]:
    """Field-level messages without echoing the (possibly huge) input back."""
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in errors
    ]


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _clean(exc.errors())
    # The original answered malformed bodies with 400; keep that on its routes.
    return error_response(request, 400 if _is_legacy(request) else 422, errors)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, FieldError):
        return error_response(request, 400 if _is_legacy(request) else 422, exc.errors)
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 401 and _is_legacy(request):
        # The original's gin.BasicAuth: the challenge header and no body at all.
        metrics.REJECTED.labels("401").inc()
        return Response(status_code=401, headers=headers)
    if exc.status_code in (404, 405) and _is_legacy(request) and exc.detail in _NO_ROUTE:
        # A path or method gin had no route for: its plain-text 404 (it did not answer 405).
        metrics.REJECTED.labels("404").inc()
        return Response(b"404 page not found", status_code=404, headers={"content-type": "text/plain"})
    return error_response(request, exc.status_code, str(exc.detail), headers)


_NO_ROUTE = ("Not Found", "Method Not Allowed")  # the router's own 404 and 405


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("redis unavailable: %s", exc)
    return error_response(
        request,
        503,
        "queue backend (Redis) is unavailable; retry later",
        {"Retry-After": RETRY_AFTER_SECONDS},
    )


# Queue errors a caller can cause, and the status each one means.
_QUEUE_ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (QueueNotFoundError, 404),
    (TaskNotFoundError, 404),
    (TaskStateError, 409),
    (DuplicateTaskError, 409),
    (InvalidTaskError, 422),
)


async def _queue_error(request: Request, exc: Exception) -> Response:
    status = next(code for kind, code in _QUEUE_ERROR_STATUS if isinstance(exc, kind))
    return error_response(request, status, str(exc))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Redis dropped mid-handshake under uvloop, from any of the API's Redis users (queue, rate
    # limit, idempotency): unavailability, not a bug.
    if is_closed_transport_error(exc):
        return await _unavailable(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(QueueUnavailableError, _unavailable)
    app.add_exception_handler(redis.exceptions.ConnectionError, _unavailable)
    app.add_exception_handler(redis.exceptions.TimeoutError, _unavailable)
    for kind, _ in _QUEUE_ERROR_STATUS:
        app.add_exception_handler(kind, _queue_error)
    app.add_exception_handler(Exception, _unexpected)
