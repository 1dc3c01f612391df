"""Pure ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware on the hot path)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import LEGACY_PREFIX
from api.gojson import GIN_JSON_TYPE, envelope
from sytq.gojson import marshal


class BodyLimitMiddleware:
    """Caps request bodies (413), by Content-Length and by the bytes actually read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        legacy = scope["path"].startswith(LEGACY_PREFIX)
        if declared_length(scope) > self.max_bytes:
            await send_413(send, self.max_bytes, legacy)
            return
        seen = 0
        refused = False

        async def counting_receive() -> Message:
            # A body that grows past the cap (chunked, or lying Content-Length) is answered 413
            # here; the app then only sees a disconnect and its own answer is dropped.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    await send_413(send, self.max_bytes, legacy)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            # The app tripped over the disconnect we fed it; the 413 is already sent.


def declared_length(scope: Scope) -> int:
    """The request's first Content-Length, 0 when absent or not a number (the bytes read still count)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def send_413(send: Send, max_bytes: int, legacy: bool) -> None:
    """The 413 for a body over ``max_bytes``: the Go original's envelope on its routes."""
    message = f"request body over {max_bytes} bytes"
    if legacy:
        body, media_type = marshal(envelope(413, message)), GIN_JSON_TYPE.encode()
    else:
        body = json.dumps({"detail": message}, separators=(",", ":")).encode()
        media_type = b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", media_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class JsonByDefaultMiddleware:
    """Submit bodies are JSON whatever the Content-Type says.

    The Go original bound JSON regardless of the header, and ``curl -d`` or PHP callers often send
    none, a form type or text/plain; without this they would get a confusing "not an object" error.
    """

    def __init__(self, app: ASGIApp, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            declared = [v for k, v in scope["headers"] if k == b"content-type"]
            if not declared or b"json" not in declared[0].lower():
                scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        await self.app(scope, receive, send)
