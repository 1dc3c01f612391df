"""A uvicorn server in the test's event loop, and raw HTTP/1.1 exchanges with it (bytes as sent)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from tests.harness.queue_fixtures import wait_until
from tests.harness.services import free_port

UUID = rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@contextlib.asynccontextmanager
async def serving(app: Any, protocol: Any, **config: Any) -> AsyncIterator[int]:
    """``app`` served with the HTTP ``protocol`` (a class, or uvicorn's name for its own) on a free port."""
    port = free_port()
    options: dict[str, Any] = {"log_level": "critical", "lifespan": "off", "proxy_headers": False, **config}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol, **options))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), what="the test server started")
    if task.done():
        task.result()  # raises what stopped it
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def exchange(port: int, data: bytes, within: float = 30.0) -> bytes:
    """Send ``data`` on one connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(-1), within)
    finally:
        writer.close()


def post(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """A raw ``POST`` with a Content-Length."""
    lines = [f"POST {path} HTTP/1.1", "host: api", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def closed(request: bytes) -> bytes:
    """``request`` with ``connection: close`` (HTTP/1.0 closes anyway): one answer per exchange."""
    head, _, body = request.partition(b"\r\n\r\n")
    if b" HTTP/1.0\r\n" in head:
        return request
    return head + b"\r\nconnection: close\r\n\r\n" + body


def masked(answer: bytes) -> bytes:
    """An exchange's bytes without what differs between two runs: the date header and task ids."""
    return re.sub(UUID, b"<id>", re.sub(rb"date: [^\r]*\r\n", b"", answer))


def answers(raw: bytes) -> list[bytes]:
    """The status lines of an exchange, in order."""
    return re.findall(rb"HTTP/1\.[01] \d{3} [^\r]*", raw)
