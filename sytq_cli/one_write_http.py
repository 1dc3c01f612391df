"""uvicorn's httptools protocol, writing each response in one ``write`` (``sytq api`` serves with it).

uvicorn writes a response's status line and headers on ``http.response.start`` and its body on
``http.response.body``: two ``write`` calls, two system calls and two TCP segments for a small JSON
answer, where most of a submit's server time goes into the socket. Here the transport the
protocol sees keeps what is written during one pass of the event loop and hands it to the real
transport as one ``write`` right after (large writes go out at once), so head and body leave
together. Bytes and their order are unchanged; only the number of writes drops.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Above this many held bytes a write goes out at once: streaming bodies keep their flow control.
FLUSH_AT_BYTES = 64 * 1024


class CoalescingTransport:
    """A transport that joins the writes of one loop pass into one write to ``transport``."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))
        self._held_bytes += len(data)
        if self._held_bytes >= FLUSH_AT_BYTES:
            self.flush()

    def write_now(self, data: bytes) -> None:
        """Write ``data`` after anything held, without waiting for the end of the loop pass."""
        if self._held:
            self._held.append(data)
            self.flush()
        elif not self._transport.is_closing():
            self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        if not self._held:
            return
        held = self._held
        self._held, self._held_bytes = [], 0
        if not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held, self._held_bytes = [], 0
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()  # asked on every answer: not through __getattr__

    def get_write_buffer_size(self) -> int:
        return self._held_bytes + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, get_extra_info, pause_reading, ...) is the real transport's.
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` on a ``CoalescingTransport``, with a lazy keep-alive timer.

    uvicorn arms a keep-alive timer after every answer and cancels it when the next request
    arrives: a timer created and dropped per request. Here one timer per connection stays armed;
    when it fires it closes the connection only if it has been idle for the whole timeout, and
    otherwise sleeps for the rest of it. Connections still close after the same idle time."""

    _idle_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing: Any = CoalescingTransport(transport, self.loop)
        super().connection_made(coalescing)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._idle_since = None
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None  # busy; an armed timer finds it so and leaves the connection open

    def on_response_complete(self) -> None:
        # uvicorn's, except for how the keep-alive timer is armed.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_since is None:
            return  # a request is being answered; its answer arms the timer again
        left = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_due)
        else:
            self.timeout_keep_alive_handler()
